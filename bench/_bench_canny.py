"""Canny benchmark rows for bench/ops.py: pycompgen.ops.canny vs a cv2.Canny loop and kornia.filters.canny.

    python bench/_bench_canny.py [--device cpu|cuda] [--quick] [--threads 2]

Inputs: N x 3 x H x W RGB in [0, 1] (real CelebA faces resized with cv2.INTER_AREA when ../shared/data/celeba
exists, else synthetic faces), thresholds 50/150 (OpenCV units), L2 gradient. Peers, timed round-robin in the same
run:
  cv2-loop          cv2.Canny over the N images already converted to 8-bit gray (Canny alone: the hardest peer);
  cv2-loop+convert  the same from the float RGB tensor (quantise, cvtColor, Canny, stack), like for like with ours;
  kornia            kornia.filters.canny(x, 50/255, 150/255) (its default 5x5 Gaussian blur included).
pycompgen runs without blur; pycompgen-blur1 adds the sigma=1 pre-blur (closest to kornia's pipeline).
"""
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import interleaved_median_ms, run_module_main  # noqa: E402

CELEBA = HERE.parent.parent / "shared" / "data" / "celeba"
SHAPES = [(100, 3, 64, 64), (16, 3, 256, 256)]
LOW, HIGH = 50 / 255, 150 / 255
GOALS = {"cpu": {"cv2-loop": 1.0, "kornia": 20.0}, "cuda": {"kornia": 50.0}}


def faces(n, size):
    """(n, 3, size, size) float32 RGB in [0, 1] and a description of the source."""
    import cv2

    files = sorted((CELEBA / "img_align_celeba").glob("*.jpg"))[:n] if CELEBA.is_dir() else []
    if len(files) == n:
        rgb = np.stack([cv2.resize(cv2.imread(str(f))[..., ::-1], (size, size), interpolation=cv2.INTER_AREA)
                        for f in files])
        src = "celeba"
    else:
        try:
            from pycompgen.data import synthetic_faces

            rgb = synthetic_faces(n, image_size=size, seed=0)
            src = "synthetic"
        except Exception:  # data package unavailable: smooth random images
            g = np.random.default_rng(0)
            rgb = np.stack([cv2.GaussianBlur(g.integers(0, 256, (size, size, 3)).astype(np.uint8), (0, 0), 2)
                            for _ in range(n)])
            src = "random"
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).contiguous().float() / 255
    return x, src


def run(device: str, quick: bool) -> list:
    import cv2
    from pycompgen.ops import canny

    repeats = 3 if quick else 10
    rows = []
    for shape in SHAPES:
        n, _, h, w = shape
        x_cpu, src = faces(n, h)
        x = x_cpu.to(device)
        u8 = (x_cpu * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        gray = np.stack([cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for a in u8])

        def cv2_loop():
            return [cv2.Canny(a, 50, 150, L2gradient=True) for a in gray]

        def cv2_loop_convert():
            q = (x_cpu * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
            e = np.stack([cv2.Canny(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), 50, 150, L2gradient=True) for a in q])
            return torch.from_numpy(e)[:, None].to(device).float() / 255

        fns = {
            "pycompgen": lambda: canny(x, LOW, HIGH),
            "pycompgen-blur1": lambda: canny(x, LOW, HIGH, blur_sigma=1.0),
            "cv2-loop": cv2_loop,
            "cv2-loop+convert": cv2_loop_convert,
        }
        try:
            import kornia

            fns["kornia"] = lambda: kornia.filters.canny(x, LOW, HIGH)
        except ImportError:
            pass
        ms = interleaved_median_ms(fns, device, repeats, warmup=1)
        # quality check in the same run: edge maps equal to cv2's
        ours = canny(x, LOW, HIGH)[:, 0].cpu().numpy() > 0
        equal = float((ours == (np.stack(cv2_loop()) > 0)).all(axis=(1, 2)).mean())
        goals = GOALS["cuda" if device.startswith("cuda") else "cpu"]
        for name, t in ms.items():
            row = {"op": "canny", "shape": "x".join(map(str, shape)), "impl": name, "ms": t, "device": device,
                   "data": src}
            if name == "pycompgen":
                for peer, pt in ms.items():
                    if not peer.startswith("pycompgen"):
                        row[f"vs_{peer}"] = pt / t
                row["images_equal_to_cv2"] = equal
                parts, met = [], True
                for peer, target in goals.items():
                    if f"vs_{peer}" in row:
                        ok = row[f"vs_{peer}"] >= target
                        met &= ok
                        parts.append(f">= {target:g}x {peer}: {'MET' if ok else 'NOT MET'}")
                row["goal"] = "; ".join(parts)
                row["goal_met"] = met
            rows.append(row)
    return rows


if __name__ == "__main__":
    run_module_main(run)
