"""Fitting Compgen's four stages into a wall-clock budget (bench/quality.py): measured seconds per training step of
each stage, the measured cost of the sweep per image, and the plan of steps and epochs per stage.

The plan: the training seconds are split step 1 40 %, approach 1 15 %, approach 2 15 %, approach 3 30 %
(``STAGE_SHARE``); a stage with fewer steps than a full epoch runs ``EPOCHS_SMALL`` "mini-epochs" of
``train.max_steps_per_epoch`` steps (each a fresh shuffle of the whole train partition). ``EVAL_RESERVE`` is the
share of the budget a caller keeps for the evaluation."""
from __future__ import annotations

import math
import time

import torch

STAGE_SHARE = {"step1": 0.40, "approach1": 0.15, "approach2": 0.15, "approach3": 0.30}
EVAL_RESERVE = 0.12          # share of the budget kept for the sweep, sketches and figures
EPOCHS_SMALL = 5             # mini-epochs per stage when a stage gets less than one full epoch


def calibrate(cfg, faces, device, stages, steps: int = 2) -> dict:
    """Seconds per training step of each stage (one warm-up step, then the mean of ``steps``)."""
    from pycompgen.evaluation.sweep import face_batch
    from pycompgen.systems.compgen.networks import build_compgen
    from pycompgen.training import build_system

    torch.manual_seed(0)
    rnd = {k: m.state_dict() for k, m in build_compgen(cfg.model, cfg.data.image_size).items()}
    x8 = face_batch(faces, 0, min(len(faces), cfg.train.batch_size))
    out = {}
    for name in stages:
        c = cfg.copy()
        c.train.stage = name
        st = build_system(c, device, None if name == "step1" else rnd)
        gen = torch.Generator(device=device).manual_seed(0)
        times = []
        for i in range(steps + 1):
            t = time.perf_counter()
            st.train_step(st.prepare_batch(x8, gen))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - t)
        out[name] = sum(times) / len(times)
    return out


def eval_seconds_per_image(cfg, ckpts, faces, device, n_evals: int) -> float:
    """Measured cost of the sweep per validation image: one reconstruction + metrics, times ``n_evals``."""
    from pycompgen.data import EdgeChannel
    from pycompgen.models import load_for_eval
    from pycompgen.metrics import compute_metrics
    from pycompgen.evaluation.sweep import face_batch
    from pycompgen.systems.compgen.system import decode_edges, make_hint

    lc = load_for_eval(ckpts["approach3"], expect_model=cfg.model.name, device=device)
    ch = EdgeChannel(cfg.data.canny_low, cfg.data.canny_high, cfg.data.blur_sigma, psnr=0.0)
    x8 = face_batch(faces, 0, min(len(faces), 50))
    with torch.no_grad():
        t = time.perf_counter()
        b = ch(x8, device)
        xh = decode_edges(lc.models, b["z_noisy"], make_hint(lc.models, b["x"], b["psnr"]))
        compute_metrics(xh, b["x"], b["z"], edge_fn=ch.edges)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - t) / x8.shape[0] * n_evals


def plan_budget(cfg, sec_per_step: dict, seconds: float, n_train: int) -> dict:
    """Steps / epochs per stage that fit ``seconds`` of training (see the module docstring)."""
    bs = cfg.train.batch_size
    full = math.ceil(n_train / bs)
    plan = {}
    for name, share in STAGE_SHARE.items():
        steps = max(1, int(share * seconds / sec_per_step[name]))
        if steps >= full:
            epochs, per_epoch = steps // full, None
            steps = epochs * full
        else:
            epochs = min(EPOCHS_SMALL, steps)
            per_epoch = max(1, steps // epochs)
            steps = epochs * per_epoch
        plan[name] = {"epochs": epochs, "max_steps_per_epoch": per_epoch, "steps": steps,
                      "images": steps * bs, "passes_over_train": round(steps * bs / n_train, 3),
                      "est_s": round(steps * sec_per_step[name], 1), "sec_per_step": round(sec_per_step[name], 3)}
    return plan
