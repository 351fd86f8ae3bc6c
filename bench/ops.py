"""Benchmark of the compiled ops against their peers, all measured in the same run.

    python bench/ops.py [--quick] [--device cpu|cuda] [--threads 2] [--out bench/results/ops-<machine>.json]

Prints one table (op, shape, impl, fwd ms, fwd+bwd ms, speed-up vs each peer, goal MET / NOT MET) and writes the
rows with a machine description to JSON. SSIM is measured here; Canny and AWGN rows come from
bench/_bench_canny.py and bench/_bench_awgn.py when present (each exposes run(device, quick) -> list[dict]).
Times are medians over repeats after warm-up; ratios are peer time / pycompgen time (> 1: pycompgen faster).
"""
import argparse
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import interleaved_median_ms  # noqa: E402
from pycompgen.evaluation.machine import load_average, machine_info  # noqa: E402

SSIM_SHAPES = [(100, 3, 64, 64), (16, 3, 256, 256)]
# Goals (issue 2): fwd+bwd speed-up of pycompgen's SSIM over each peer.
SSIM_GOALS = {"cpu": {"pytorch-msssim": 4.0}, "cuda": {"fused-ssim": 1.0, "pytorch-msssim": 6.0}}


def shape_str(shape):
    return "x".join(str(s) for s in shape)


def ssim_impls(device):
    """name -> (fwd(x, y), loss(x, y)) callables; the loss is 0.5*(1-SSIM) with 11x11 valid Gaussian windows."""
    from pycompgen.ops import ssim, ssim_loss
    from pytorch_msssim import ssim as msssim

    impls = {
        "pycompgen": (lambda x, y: ssim(x, y), lambda x, y: ssim_loss(x, y)),
        "pytorch-msssim": (lambda x, y: msssim(x, y, data_range=1.0),
                           lambda x, y: 0.5 * (1 - msssim(x, y, data_range=1.0))),
    }
    try:
        import kornia

        impls["kornia"] = (lambda x, y: kornia.metrics.ssim(x, y, 11, 1.0, padding="valid").mean(),
                           lambda x, y: kornia.losses.ssim_loss(x, y, 11, 1.0, padding="valid"))
    except ImportError:
        pass
    if device.startswith("cuda"):
        try:
            from fused_ssim import fused_ssim

            impls["fused-ssim"] = (lambda x, y: fused_ssim(x, y, padding="valid", train=False),
                                   lambda x, y: 0.5 * (1 - fused_ssim(x, y, padding="valid")))
        except ImportError:
            pass
    return impls


def bench_ssim(device, quick):
    repeats = 3 if quick else 10
    rows = []
    for shape in SSIM_SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=g)
        y = (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
        x, y = x.to(device), y.to(device)
        fwd_fns, fb_fns = {}, {}
        for name, (fwd, loss) in ssim_impls(device).items():
            xg = x.clone().requires_grad_()

            def run_fwd(fwd=fwd):
                with torch.no_grad():
                    fwd(x, y)

            def run_fwd_bwd(loss=loss, xg=xg):
                xg.grad = None
                loss(xg, y).backward()

            fwd_fns[name], fb_fns[name] = run_fwd, run_fwd_bwd
        f_ms = interleaved_median_ms(fwd_fns, device, repeats)
        fb_ms = interleaved_median_ms(fb_fns, device, repeats)
        times = {name: (f_ms[name], fb_ms[name]) for name in fwd_fns}
        ours_f, ours_fb = times["pycompgen"]
        for name, (f_ms, fb_ms) in times.items():
            row = {"op": "ssim", "shape": shape_str(shape), "impl": name, "fwd_ms": f_ms, "fwd_bwd_ms": fb_ms}
            if name == "pycompgen":
                for peer, (pf, pfb) in times.items():
                    if peer != name:
                        row[f"vs_{peer}"] = pfb / ours_fb
                        row[f"vs_{peer}_fwd"] = pf / ours_f
                goals = SSIM_GOALS["cuda" if device.startswith("cuda") else "cpu"]
                parts = []
                for peer, target in goals.items():
                    if f"vs_{peer}" in row:
                        ok = row[f"vs_{peer}"] >= target
                        parts.append(f"fwd+bwd >= {target:g}x {peer}: {'MET' if ok else 'NOT MET'}")
                row["goal"] = "; ".join(parts)
                row["goal_met"] = all("NOT MET" not in p for p in parts) if parts else None
            rows.append(row)
    return rows


def other_benches(device, quick):
    rows = []
    for name in ("_bench_canny", "_bench_awgn"):
        path = HERE / f"{name}.py"
        if not path.exists():
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        rows.extend(mod.run(device, quick))
    return rows


def fmt_ms(v):
    return "" if v is None else f"{v:.2f}"


def print_table(rows):
    def ratios(r):
        out = []
        for k, v in r.items():
            if k.startswith("vs_") and not k.endswith("_fwd") and isinstance(v, (int, float)):
                fwd = r.get(k + "_fwd")
                out.append(f"{k[3:]} {v:.2f}x" + (f" (fwd {fwd:.2f}x)" if isinstance(fwd, (int, float)) else ""))
        return ", ".join(out)

    table = [("op", "shape", "impl", "fwd ms", "fwd+bwd ms", "speed-up vs peers: fwd+bwd (fwd)", "goal")]
    for r in rows:
        fwd = r.get("fwd_ms", r.get("ms"))
        table.append((r["op"], r["shape"], r["impl"], fmt_ms(fwd), fmt_ms(r.get("fwd_bwd_ms")), ratios(r),
                      r.get("goal", "")))
    widths = [max(len(str(t[i])) for t in table) for i in range(len(table[0]))]
    for i, t in enumerate(table):
        print(" | ".join(str(c).ljust(w) for c, w in zip(t, widths)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def default_out(device, threads):
    if device.startswith("cuda"):
        gpu = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
        return HERE / "results" / f"ops-cuda-{gpu}.json"
    return HERE / "results" / f"ops-cpu-{threads}core.json"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--out", default=None, help="JSON output (default bench/results/ops-<machine>.json)")
    p.add_argument("--ops", default="ssim,canny,awgn", help="comma-separated subset of ops to run")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    torch.set_num_threads(a.threads)
    info = machine_info(a.device)
    ops = set(a.ops.split(","))
    rows = []
    if "ssim" in ops:
        rows += bench_ssim(a.device, a.quick)
    rows += [r for r in other_benches(a.device, a.quick) if r.get("op") in ops]
    load = info["load_average_at_start"]
    print(f"# {info['cpu_model']} ({info['cpu_cores']} cores, {a.threads} threads), torch {info['torch']}, "
          f"device {a.device}{', ' + info['gpu'] if 'gpu' in info else ''}, {info['date']}"
          + (f", load average {load[0]:.1f}" if load else ""))
    print_table(rows)
    out = Path(a.out) if a.out else default_out(a.device, a.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    info["load_average_at_end"] = load_average()
    tmp.write_text(json.dumps({"machine": info, "quick": a.quick, "rows": rows}, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
