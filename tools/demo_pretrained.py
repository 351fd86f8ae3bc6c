#!/usr/bin/env python
"""The pretrained model at work (run by ``make demo`` after the search): a few synthetic hand-drawn sketches are
written to runs/demo/sketches/, and faces are generated from them with ``pycompgen generate --pretrained NAME``.
Prints the output grid's path last. Without the entry in the zoo it prints one line saying so and exits 0."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_sketches(folder: Path, n: int = 8, seed: int = 0) -> list:
    import cv2
    from pycompgen.data.synthetic import synthetic_sketches
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(synthetic_sketches(n, size=200, seed=seed)):
        p = folder / f"sketch_{i:02d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def write_try_inputs(folder: Path) -> list:
    """The README's "Try it" inputs: one synthetic 64x64 face and one synthetic hand-drawn sketch (no dataset
    pixels), written as docs/try/face.png and docs/try/sketch.png by ``--try-inputs docs/try``."""
    import cv2
    from pycompgen.data.synthetic import synthetic_faces, synthetic_sketches
    folder.mkdir(parents=True, exist_ok=True)
    face, sketch = folder / "face.png", folder / "sketches" / "sketch.png"
    sketch.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(face), synthetic_faces(1, 64, seed=3)[0][:, :, ::-1])
    cv2.imwrite(str(sketch), synthetic_sketches(1, size=200, seed=3)[0])
    return [face, sketch]


def write_refine_inputs(folder: Path) -> Path:
    """A crude face for the README's refine command: a synthetic 64x64 face downscaled to 16 px and back."""
    import cv2
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.evaluation.refiner import degrade
    x = to_float01(synthetic_faces(1, 64, seed=3))
    crude = (degrade(x, 16)[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    p = folder / "crude_face.png"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(p), crude[:, :, ::-1])
    return p


def write_refine_picture(folder: Path, names=("began-64-a", "began-64-b", "began-64-c"), n: int = 6) -> Path:
    """docs/try/refine.png: synthetic faces degraded to 16 px, and each refiner's output (synthetic pixels only)."""
    from pycompgen import zoo
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.evaluation.figures import compose_grid, write_png
    from pycompgen.evaluation.refiner import degrade
    from pycompgen.systems.began import refine
    x = to_float01(synthetic_faces(n, 64, seed=3))
    crude = degrade(x, 16)
    rows = [("synthetic face", x), ("16 px input", crude)]
    for name in names:
        if name in zoo.list():
            rows.append((name, refine(zoo.load(name)["train"].models, crude)))
    return Path(write_png(folder / "refine.png", compose_grid(rows, title="pycompgen refine (synthetic inputs)")))


def write_color_picture(folder: Path, name: str = "compgen-64-color", n: int = 6) -> Path:
    """docs/try/color.png: synthetic faces, the edges-only compgen-64 and the colour-hint entry at each rate point,
    each through a real .pcg file (synthetic pixels only; mean file size in the column title)."""
    import torch
    from pycompgen import zoo
    from pycompgen.cli.common import pretrained_stage
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.evaluation.figures import compose_grid, write_png
    from pycompgen.inference import compress_batch, decompress_batch
    x = to_float01(synthetic_faces(n, 64, seed=3))
    rows = [("synthetic face", x)]
    for label, entry, q in [("compgen-64", "compgen-64", None)] + \
            [(f"{name} q{q}", name, q) for q in zoo.qualities(zoo.entry(name))]:
        ck = pretrained_stage(entry, quality=q)
        files = compress_batch(ck, x)
        out = torch.cat([d[0] for d in decompress_batch(ck, [(str(i), f) for i, f in enumerate(files)])])
        rows.append((f"{label}\n{sum(map(len, files)) / n:.0f} B", out))
    return Path(write_png(folder / "color.png", compose_grid(rows, title="compress -> decompress (synthetic faces)")))


def write_sketch2face_picture(folder: Path, name: str = "sketch2face-64", n: int = 6) -> Path:
    """docs/try/sketch2face.png: synthetic hand-drawn sketches and the entry's faces, the sketches read as
    ``generate`` reads them (synthetic pixels only)."""
    import numpy as np
    import torch
    from pycompgen import zoo
    from pycompgen.data.cache import center_square_resize
    from pycompgen.data.synthetic import synthetic_sketches
    from pycompgen.evaluation.figures import compose_grid, write_png
    from pycompgen.systems.sketch2face import Sketch2Face
    pre = zoo.load(name)
    lc = pre[next(iter(pre))]
    size = lc.image_size
    sk = [center_square_resize(img, size) for img in synthetic_sketches(n, size=200, seed=3)]
    x = torch.from_numpy(np.stack(sk))[:, None].float().div(255) * 2 - 1
    with torch.no_grad():
        faces = (Sketch2Face.sketch_to_face(lc.models, x).float().clamp(-1, 1) + 1) / 2
    rows = [("synthetic sketch", ((x + 1) / 2).expand(-1, 3, -1, -1)), (f"{name}\n({lc.stage})", faces)]
    return Path(write_png(folder / "sketch2face.png", compose_grid(rows, title="generate --pretrained "
                                                                            f"{name} (synthetic sketches)")))


def write_edgediff_picture(folder: Path, name: str = "edgediff-64", n: int = 6) -> Path:
    """docs/try/edgediff.png: synthetic faces through edgediff-64 files at every --quality, decoded with --denoise
    none and full (synthetic pixels only; mean file size in the row title)."""
    import torch
    from pycompgen import zoo
    from pycompgen.cli.common import pretrained_stage
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.evaluation.figures import compose_grid, write_png
    from pycompgen.inference import compress_batch, decompress_batch
    x = to_float01(synthetic_faces(n, 64, seed=3))
    rows = [("synthetic face", x)]
    for q in zoo.qualities(zoo.entry(name)):
        ck = pretrained_stage(name, quality=q)
        files = compress_batch(ck, x)
        blobs = [(str(i), f) for i, f in enumerate(files)]
        for mode in ("none", "full"):
            out = torch.cat([d[0] for d in decompress_batch(ck, blobs, denoise=mode)])
            rows.append((f"q{q} {ck.bits} bit {mode}\n{sum(map(len, files)) / n:.0f} B", out))
    return Path(write_png(folder / "edgediff.png", compose_grid(rows, title="compress -> decompress --denoise "
                                                                           "(synthetic faces)")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="compgen-64", help="zoo entry (default compgen-64)")
    ap.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    ap.add_argument("--n", type=int, default=8, help="number of synthetic sketches (default 8)")
    ap.add_argument("--try-inputs", metavar="DIR", help="only write the README's Try-it inputs into DIR and exit")
    a = ap.parse_args(argv)
    if a.try_inputs:
        paths = write_try_inputs(Path(a.try_inputs)) + [write_refine_inputs(Path(a.try_inputs))]
        from pycompgen import zoo
        if "began-64-a" in zoo.list():
            paths.append(write_refine_picture(Path(a.try_inputs)))
        if "compgen-64-color" in zoo.list():
            paths.append(write_color_picture(Path(a.try_inputs)))
        if "sketch2face-64" in zoo.list():
            paths.append(write_sketch2face_picture(Path(a.try_inputs)))
        if "edgediff-64" in zoo.list():
            paths.append(write_edgediff_picture(Path(a.try_inputs)))
        print("\n".join(str(p) for p in paths))
        return 0
    from pycompgen import zoo
    if a.name not in zoo.list():
        print(f"demo: pretrained model {a.name!r} is not in the zoo yet (available: "
              f"{', '.join(zoo.list()) or 'none'}); skipping the pretrained demo")
        return 0
    out = Path(a.out)
    write_sketches(out / "sketches", a.n)
    from pycompgen.cli import main as cli
    gen = out / "pretrained"
    rc = cli(["generate", "--pretrained", a.name, "--sketches", str(out / "sketches"), "--out", str(gen)])
    if rc:
        print(f"demo: pycompgen generate --pretrained {a.name} failed (exit {rc})")
        return rc
    grids = sorted(gen.glob("sketches_p*.png"))
    print(f"demo: faces generated by pretrained {a.name} from {a.n} synthetic sketches "
          f"({out / 'sketches'}) -> {grids[0] if grids else gen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
