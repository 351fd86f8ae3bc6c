"""One Tune trial = Ray Train runs of the project's fit(): the prerequisite steps (step 1 autoencoder, approach 1
when approach 3 starts from it), then the tuned stage with per-epoch reports to Tune, then a channel-PSNR sweep of
the final model reported once more (``sweep_ssim_<psnr>``)."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from .backend import build_trainer, checkpoint_file
from .space import config_overrides

def stage_chain(cfg, stage=None):
    """Stages a trial trains, in order, ending with the tuned one (the system's prerequisites of ``stage``)."""
    from pycompgen.systems import get_system
    stage = stage or cfg.train.stage
    return list(get_system(cfg.model.name).prerequisites(cfg, stage)) + [stage]


def trial_config(settings, params):
    """The project Config of one trial: the base config plus the sampled values."""
    from pycompgen.config import Config, apply_overrides

    cfg = Config.from_dict(settings["base_config"])
    cfg.train.stage = params.get("stage", settings["stage"])
    return apply_overrides(cfg, config_overrides(params))


def sweep_metrics(res, label):
    out = {}
    for key, m in res["approaches"].get(label, {}).items():
        for name in ("ssim", "psnr"):
            v = m.get(name)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[f"sweep_{name}_{key}"] = float(v)
    return out


def run_trial(params, settings):
    """Tune function trainable (runs in the trial's actor; the Ray Train workers do the training)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx = ray.tune.get_context()
    trial_id = ctx.get_trial_id()
    cfg = trial_config(settings, params)
    target = cfg.train.stage
    chain = stage_chain(cfg, target)
    init = settings.get("ae_checkpoint")
    if init:
        chain = [s for s in chain if s != "step1"]
    train_root = os.path.join(settings["experiment_dir"], "train")
    out_dir = Path(settings["experiment_dir"]) / "trials" / trial_id
    out_dir.mkdir(parents=True, exist_ok=True)
    res = dict(num_workers=settings["workers_per_trial"], use_gpu=settings["gpus_per_worker"] > 0,
               resources_per_worker=settings["resources_per_worker"])
    result, prior = None, {}
    for stage in chain:
        scfg = cfg.copy()
        scfg.train.stage = stage
        scfg.train.progress = False
        tuned = stage == target
        scfg.train.epochs = settings["max_epochs"] if tuned else settings["ae_epochs"]
        trainer = build_trainer(scfg, storage_path=train_root, name=f"{trial_id}-{stage}", init_checkpoint=init,
                                callbacks=[TuneReportCallback()] if tuned else [], **res)
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"trial {trial_id}: stage {stage} finished without a checkpoint")
        # Keep each step's model next to the trial's outputs (shared storage: readable by every node). A
        # prerequisite step hands on its best-val-SSIM weights; the tuned stage keeps its last epoch (the one
        # whose val SSIM Tune ranks).
        with result.checkpoint.as_directory() as d:
            init = str(out_dir / f"{stage}.pt")
            shutil.copyfile(checkpoint_file(d, best=not tuned), init + ".tmp")
            os.replace(init + ".tmp", init)
        if not tuned:
            prior.update({f"{stage}_{k}": v for k, v in (result.metrics or {}).items()
                          if k in ("val_ssim", "val_psnr") and isinstance(v, (int, float))})

    final = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    final.update(prior)
    final["checkpoint"] = init
    from pycompgen.systems import get_system
    if settings.get("trial_sweep", True) and target != "step1" and get_system(cfg.model.name).psnr_sweep:
        from pycompgen.evaluation.sweep import sweep

        sres = sweep(cfg, {target: init}, psnrs=settings["psnrs"], out_dir=str(out_dir / "sweep"),
                     split="val", device="cpu" if not res["use_gpu"] else None,
                     max_images=settings.get("sweep_images"), n_grid=4)
        final.update(sweep_metrics(sres, target))
        final["sweep_dir"] = str(out_dir / "sweep")
    ray.tune.report(final)
