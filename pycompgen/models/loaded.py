"""Trained models loaded into their system's networks: ``LoadedCheckpoint`` (the networks in eval mode with the
config that built them), from a training checkpoint (``load_for_eval``) or from any payload of state dicts
(``networks_from_payload``, which the zoo uses for its weight files); ``resolve_checkpoints`` turns command-line
checkpoint arguments into paths."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from pycompgen.config import Config
from pycompgen.registry import build_networks

from .checkpoint import eval_weights, load_checkpoint, stage_checkpoint

STAGES = ("step1", "approach1", "approach2", "approach3")
ELM_STAGES = ("approach1", "approach2", "approach3")


@dataclass
class LoadedCheckpoint:
    label: str
    path: str
    stage: str
    epoch: int
    model_name: str
    config: Any                   # pycompgen.config.Config of the run that wrote the checkpoint
    models: dict                  # {"f", "g", "h"} in eval mode
    image_size: int
    metrics: dict = field(default_factory=dict)
    parts: tuple = ()             # networks whose trained weights the checkpoint holds
    bits: int | None = None       # edgediff: the latent bit depth a zoo rate point writes files at (None: eval_bits)

    @property
    def has_elm(self) -> bool:
        return self.stage in ELM_STAGES and {"g", "h"} <= set(self.parts)

    def info(self) -> dict:
        return {"path": self.path, "stage": self.stage, "epoch": self.epoch, "model": self.model_name,
                "image_size": self.image_size, "parts": list(self.parts),
                "val_metrics": {k: v for k, v in self.metrics.items() if isinstance(v, (int, float))}}


def load_for_eval(path: str | os.PathLike, label: str | None = None, expect_model: str | None = "compgen",
                  device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a training checkpoint (weights_only) and rebuild its models from the checkpoint's own config.

    Errors: missing file -> FileNotFoundError; not a pycompgen checkpoint, or one written for another model than
    ``expect_model`` -> ValueError naming both.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    payload = load_checkpoint(str(p), expect_model=expect_model)
    if not isinstance(payload, dict) or "models" not in payload or "config" not in payload:
        raise ValueError(f"{p} is not a pycompgen checkpoint (no 'models'/'config' entries)")
    name = payload.get("model")
    if expect_model is not None and name != expect_model:
        raise ValueError(f"checkpoint {p} holds model {name!r}, expected {expect_model!r}")
    return networks_from_payload(payload, eval_weights(payload), p, label=label, device=device)


def networks_from_payload(payload: dict, state_dicts: dict, path, label: str | None = None,
                          device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LoadedCheckpoint:
    """Build the networks of ``payload["config"]`` and load ``state_dicts`` ({part: state_dict}) into them.

    ``dtype`` (e.g. float32) converts floating tensors first (the zoo stores float16; float64 settings stay). A
    part the system lacks, or weights that do not fit the config's widths, are a ValueError naming ``path`` and
    the part.
    """
    p = Path(path)
    cfg = Config.from_dict(payload["config"])
    name = payload.get("model", cfg.model.name)
    models = build_networks(cfg)
    for k, sd in state_dicts.items():
        if k not in models:
            raise ValueError(f"checkpoint {p} has weights for part {k!r}, which model {name!r} lacks "
                             f"(parts: {sorted(models)})")
        if dtype is not None:
            sd = {n: (v.to(dtype) if v.is_floating_point() and v.dtype != torch.float64 else v)
                  for n, v in sd.items()}
        try:
            models[k].load_state_dict(sd)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {p}: weights of {k!r} do not fit the model built from its config: "
                             f"{str(e).splitlines()[0]}") from None
    for m in models.values():
        m.to(device).eval()
    stage = str(payload.get("stage", cfg.train.stage))
    return LoadedCheckpoint(label=label or stage, path=str(p), stage=stage, epoch=int(payload.get("epoch", 0)),
                            model_name=str(name), config=cfg, models=models, image_size=int(cfg.data.image_size),
                            metrics=dict(payload.get("metrics") or {}), parts=tuple(sorted(state_dicts)))


def _find_in_dir(d: Path) -> dict[str, str]:
    if (p := stage_checkpoint(d)) is not None:
        return {d.name: str(p)}
    return {stage: str(p) for stage in STAGES if (p := stage_checkpoint(d / stage)) is not None}


def resolve_checkpoints(spec: Iterable[str] | str | None, default_dir: str | None = None) -> dict[str, str]:
    """Checkpoint arguments -> {label: path}.

    Each item is ``label=path``, a checkpoint file (label = parent folder name, e.g. ``approach3``), or a run
    directory holding ``<stage>/best.pt`` (``last.pt`` when no best) for step1 and approaches 1–3.
    """
    if spec is None or spec == [] or spec == "":
        if default_dir is None:
            raise ValueError("no checkpoints given: pass --checkpoints RUN_DIR or label=path ...")
        spec = [default_dir]
    if isinstance(spec, (str, os.PathLike)):
        spec = [str(spec)]
    out: dict[str, str] = {}
    for item in spec:
        item = str(item)
        label = None
        if "=" in item and not Path(item).exists():
            label, item = item.split("=", 1)
            label = label.strip()
            if not label:
                raise ValueError(f"checkpoint argument {item!r} has an empty label (use label=path)")
        p = Path(item)
        if p.is_dir():
            found = _find_in_dir(p)
            if not found:
                raise FileNotFoundError(
                    f"no checkpoints in {p}: expected best.pt/last.pt there or in "
                    f"{', '.join(s + '/' for s in STAGES)}")
            if label is not None:
                if len(found) != 1:
                    raise ValueError(f"{label}={p}: the folder holds several checkpoints ({sorted(found)}); "
                                     "name one file")
                found = {label: next(iter(found.values()))}
            for k, v in found.items():
                if k in out:
                    raise ValueError(f"checkpoint label {k!r} given twice ({out[k]} and {v})")
                out[k] = v
        elif p.is_file():
            k = label or (p.parent.name if p.parent.name in STAGES else p.stem)
            if k in out:
                raise ValueError(f"checkpoint label {k!r} given twice ({out[k]} and {p})")
            out[k] = str(p)
        else:
            raise FileNotFoundError(f"checkpoint not found: {p}")
    return out
