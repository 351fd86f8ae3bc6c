"""The model zoo: named pretrained models of the project's systems shipped inside the package.

Layout of the zoo folder (``pycompgen/zoo/`` or ``$PYCOMPGEN_ZOO_DIR``)::

    manifest.json                       {"format": "pycompgen-zoo/1", "default": NAME, "entries": {NAME: entry}}
    weights/<name>/<stage>.pt           one file per stage (Compgen: step1, approach1-3; BEGAN: train)
    cards/<name>.md                     the model card

A weights file is a dict of tensors and plain values (``torch.load(weights_only=True)``)::

    {"format": "pycompgen-zoo/1", "model": "compgen", "stage": ..., "epoch": ..., "config": Config.to_dict(),
     "dtype": "float16" | "float32", "models": {part: state_dict}, "shared": {part: stage}, "metrics": {...}}

An entry with several rate points (a latent codec trained at several rate weights λ) lists them under
``rate_points``: [{"quality": 1, "rate_weight": λ, "file", "sha256", "bytes", "dtype", "parts", "bpp", "ssim",
...}, ...], quality 1 the lowest rate, as CompressAI's zoo; ``default_quality`` is the one ``stages`` holds;
``load(name, quality=Q)`` loads point Q as the entry's (only) stage. A colour-hint entry's points share one weights
file and differ in ``hint_bits``, the bits its files give the thumbnail (also allowed in a ``stages`` item); an
edgediff entry's points share its stage's file (entropy: the whole receiver) and differ in ``bits``, the latent bit depth files are
written at (``LoadedCheckpoint.bits``). A Sketch2face entry holds one variant stage (pretrain, cycle, stitched or
latent) without its critics.

Floating tensors are stored in ``dtype`` (float16 unless the export found the SSIM moved by >= 0.002) and turned
back into float32 on load; float64 buffers (settings: edgediff's receiver configuration) are kept as they are.
``shared`` names parts stored once in another stage's file (the frozen f, and g of approach 1, are step 1's).
Every file's sha256 is checked against the manifest before it is read.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pycompgen.models import load_weights_only, networks_from_payload

FORMAT = "pycompgen-zoo/1"
MANIFEST = "manifest.json"
ENV_DIR = "PYCOMPGEN_ZOO_DIR"
STAGES = ("step1", "approach1", "approach2", "approach3")
DEFAULT_NAME = "compgen-64"


def zoo_dir() -> Path:
    """The zoo folder: ``$PYCOMPGEN_ZOO_DIR`` when set, else the package folder ``pycompgen/zoo``."""
    d = os.environ.get(ENV_DIR)
    return Path(d).expanduser() if d else Path(__file__).resolve().parent


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(root: str | os.PathLike | None = None) -> dict:
    """The manifest dict (an empty one when the folder has none)."""
    p = Path(root if root is not None else zoo_dir()) / MANIFEST
    if not p.is_file():
        return {"format": FORMAT, "default": DEFAULT_NAME, "entries": {}}
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"zoo manifest {p} is not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("entries"), dict):
        raise ValueError(f"zoo manifest {p} is not a {FORMAT} manifest")
    return m


def write_manifest(m: dict, root: str | os.PathLike | None = None) -> Path:
    p = Path(root if root is not None else zoo_dir()) / MANIFEST
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(m, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, p)
    return p


def names(root: str | os.PathLike | None = None) -> list:
    """Names of the zoo's entries, sorted."""
    return sorted(read_manifest(root)["entries"])


def entry(name: str, root: str | os.PathLike | None = None) -> dict:
    """The manifest entry of ``name``; ValueError naming the available entries when there is none."""
    m = read_manifest(root)
    if name not in m["entries"]:
        avail = ", ".join(sorted(m["entries"])) or "none"
        raise ValueError(f"no pretrained model {name!r} in the zoo {zoo_dir() if root is None else root} "
                         f"(available: {avail})")
    return m["entries"][name]


def verify_file(path: Path, expected: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file missing: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual} "
                         f"(corrupted, or a Git LFS pointer instead of the file?)")


def to_storage(sd: dict, dtype: torch.dtype) -> dict:
    """Floating tensors -> ``dtype`` (contiguous clones); others (BatchNorm counters, float64 settings) unchanged."""
    return {k: (v.detach().to("cpu", dtype).contiguous().clone() if v.is_floating_point() and v.dtype != torch.float64
                else v.detach().cpu().clone()) for k, v in sd.items()}


def to_float32(sd: dict) -> dict:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


@dataclass
class Pretrained:
    """A loaded zoo entry: one pycompgen.models.LoadedCheckpoint per stage (``stages``), usable
    wherever generate / evaluate / sweep take loaded checkpoints."""
    name: str
    entry: dict
    stages: dict                          # {stage: LoadedCheckpoint}
    card_path: str | None = None
    root: str = ""
    extra: dict = field(default_factory=dict)

    def __getitem__(self, stage: str):
        if stage not in self.stages:
            raise KeyError(f"pretrained model {self.name!r} has no stage {stage!r} (stages: {', '.join(self.stages)})")
        return self.stages[stage]

    def __contains__(self, stage) -> bool:
        return stage in self.stages

    def __iter__(self):
        return iter(self.stages)

    def models(self, stage: str = "approach3") -> dict:
        """The networks of ``stage``: {"f", "g"} (step1) or {"f", "g", "h"} (approaches), eval mode, float32."""
        return self[stage].models

    @property
    def config(self):
        """The config of the last stage (model widths, image size, Canny settings, training recipe)."""
        return self.stages[next(reversed(self.stages))].config

    @property
    def image_size(self) -> int:
        return int(self.config.data.image_size)

    @property
    def card(self) -> str:
        """The model card's text ('' when the entry has none)."""
        return Path(self.card_path).read_text() if self.card_path and Path(self.card_path).is_file() else ""

    def to_checkpoint(self, stage: str, path: str | os.PathLike) -> Path:
        """Write ``stage`` as a training checkpoint (float32 weights, no optimiser state) at ``path``: a run folder
        that starts from an entry's step 1, e.g. ``OUT/step1/best.pt`` for a pipeline's later stages."""
        from pycompgen.models import save_checkpoint
        lc = self[stage]
        cfg = lc.config.copy()
        cfg.train.stage = stage
        return save_checkpoint(path, {
            "model": lc.model_name, "stage": stage, "epoch": int(lc.epoch), "config": cfg.to_dict(),
            "models": {k: lc.models[k].state_dict() for k in lc.parts},
            "metrics": {k: v for k, v in lc.metrics.items() if isinstance(v, (int, float, str, bool))},
            "source": f"zoo:{self.name}/{stage}"})

    def elm_stage(self, prefer: str = "approach3") -> str:
        """The stage used for generation: ``prefer`` when present, else the last approach."""
        if prefer in self.stages and self.stages[prefer].has_elm:
            return prefer
        elm = [s for s, lc in self.stages.items() if lc.has_elm]
        if not elm:
            raise ValueError(f"pretrained model {self.name!r} has no approach stage with a trained ELM h")
        return elm[-1]


def _load_stage_file(path: Path, stage: str) -> dict:
    payload = load_weights_only(path, "cpu")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a pycompgen zoo weights file (format {fmt!r}, expected {FORMAT!r})")
    if payload.get("stage") != stage:
        raise ValueError(f"{path} holds stage {payload.get('stage')!r}, the manifest says {stage!r}")
    return payload


def qualities(e: dict) -> list:
    """The quality levels of an entry (1 = the lowest rate); [] for an entry with one rate point."""
    return sorted(int(p["quality"]) for p in e.get("rate_points") or [])


def rate_point(e: dict, quality: int) -> dict:
    """The rate point ``quality`` of entry ``e``; ValueError naming the valid range."""
    qs = qualities(e)
    if not qs:
        if int(quality) == 1:
            return {}
        raise ValueError(f"--quality {quality}: pretrained model {e['name']!r} has one rate point (quality 1 only)")
    if int(quality) not in qs:
        raise ValueError(f"--quality {quality} is out of range for pretrained model {e['name']!r} "
                         f"(1..{qs[-1]}, 1 = the lowest rate)")
    return next(p for p in e["rate_points"] if int(p["quality"]) == int(quality))


def load(name: str = DEFAULT_NAME, device: str | torch.device = "cpu", stages=None,
         root: str | os.PathLike | None = None, quality: int | None = None) -> Pretrained:
    """Load the pretrained entry ``name`` (all stages, or the given ones) as float32 networks on ``device``;
    ``quality``: the rate point of an entry that has several (default: its ``default_quality``).

    Each weights file's sha256 is checked first (ValueError naming the file, expected and actual hash); an
    unknown name is a ValueError naming the available entries.
    """
    base = Path(root if root is not None else zoo_dir())
    e = entry(name, base)
    files = e.get("stages") or {}
    if quality is not None and (point := rate_point(e, quality)):
        files = {**files, point["stage"]: point}  # the point replaces its stage; other stages stay (shared parts)
    order = [s for s in STAGES if s in files] + [s for s in files if s not in STAGES]  # other systems' stages
    want = order if stages is None else [stages] if isinstance(stages, str) else stages
    for s in want:
        if s not in files:
            raise ValueError(f"pretrained model {name!r} has no stage {s!r} (stages: {', '.join(files)})")
    payloads: dict = {}

    def get(stage):
        if stage not in payloads:
            info = files.get(stage)
            if info is None:
                raise ValueError(f"pretrained model {name!r}: a file refers to stage {stage!r}, which the entry lacks")
            p = base / info["file"]
            verify_file(p, info["sha256"])
            payloads[stage] = _load_stage_file(p, stage)
        return payloads[stage]

    out = {}
    for s in want:
        pl = get(s)
        sds = dict(pl["models"])
        for part, src in (pl.get("shared") or {}).items():
            sds[part] = get(src)["models"][part]
        out[s] = networks_from_payload(pl, sds, base / files[s]["file"], label=s, device=device, dtype=torch.float32)
        if "hint_bits" in files[s] and "h" in out[s].models:  # a colour-hint rate point: the bits files use
            out[s].models["h"].hint_bits = int(files[s]["hint_bits"])  # (the config keeps the training list)
        if "bits" in files[s]:  # an edgediff rate point: the latent bit depth its files are written at
            out[s].bits = int(files[s]["bits"])
    card = e.get("card")
    return Pretrained(name=name, entry=e, stages=out, card_path=str(base / card) if card else None, root=str(base))
