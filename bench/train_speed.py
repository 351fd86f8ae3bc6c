#!/usr/bin/env python
"""Training speed of Compgen's steps: the plain-PyTorch reference vs pycompgen's default training path, same run.

    python bench/train_speed.py                                   # synthetic faces, CPU preset of bench/quality.py
    python bench/train_speed.py --data ../shared/data/celeba      # real faces (same figures, real edge maps)

(a) reference: float32, NCHW, eager, the pytorch-msssim SSIM loss 0.5(1 - SSIM), Adam; (b) pycompgen's default
path: the harness's ``train_step`` with ``train.amp=auto`` (bfloat16 autocast where the device computes it natively)
and ``train.channels_last=auto``, the fused SSIM kernel and fused Adam. Both build the same networks from the same
seed and feed the same prepared batches (edge maps and channel noise, computed once by pycompgen's channel before
timing: the loader's work, the same for both, is not timed). For each of step 1 and approaches 1-3 the
two variants are timed interleaved (``--repeats`` rounds of ``--steps`` steps each, best round kept) so both see
the same machine load; the load average is printed with every figure. Quality: both variants are trained for
``--quality-steps`` steps from the same initial weights on the same batches and their validation SSIM compared;
this is repeated for ``--quality-seeds`` initial weights / batch orders, since one pair's difference is dominated by
where two chaotic trajectories happen to be (goal: |mean Δ| ≤ 0.005; the per-seed deltas and the reference's own
spread across seeds are reported beside it). Writes bench/results/train_speed-<machine>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from pycompgen.evaluation.presets import CPU_PRESET  # noqa: E402

STAGES = ("step1", "approach1", "approach2", "approach3")
GOAL_RATIO = 2.0      # (b) / (a) images per second, step 1 and approach 3
GOAL_SSIM_DELTA = 0.005


def loadavg() -> float:
    return os.getloadavg()[0]


class Reference:
    """The plain-PyTorch training step of a stage: float32, NCHW, eager, pytorch-msssim loss (no pycompgen ops in
    the loss; the networks are the project's)."""

    def __init__(self, cfg, stage: str, init: dict | None):
        from pytorch_msssim import ssim as ms_ssim_ref

        from pycompgen.systems.compgen.networks import build_compgen
        self.ssim = ms_ssim_ref
        torch.manual_seed(cfg.train.seed)
        self.nets = build_compgen(cfg.model, cfg.data.image_size)
        for k, sd in (init or {}).items():
            self.nets[k].load_state_dict(sd)
        self.stage, self.cfg = stage, cfg
        trainable = {"step1": ("f", "g"), "approach1": ("h",), "approach2": ("g",), "approach3": ("g", "h")}[stage]
        for k, m in self.nets.items():
            m.train(k in trainable)
            for p in m.parameters():
                p.requires_grad_(k in trainable)
        self.opt = torch.optim.Adam([p for k in trainable for p in self.nets[k].parameters()], lr=cfg.train.lr)

    def d(self, x, x_hat):
        return 0.5 * (1 - self.ssim(x_hat, x, data_range=1.0, size_average=True))

    def loss(self, b):
        n = self.nets
        if self.stage == "step1":
            return self.d(b["x"], n["g"](n["f"](b["x"])))
        if self.stage == "approach1":
            with torch.no_grad():
                y = n["f"](b["x"])
            return torch.nn.functional.mse_loss(n["h"](b["z_noisy"]), y)
        if self.stage == "approach2":
            with torch.no_grad():
                y_hat = n["h"](b["z_noisy"])
            return self.d(b["x"], n["g"](y_hat))
        return self.d(b["x"], n["g"](n["h"](b["z_noisy"])))

    def train_step(self, b):
        loss = self.loss(b)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def reconstruct(self, b):
        n = self.nets
        return n["g"](n["f"](b["x"])) if self.stage == "step1" else n["g"](n["h"](b["z_noisy"]))


def make_variants(cfg, stage, init):
    from pycompgen.systems import build_system
    c = cfg.copy()
    c.train.stage = stage
    c.train.amp, c.train.channels_last = "auto", "auto"
    fast = build_system(c.validate(), "cpu", init)
    return {"reference": Reference(c, stage, init), "pycompgen": fast}


def batches(cfg, faces, n, seed):
    """``n`` prepared batches {"x", "z", "z_noisy"} (the same for both variants)."""
    from pycompgen.evaluation.sweep import face_batch
    from pycompgen.systems.compgen.system import make_channel, prepare_batch
    ch = make_channel(cfg)
    g = torch.Generator().manual_seed(seed)
    bs = cfg.train.batch_size
    out = []
    for i in range(n):
        start = (i * bs) % max(1, len(faces) - bs)
        out.append(prepare_batch(face_batch(faces, start, start + bs), cfg, torch.device("cpu"), ch, g, True))
    return out


def timed_steps(variant, data) -> float:
    t = time.perf_counter()
    for b in data:
        variant.train_step(b)
    return sum(b["x"].shape[0] for b in data) / (time.perf_counter() - t)


@torch.no_grad()
def val_ssim(variant, data) -> float:
    from pycompgen.ops import ssim
    models = variant.nets if isinstance(variant, Reference) else variant.models
    for m in models.values():
        m.eval()
    vals = []
    for b in data:
        if isinstance(variant, Reference):
            x_hat = variant.reconstruct(b)
        else:
            with variant.autocast():
                x_hat = type(variant).reconstruct(variant.spec.name, models, b)
        vals.append(ssim(x_hat.float().clamp(0, 1), b["x"], reduction="none"))
    return float(torch.cat(vals).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (after the CPU preset)")
    ap.add_argument("--data", default=None, help="CelebA root (default: synthetic faces)")
    ap.add_argument("--steps", type=int, default=16, help="timed steps per round")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (best kept)")
    ap.add_argument("--quality-steps", type=int, default=300, help="steps trained before comparing val SSIM")
    ap.add_argument("--quality-seeds", type=int, default=3,
                    help="independent pairs (initial weights, batch order) whose val-SSIM deltas are averaged")
    ap.add_argument("--val-images", type=int, default=500)
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/train_speed-cpu<N>.json)")
    args = ap.parse_args(argv)

    from pycompgen.evaluation.machine import cpu_model, machine_summary
    from pycompgen.config import load_config
    from pycompgen.data import load_faces
    from pycompgen.systems.compgen.networks import build_compgen
    from pycompgen.systems.base import native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(None, CPU_PRESET + ["train.psnr_range=[-5,50]", "train.progress=false", "train.device=cpu",
                                          *args.overrides])
    if args.data:
        cfg.data.path = str(Path(args.data).resolve())
    train = load_faces(cfg.data.path, "train", cfg.data.image_size, synthetic_count=max(2000, args.val_images))
    val = load_faces(cfg.data.path, "val", cfg.data.image_size, synthetic_count=max(2000, args.val_images))
    stages = [s for s in args.stages.split(",") if s]
    print(f"train_speed: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, native bf16 "
          f"{native_bf16(torch.device('cpu'))}; batch {cfg.train.batch_size}, {cfg.data.image_size}px, "
          f"data {'CelebA' if args.data else 'synthetic'}; load average {loadavg():.2f}", flush=True)
    torch.manual_seed(1)
    init = {k: m.state_dict() for k, m in build_compgen(cfg.model, cfg.data.image_size).items()}
    speed_data = batches(cfg, train, args.steps, seed=2)
    results = {}
    for stage in stages:
        variants = make_variants(cfg, stage, None if stage == "step1" else init)
        for v in variants.values():  # warm-up (allocator, oneDNN primitive caches)
            for b in speed_data[:2]:
                v.train_step(b)
        rounds = {k: [] for k in variants}
        loads = []
        for _ in range(args.repeats):
            for k, v in variants.items():
                rounds[k].append(timed_steps(v, speed_data))
            loads.append(loadavg())
        best = {k: max(v) for k, v in rounds.items()}
        ratio = best["pycompgen"] / best["reference"]
        fast = variants["pycompgen"]
        results[stage] = {"images_per_s": best, "rounds": rounds, "ratio": ratio, "load_avg": loads,
                          "precision": fast.amp, "channels_last": fast.channels_last}
        print(f"{stage}: reference {best['reference']:.0f} img/s, pycompgen {best['pycompgen']:.0f} img/s "
              f"({fast.amp}{', channels_last' if fast.channels_last else ''}): {ratio:.2f}x; "
              f"load average {', '.join(f'{x:.2f}' for x in loads)}", flush=True)

    quality = {}
    v_data = batches(cfg.copy(), val, max(1, args.val_images // cfg.train.batch_size), seed=4)
    for stage in [s for s in ("step1", "approach3") if s in stages]:
        t = time.perf_counter()
        runs = []
        for seed in range(args.quality_seeds):  # each seed: its own initial weights and batch order
            torch.manual_seed(100 + seed)
            q_init = {k: m.state_dict() for k, m in build_compgen(cfg.model, cfg.data.image_size).items()}
            variants = make_variants(cfg, stage, q_init)
            for b in batches(cfg, train, args.quality_steps, seed=3 + 1000 * seed):
                for v in variants.values():
                    v.train_step(b)
            ssims = {k: val_ssim(v, v_data) for k, v in variants.items()}
            runs.append({"seed": seed, "val_ssim": ssims, "delta": ssims["pycompgen"] - ssims["reference"]})
            print(f"quality {stage} seed {seed} after {args.quality_steps} steps: val SSIM reference "
                  f"{ssims['reference']:.4f}, pycompgen {ssims['pycompgen']:.4f} (delta {runs[-1]['delta']:+.4f}); "
                  f"load average {loadavg():.2f}", flush=True)
        deltas = torch.tensor([r["delta"] for r in runs])
        ref = torch.tensor([r["val_ssim"]["reference"] for r in runs])
        delta, sd = float(deltas.mean()), float(deltas.std()) if len(runs) > 1 else 0.0
        quality[stage] = {"runs": runs, "delta": delta, "delta_sd": sd,
                          "reference_sd_across_seeds": float(ref.std()) if len(runs) > 1 else 0.0,
                          "steps": args.quality_steps, "seeds": args.quality_seeds,
                          "val_images": sum(b["x"].shape[0] for b in v_data), "load_avg": loadavg(),
                          "seconds": time.perf_counter() - t}
        print(f"quality {stage}: mean delta {delta:+.4f} (sd {sd:.4f} over {len(runs)} seeds; the reference's own "
              f"sd across seeds {quality[stage]['reference_sd_across_seeds']:.4f}), goal |mean delta| <= "
              f"{GOAL_SSIM_DELTA}", flush=True)

    goals = {f"{s}_ratio>={GOAL_RATIO}": results[s]["ratio"] >= GOAL_RATIO for s in ("step1", "approach3")
             if s in results}
    goals.update({f"{s}_ssim_delta<={GOAL_SSIM_DELTA}": abs(q["delta"]) <= GOAL_SSIM_DELTA
                  for s, q in quality.items()})
    out = Path(args.out or ROOT / "bench" / "results" / f"train_speed-cpu{os.cpu_count()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "train_speed", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "command": "python bench/train_speed.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "machine": {**machine_summary(), "native_bf16": native_bf16(torch.device("cpu"))},
           "config": cfg.flatten(), "speed": results, "quality": quality, "goals": goals}
    out.write_text(json.dumps(doc, indent=1))
    print(f"goals: {goals}\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
