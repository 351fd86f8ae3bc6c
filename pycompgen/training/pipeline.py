"""Single-process runs: ``train_local`` (one stage, atomic last.pt / best.pt, resumable) and ``run_pipeline``
(a system's stages in order, e.g. Compgen's step 1 -> approach 1 -> approach 2 -> approach 3, passing checkpoints).

Each stage hands over its best.pt (best validation SSIM); which networks a stage takes from which earlier stage is
the system's ``handover`` rule (``pycompgen.systems``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch
import yaml

from pycompgen.systems import get_system
from pycompgen.models import load_checkpoint, save_checkpoint, stage_checkpoint
from .loop import EpochShuffleSampler, fit, resolve_device, train_subset_indices

PIPELINE = ("step1", "approach1", "approach2", "approach3")  # Compgen's


def pipeline_stages(cfg) -> tuple:
    """The stages ``--stage pipeline`` runs for ``cfg.model.name``, in order."""
    return tuple(get_system(cfg.model.name).pipeline())


def make_loaders(cfg, *, shuffle_seed: Optional[int] = None):
    """Train / validation DataLoaders over the system's ``datasets`` (default: pycompgen.data.load_faces; uint8
    batches; edges made on the device)."""
    d, t = cfg.data, cfg.train
    system = get_system(cfg.model.name)  # System.datasets: the face data unless the system supplies its own
    train_set = system.datasets(cfg, "train")
    val_set = system.datasets(cfg, "val")
    if train_set.image_size != d.image_size:
        raise ValueError(f"the data holds {train_set.image_size}x{train_set.image_size} images but "
                         f"data.image_size={d.image_size}")
    seed = t.seed if shuffle_seed is None else shuffle_seed
    pin = resolve_device(t.device).type == "cuda"
    kw = dict(num_workers=t.num_workers, pin_memory=pin, persistent_workers=t.num_workers > 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=t.batch_size,
                                               sampler=EpochShuffleSampler(len(train_set), seed), **kw)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=t.batch_size, shuffle=False, **kw)
    return train_loader, val_loader


def train_subset_loader(cfg, train_set, n_val: int):
    """DataLoader over the fixed training subset (``train.train_subset`` faces, at most ``n_val``), or None."""
    idx = train_subset_indices(len(train_set), n_val, cfg.train.train_subset, cfg.train.seed)
    if not idx:
        return None
    return torch.utils.data.DataLoader(torch.utils.data.Subset(train_set, idx), batch_size=cfg.train.batch_size,
                                       shuffle=False)


def check_compatible(state: dict, cfg, path) -> None:
    """ValueError if checkpoint ``state`` was trained for another image size than ``cfg.data.image_size``."""
    size = (state.get("config") or {}).get("data", {}).get("image_size")
    if size is not None and int(size) != cfg.data.image_size:
        raise ValueError(f"checkpoint {path} was trained on {size}x{size} images but data.image_size="
                         f"{cfg.data.image_size}; set data.image_size={size} or retrain")


def init_weights(spec: str, cfg) -> dict:
    """{net: state_dict} that ``train.init`` names: a checkpoint file, or ``zoo:NAME`` (a pretrained entry: every
    stage's networks, later stages winning, as a pipeline hands them over) / ``zoo:NAME/STAGE`` (one stage) —
    fine-tuning from an entry. The entry must be of ``cfg``'s system and image size (one-line error otherwise)."""
    if not str(spec).startswith("zoo:"):
        state = load_checkpoint(spec, expect_model=cfg.model.name)
        check_compatible(state, cfg, spec)
        return state["models"]
    from pycompgen import zoo
    name, _, stage = str(spec)[4:].partition("/")
    pre = zoo.load(name, stages=stage or None)
    out: dict = {}
    for s, lc in pre.stages.items():
        if lc.model_name != cfg.model.name:
            raise ValueError(f"train.init={spec}: entry {name!r} is a {lc.model_name!r} model, not "
                             f"{cfg.model.name!r}")
        if lc.image_size != cfg.data.image_size:
            raise ValueError(f"train.init={spec}: entry {name!r} was trained on {lc.image_size}x{lc.image_size} "
                             f"images but data.image_size={cfg.data.image_size}")
        out.update({k: lc.models[k].state_dict() for k in lc.parts})
    _check_entry_covers_stage(spec, name, out, cfg)
    for lc in pre.stages.values():
        _check_entry_architecture(spec, name, lc, cfg)
    return out


def _check_entry_architecture(spec: str, name: str, lc, cfg) -> None:
    """A one-line error naming the overrides to add when the entry's networks were built with other settings than
    the configured model's (the system's ``architecture`` fields, e.g. Sketch2face's latent_dim)."""
    from pycompgen.registry import get_system
    sec = cfg.model.name
    fields = get_system(sec).architecture
    have, want = getattr(cfg, sec, None), getattr(lc.config, sec, None)
    if not fields or have is None or want is None:
        return
    diff = [f"{sec}.{f}={getattr(want, f)}" for f in fields if getattr(have, f, None) != getattr(want, f, None)]
    if diff:
        raise ValueError(f"train.init={spec}: entry {name!r} was built with other network settings than the "
                         f"configured model; add {' '.join(diff)}")


def _check_entry_covers_stage(spec: str, name: str, parts: dict, cfg) -> None:
    """A one-line error when the stage to train needs networks from a previous stage that the zoo entry does not
    ship (a Sketch2face entry holds no critics), naming the stages that can start from it."""
    from pycompgen.registry import get_system
    cls = get_system(cfg.model.name)
    try:
        stage = cls.stage_spec(cfg)
    except ValueError:
        return  # an unknown stage: the system's own error follows
    lacking = [k for k in stage.requires if k not in parts]
    if not lacking:
        return
    ok = [s for s, st in cls.stages.items() if set(st.requires) <= set(parts) and set(parts) <= set(st.uses)]
    raise ValueError(f"train.init={spec}: entry {name!r} holds {', '.join(parts)} but stage {stage.name!r} of "
                     f"{cfg.model.name!r} also needs trained {', '.join(lacking)} from a previous stage"
                     + (f"; fine-tune the entry with --stage {' or '.join(ok)} (the other networks start fresh)"
                        if ok else ""))


def _init_from(path: str, cfg) -> dict:
    return init_weights(path, cfg)


def summary_line(m: dict, seconds: float, out: Path) -> str:
    parts = [f"{m.get('stage', '?')}: {m.get('epoch', 0)}/{m.get('epochs', 0)} epochs"]
    key = m.get("best_metric", "val_ssim")
    if "val_ssim" in m:
        best = f" (best {m['best_val_ssim']:.4f})" if "best_val_ssim" in m else ""
        parts.append(f"val SSIM {m['val_ssim']:.4f}{best}")
    if key != "val_ssim" and key in m:
        parts.append(f"{key} {m[key]:.4f} (best {m.get('best_value', float('nan')):.4f}, picks best.pt)")
    if "val_psnr" in m:
        parts.append(f"val PSNR {m['val_psnr']:.2f} dB")
    if "train_loss" in m:
        parts.append(f"train loss {m['train_loss']:.5f}")
    if "images_per_s" in m:
        parts.append(f"{m['images_per_s']:.0f} img/s")
    parts.append(f"{seconds:.1f} s -> {out}")
    return ", ".join(parts)


def train_local(cfg, resume: bool = False, init: Optional[dict] = None, verbose: bool = True) -> dict:
    """Plain single-process run of ``cfg.train.stage`` writing cfg.out/last.pt (every epoch) and best.pt (best
    validation SSIM) atomically, plus config.yaml and metrics.jsonl. ``resume=True`` continues from last.pt (same
    result as an uninterrupted run). ``init`` (previous-step weights) defaults to ``train.init``'s checkpoint."""
    cfg = cfg.copy().validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device)
    last, best = out / "last.pt", out / "best.pt"

    resume_state = None
    if resume and last.is_file():
        resume_state = load_checkpoint(last, expect_model=cfg.model.name)
        check_compatible(resume_state, cfg, last)
        if resume_state.get("stage") != cfg.train.stage:
            raise ValueError(f"cannot resume: {last} is from stage {resume_state.get('stage')!r}, "
                             f"but train.stage={cfg.train.stage!r}")
        if verbose:
            print(f"resuming {cfg.train.stage} from {last} (epoch {resume_state['epoch']})")
    elif resume and verbose:
        print(f"no {last} to resume from: starting {cfg.train.stage} from scratch")
    if init is None and cfg.train.init and resume_state is None:
        init = _init_from(cfg.train.init, cfg)

    if resume_state is None:  # a fresh run: drop the history of an earlier run in the same folder
        for stale in (out / "metrics.jsonl", best):
            stale.unlink(missing_ok=True)
    with open(out / "config.yaml", "w") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
    train_loader, val_loader = make_loaders(cfg)
    sub_loader = train_subset_loader(cfg, train_loader.dataset, len(val_loader.dataset))

    def on_epoch_end(epoch: int, metrics: dict, state: dict) -> None:
        save_checkpoint(last, state)
        if metrics.get("is_best"):
            save_checkpoint(best, state)
        with open(out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}) + "\n")

    t0 = time.perf_counter()
    metrics = fit(cfg, device=device, train_loader=train_loader, val_loader=val_loader, init=init,
                  resume_state=resume_state, on_epoch_end=on_epoch_end, train_eval_loader=sub_loader)
    metrics = dict(metrics, out=str(out), last=str(last), best=str(best) if best.is_file() else None)
    if verbose:
        print(summary_line(metrics, time.perf_counter() - t0, best if best.is_file() else last))
    return metrics


def stage_done(path: Path, cfg) -> bool:
    """True when the checkpoint at ``path`` is a finished run of ``cfg``'s stage (all its epochs done)."""
    if not path.is_file():
        return False
    st = load_checkpoint(path, expect_model=cfg.model.name)
    return st.get("stage") == cfg.train.stage and int(st.get("epoch", 0)) >= cfg.epochs_for()


def _handover(cfg, name: str, ckpts: dict) -> Optional[dict]:
    """Initial weights of pipeline stage ``name``: ``train.init`` for the first stage, else the system's hand-over
    rule over the best.pt of earlier stages (``ckpts``: {stage: path}, filled from cfg.out/<stage>/best.pt)."""
    system = get_system(cfg.model.name)
    if name == system.pipeline()[0]:
        return _init_from(cfg.train.init, cfg) if cfg.train.init else None

    def models_of(stage):
        if stage not in ckpts:
            p = Path(cfg.out) / stage / "best.pt"
            if not p.is_file():
                return None
            ckpts[stage] = str(p)
        return _init_from(ckpts[stage], cfg)

    return system.handover(cfg, name, models_of)


def run_pipeline(cfg, stages=None, resume: bool = False, verbose: bool = True) -> dict:
    """Run ``stages`` (default: the system's whole pipeline) in order, each into cfg.out/<stage>/, handing best.pt
    weights on. With ``resume`` a finished stage is skipped and an interrupted one continues from its last.pt.
    Returns {stage: final metrics}."""
    order = pipeline_stages(cfg)
    stages = list(order if stages is None else stages)
    for s in stages:
        if s not in order:
            raise ValueError(f"unknown pipeline stage {s!r} (expected some of {', '.join(order)})")
    ckpts: dict = {}
    results: dict = {}
    t0 = time.perf_counter()
    for name in stages:
        c = cfg.copy()
        c.train.stage = name
        c.train.init = None
        c.out = str(Path(cfg.out) / name)
        c.validate()
        if resume and stage_done(Path(c.out) / "last.pt", c):
            if verbose:
                print(f"{name}: already finished in {c.out}, skipping")
            ckpts[name] = str(stage_checkpoint(c.out))
            results[name] = dict(load_checkpoint(ckpts[name], expect_model=c.model.name).get("metrics", {}))
            continue
        init = _handover(cfg, name, ckpts)
        results[name] = train_local(c, resume=resume, init=init, verbose=verbose)
        ckpts[name] = results[name]["best"] or results[name]["last"]
    if verbose:
        line = "; ".join(f"{k} val SSIM {v.get('val_ssim', float('nan')):.4f}" for k, v in results.items())
        print(f"pipeline done in {time.perf_counter() - t0:.1f} s: {line} -> {cfg.out}")
    return results


__all__ = ["train_local", "run_pipeline", "make_loaders", "train_subset_loader", "check_compatible", "init_weights", "PIPELINE", "pipeline_stages",
           "summary_line", "stage_done"]
