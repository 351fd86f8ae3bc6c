"""Artifacts of a run: sample grids, the evaluation sweep and the final model (``mlflow.pytorch.log_model``)."""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch
from torch import nn


def models_from_payload(payload: dict, device="cpu") -> tuple[object, dict]:
    """(Config, {name: module in eval mode}) rebuilt from a checkpoint payload."""
    from pycompgen.models import eval_weights, networks_from_payload
    lc = networks_from_payload(payload, eval_weights(payload), "<checkpoint payload>", device=device)
    return lc.config, {k: lc.models[k] for k in payload["models"]}


def _hint_size(system: str, models: dict) -> int:
    if system != "compgen" or "h" not in models:
        return 0
    from pycompgen.systems.compgen.system import hint_spec
    return hint_spec(models)[0]


class StageReconstructor(nn.Module):
    """One stage's reconstruction as a single module (what MLflow serves), e.g. Compgen's step 1 maps an image x
    (N,3,H,W) in [0, 1] to g(f(x)); its approaches map a noisy edge map z+n (N,1,H,W) to g(h(z+n)) — with a colour
    hint (``model.hint_size`` s), (N,4,H,W): the edge map, then the hint upsampled to H×W by repetition."""

    def __init__(self, system: str, stage: str, models: dict):
        super().__init__()
        self.system, self.stage = system, stage
        self.nets = nn.ModuleDict(models)
        self.hint_size = _hint_size(system, models)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        from pycompgen.systems import get_system
        sys_ = get_system(self.system)
        batch = {sys_.input_key(self.stage): inp}
        if self.hint_size and sys_.input_key(self.stage) == "z_noisy":
            k = inp.shape[-1] // self.hint_size
            batch = {"z_noisy": inp[:, :1], "hint": torch.nn.functional.avg_pool2d(inp[:, 1:], k)}
        return sys_.reconstruct(self.stage, dict(self.nets.items()), batch)


def sample_batch(cfg, dataset, n: int = 8, seed: int = 1234) -> dict:
    """A fixed CPU batch of the first ``n`` items of ``dataset`` as the system trains on it (Compgen: {"x", "z",
    "z_noisy"} through the channel)."""
    from pycompgen.systems import get_system
    n = min(n, len(dataset))
    x = torch.stack([dataset[i] for i in range(n)])
    return get_system(cfg.model.name).example_batch(cfg, x, torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_grid_png(payload: dict, batch: dict, path) -> str:
    """PNG grid of originals, noisy edge maps and the stage's reconstructions for a checkpoint payload."""
    from pycompgen.evaluation.figures import compose_grid, edge_map_vis, write_png
    from pycompgen.systems import get_system
    cfg, models = models_from_payload(payload)
    system, stage = get_system(cfg.model.name), payload["stage"]
    x_hat = system.reconstruct(stage, models, batch).clamp(0, 1)
    cols = [("original\nx", batch["x"])]
    if system.input_key(stage) == "z_noisy":
        cols.append(("noisy edges\nz+n", edge_map_vis(batch["z_noisy"])))
    cols.append((f"{stage}\nx_hat", x_hat))
    title = f"{stage} epoch {payload['epoch']}"
    if "val_ssim" in payload.get("metrics", {}):
        title += f" val SSIM {payload['metrics']['val_ssim']:.3f}"
    return write_png(path, compose_grid(cols, title=title))


def log_model(uri: str, run_id: str, payload: dict, name: str = "model"):
    """Log the stage's reconstructor with ``mlflow.pytorch.log_model`` (input example: 2 inputs of the right
    shape) into run ``run_id``. Returns MLflow's ModelInfo (``model_uri`` loads it with mlflow.pytorch.load_model).

    MLflow 3 stores logged models as LoggedModels (``models:/<model_id>``), not as run artifacts; they are linked
    to the run (``source_run_id``) and listed by ``mlflow.search_logged_models``.
    """
    import mlflow
    import mlflow.pytorch
    from pycompgen.systems import get_system
    cfg, models = models_from_payload(payload)
    stage = payload["stage"]
    module = StageReconstructor(cfg.model.name, stage, models).eval()
    s = cfg.data.image_size
    ch = 1 if get_system(cfg.model.name).input_key(stage) == "z_noisy" else 3
    ch += 3 if ch == 1 and module.hint_size else 0
    example = torch.rand(2, ch, s, s, generator=torch.Generator().manual_seed(0)).numpy()
    reqs = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "numpy"]
    with _tracking_uri_set(uri):
        with mlflow.start_run(run_id=run_id):
            return mlflow.pytorch.log_model(module, name=name, input_example=example, pip_requirements=reqs,
                                            params={"stage": stage, "epoch": int(payload["epoch"])})


@contextlib.contextmanager
def _tracking_uri_set(uri: str):
    """MLflow's global tracking URI set to ``uri`` for the block, then put back as it was. ``set_tracking_uri``
    also exports MLFLOW_TRACKING_URI, which would otherwise outlive the call and redirect every later run of this
    process (``resolve_tracking_uri`` honours that variable)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tu
    saved_env, saved_uri = os.environ.get("MLFLOW_TRACKING_URI"), tu._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        tu._tracking_uri = saved_uri
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def run_evaluation(cfg, checkpoints: dict, out_dir, *, max_images: Optional[int] = None) -> Optional[dict]:
    """The PSNR sweep of pycompgen.evaluation on ``checkpoints`` {label: path} into ``out_dir``; None (with a
    note) when the evaluation package is unavailable."""
    try:
        from pycompgen.evaluation import sweep
    except ImportError as e:
        print(f"note: evaluation skipped (pycompgen.evaluation: {e})")
        return None
    return sweep(cfg, checkpoints, out_dir=str(out_dir), device="cpu",
                 max_images=max_images if max_images is not None else cfg.eval.max_images)


def evaluation_metrics(res: dict) -> dict:
    """Flat scalar metrics of a sweep result: eval_<approach>_ssim_<psnr>dB, eval_ae_ssim."""
    out = {}
    if res.get("ae"):
        for k, v in res["ae"].items():
            if isinstance(v, (int, float)):
                out[f"eval_ae_{k}"] = v
    for row in res.get("rows", []):
        if row.get("channel_psnr") is None:
            continue
        p = row["channel_psnr"]
        tag = f"{int(p)}" if float(p).is_integer() else f"{p}"
        tag = tag.replace("-", "m")
        for k in ("ssim", "psnr"):
            if isinstance(row.get(k), (int, float)):
                out[f"eval_{row['approach']}_{k}_{tag}dB"] = row[k]
    return out


__all__ = ["StageReconstructor", "models_from_payload", "sample_batch", "sample_grid_png", "log_model",
           "run_evaluation", "evaluation_metrics"]
