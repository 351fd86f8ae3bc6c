"""AWGN benchmark rows for bench/ops.py: pycompgen.ops.awgn vs the plain torch ops it replaces.

    python bench/_bench_awgn.py [--device cpu|cuda] [--quick] [--threads 2]

z: N x 3 x H x W float32, PSNR -5 dB (sigma = 1.78 > 1, so the power normalisation divides), peak 1.
Peers, timed round-robin in the same run:
  torch-ops  (z + sigma * torch.randn_like(z)) / max(1, sigma) with a Python-float sigma (its cheapest form);
  copy       z.clone(): one read and one write, the memory-bandwidth bound (GPU goal: >= 80 % of it).
"""
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import interleaved_median_ms, run_module_main  # noqa: E402

SHAPES = [(100, 3, 64, 64), (16, 3, 256, 256)]
PSNR = -5.0


def run(device: str, quick: bool) -> list:
    from pycompgen.ops import awgn

    repeats = 5 if quick else 20
    rows = []
    sigma = 10 ** (-PSNR / 20)
    div = max(1.0, sigma)
    for shape in SHAPES:
        z = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
        fns = {
            "pycompgen": lambda: awgn(z, PSNR),
            "torch-ops": lambda: (z + sigma * torch.randn_like(z)) / div,
            "copy": lambda: z.clone(),
        }
        ms = interleaved_median_ms(fns, device, repeats, warmup=2)
        # sanity in the same run: the noise level is right
        std = (awgn(z, PSNR, normalize=False) - z).std().item()
        cuda = device.startswith("cuda")
        for name, t in ms.items():
            row = {"op": "awgn", "shape": "x".join(map(str, shape)), "impl": name, "ms": t, "device": device}
            if name == "pycompgen":
                row["vs_torch-ops"] = ms["torch-ops"] / t
                row["vs_copy"] = ms["copy"] / t  # fraction of copy bandwidth
                row["noise_std_rel_err"] = abs(std / sigma - 1)
                if cuda:
                    met = row["vs_copy"] >= 0.8
                    row["goal"] = f">= 80% of copy bandwidth: {'MET' if met else 'NOT MET'}"
                else:
                    met = row["vs_torch-ops"] >= 1.0
                    row["goal"] = f">= 1x torch-ops: {'MET' if met else 'NOT MET'}"
                row["goal_met"] = met
            rows.append(row)
    return rows


if __name__ == "__main__":
    run_module_main(run)
