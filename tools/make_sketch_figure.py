"""Before/after figure of the sketch preprocessing (docs/figures/sketch_preprocessing.png).

The committed figure uses synthetic hand-drawn-style sketches and synthetic faces only (no dataset pixels):
    python tools/make_sketch_figure.py
With --sketches DIR it shows the first sketches of any folder instead (for local viewing; do not commit figures
made from datasets):
    python tools/make_sketch_figure.py --sketches ../shared/data/cufsf/sketches --out /tmp/sketches.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sketches", help="folder of hand-drawn sketches (default: synthetic sketches)")
    ap.add_argument("--out", help="output PNG (default: docs/figures/sketch_preprocessing.png, or "
                                  "./sketch_preprocessing_local.png with --sketches)")
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--crop", type=float, default=1.0, help="central fraction of the square kept (see docs/data.md)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from pycompgen.data import EdgeChannel, sketch_stages, synthetic_faces, synthetic_sketches
    from pycompgen.data.sketch import _sketch_files

    n, size = args.rows, args.image_size
    if args.sketches:
        files = _sketch_files(Path(args.sketches))[:n]
        if not files:
            raise SystemExit(f"no image files in {args.sketches}")
        sketches = [cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_GRAYSCALE) for p in files]
        label = f"sketch ({Path(args.sketches).name})"
        out = Path(args.out or "sketch_preprocessing_local.png")
    else:
        sketches = list(synthetic_sketches(n, 200, seed=args.seed))
        label = "synthetic hand-drawn sketch"
        out = Path(args.out or REPO / "docs" / "figures" / "sketch_preprocessing.png")
    faces = synthetic_faces(n, size, seed=args.seed + 11)
    ch = EdgeChannel(psnr=float("inf"))
    z = ch(torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous())["z"][:, 0].numpy()

    cols = [label, f"crop + resize {size}px", "black-hat stroke strength", "Otsu binary + dark-area outlines",
            "thinned: edge-domain input", "synthetic face", "its Canny edge map z (training)"]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), 2.15 * n + 0.3), squeeze=False)
    for r in range(n):
        st = sketch_stages(sketches[r], size, crop=args.crop)
        panels = [(sketches[r], "gray"), (st["resized"], "gray"), (st["strokes"], "magma"), (st["binary"], "gray"),
                  (st["edges"], "gray"), (faces[r], None), (z[r], "gray")]
        for c, (img, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, interpolation="nearest", vmin=0 if cmap else None,
                      vmax=(1 if img.dtype == bool or img.dtype.kind == "f" else 255) if cmap else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 4:
                ax.set_xlabel(f"{st['edges'].mean() * 100:.1f} % edge px", fontsize=7)
            if c == 6:
                ax.set_xlabel(f"{z[r].mean() * 100:.1f} % edge px", fontsize=7)
    fig.suptitle("Sketch preprocessing: hand drawing -> 1-px edge map in the Canny domain of the training faces "
                 f"(EdgeChannel defaults low={ch.canny_low}, high={ch.canny_high})", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
