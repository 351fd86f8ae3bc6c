"""Unpaired two-domain data (Sketch2face): grayscale sketches and RGB faces, drawn independently.

Item i of an ``UnpairedSketchFaces`` is one uint8 tensor (4, H, W): channel 0 a sketch (grayscale, dark strokes on
light paper), channels 1..3 a face (RGB). Keeping the two domains in one tensor lets the harness's default collate,
samplers and sample grids work unchanged; ``Sketch2Face.prepare_batch`` splits it into {"sketch" (N,1,H,W),
"face" (N,3,H,W)} in [-1, 1]. The pairing is arbitrary: the face is ``faces[i % n_faces]`` and the sketch
``sketches[perm[i % n_sketches]]`` for a fixed seeded permutation, and the sampler shuffles i, so batches of both
domains are independent random draws (no loss of the system couples sketch j with face j of a batch).

With ``photos`` (``sketch2face.lambda_paired`` > 0, CUFSF only) an item is (6, H, W): channel 4 the luma of the
photo the sketch was drawn from (CUFSF ``photos/`` with the sketch's file name, read and cropped as the sketch) and
channel 5 all 255 where that photo exists, all 0 where it does not (``sketches_unpaired/``). Only the split's own
photos are read: a validation sketch's photo is never a training target.

Sketch sources (``sketch2face.sketch_source``):
- ``cufsf``: the CUFSF artist sketches (``sketches/`` and ``sketches_unpaired/`` of a CUFSF root, or any folder of
  sketch images), centre-square cropped and resized with INTER_AREA, grayscale; every 10th file (sorted by name) is
  the validation split. Synthetic stand-in: ``synthetic_sketches`` (hand-drawn-style, no dataset pixels).
- ``canny``: Compgen's Canny edge maps of faces as a simpler sketch style, drawn as dark 1-px lines on white
  (255 - 255·edges), made from a different permutation of the same split's faces (so no face is ever shown with
  its own edge map). Synthetic stand-in: edge maps of other synthetic faces.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .cache import center_square_resize
from .folder import IMAGE_EXTS

SKETCH_SOURCES = ("cufsf", "canny")


class UnpairedSketchFaces(torch.utils.data.Dataset):
    """Sketches uint8 (Ns, H, W) and faces (a FaceArray or uint8 (Nf, H, W, 3)) -> items uint8 (4, H, W)."""

    def __init__(self, sketches: np.ndarray, faces, seed: int = 0, source: str = "unpaired",
                 photos: np.ndarray | None = None, has_photo: np.ndarray | None = None):
        imgs = getattr(faces, "images", faces)
        if not isinstance(sketches, np.ndarray) or sketches.ndim != 3 or sketches.dtype != np.uint8:
            raise ValueError(f"sketches must be a uint8 (N, H, W) array, got {getattr(sketches, 'dtype', '')} "
                             f"{getattr(sketches, 'shape', type(sketches).__name__)}")
        if imgs.ndim != 4 or imgs.shape[3] != 3:
            raise ValueError(f"faces must be (N, H, W, 3), got {imgs.shape}")
        if sketches.shape[1:] != imgs.shape[1:3]:
            raise ValueError(f"sketches are {sketches.shape[1]}x{sketches.shape[2]} but faces are "
                             f"{imgs.shape[1]}x{imgs.shape[2]}")
        if len(sketches) == 0 or len(imgs) == 0:
            raise ValueError("both domains need at least one image")
        if photos is not None and (photos.shape != sketches.shape or has_photo is None
                                   or has_photo.shape != (len(sketches),)):
            raise ValueError(f"photos must match the sketches' shape {sketches.shape} with one has_photo flag per "
                             f"sketch, got {photos.shape}")
        self.sketches, self.faces = sketches, faces
        self.photos, self.has_photo = photos, has_photo
        self.image_size = int(sketches.shape[1])
        self.n_sketches, self.n_faces = int(len(sketches)), int(len(imgs))
        self.perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, 4004]).permutation(self.n_sketches)
        self.source = source

    def __len__(self):
        return max(self.n_sketches, self.n_faces)

    def _face(self, i: int) -> np.ndarray:
        imgs = getattr(self.faces, "images", self.faces)
        return np.asarray(imgs[i % self.n_faces])

    def __getitem__(self, i):
        j = self.perm[i % self.n_sketches]
        parts = [self.sketches[j][None], self._face(int(i)).transpose(2, 0, 1)]
        if self.photos is not None:
            parts += [self.photos[j][None], np.full_like(self.photos[j][None], 255 if self.has_photo[j] else 0)]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, 0)))

    def __repr__(self):
        return (f"UnpairedSketchFaces(sketches={self.n_sketches}, faces={self.n_faces}, "
                f"image_size={self.image_size}, source={self.source!r})")


def sketch_files(path) -> list:
    """Sketch image files of a CUFSF root (``sketches/`` + ``sketches_unpaired/``) or of a plain folder."""
    root = Path(os.path.expanduser(str(path)))
    if not root.is_dir():
        raise FileNotFoundError(f"sketch folder not found: {root} (set sketch2face.sketch_path to a CUFSF root "
                                f"or a folder of sketch images)")
    subs = [root / d for d in ("sketches", "sketches_unpaired") if (root / d).is_dir()] or [root]
    files = sorted(p for d in subs for p in d.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no sketch images in {root}")
    return files


def _read_gray(path, image_size: int):
    """One sketch file -> grayscale uint8 (image_size, image_size), centre square crop and resize; None when
    unreadable."""
    import cv2
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if img is None else center_square_resize(img, image_size)


def _read_split(path, split: str, image_size: int) -> tuple:
    """The readable sketches of ``split`` (every 10th file is "val") -> (uint8 (N, image_size, image_size), their
    files)."""
    files = sketch_files(path)
    kept = [(f, img) for i, f in enumerate(files)
            if (i % 10 == 0) == (split != "train") and (img := _read_gray(f, image_size)) is not None]
    if not kept:
        raise ValueError(f"no readable sketch for split {split!r} in {path}")
    return np.stack([img for _, img in kept]), [f for f, _ in kept]


def load_sketch_images(path, split: str = "train", image_size: int = 64) -> np.ndarray:
    """Grayscale sketches of ``split`` (every 10th file is "val") -> uint8 (N, image_size, image_size)."""
    return _read_split(path, split, image_size)[0]


def load_sketch_photos(files, image_size: int = 64) -> tuple:
    """The CUFSF photos of sketch ``files`` (in order): (luma uint8 (N, image_size, image_size), zeros where a
    sketch has no photo; has_photo bool (N,)). A photo is ``photos/<the sketch's file name>`` beside ``sketches/``,
    read as grayscale and cropped like the sketch."""
    photos, has = [], []
    for f in files:
        img = _read_gray(f.parent.parent / "photos" / f.name, image_size) if f.parent.name == "sketches" else None
        has.append(img is not None)
        photos.append(img if img is not None else np.zeros((image_size, image_size), np.uint8))
    if not any(has):
        raise ValueError(f"no CUFSF photo for the sketches in {files[0].parent.parent} (expected photos/ beside "
                         f"sketches/ with the sketches' file names)")
    return np.stack(photos), np.array(has)


def read_sketches(path, image_size: int = 64) -> tuple:
    """Every sketch of a CUFSF root or folder (``sketch_files``), read as the training data reads them (grayscale,
    centre square crop and resize; no edge-map preprocessing) -> (uint8 (N, image_size, image_size), the files
    read). Unreadable files are skipped with one warning line."""
    files = sketch_files(path)
    imgs = [(p, _read_gray(p, image_size)) for p in files]
    bad = [p.name for p, img in imgs if img is None]
    if bad:
        import logging
        logging.getLogger("pycompgen.data").warning("pycompgen.data: skipped %d unreadable sketch(es) in %s, e.g. %s",
                                                    len(bad), path, ", ".join(bad[:3]))
    kept = [(p, img) for p, img in imgs if img is not None]
    if not kept:
        raise ValueError(f"no readable sketch in {path}")
    return np.stack([img for _, img in kept]), [p for p, _ in kept]


def canny_sketches(faces_uint8: np.ndarray, seed: int = 0, chunk: int = 512) -> np.ndarray:
    """Canny edge maps (Compgen's channel defaults) of faces (N, H, W, 3), in a seeded order, as dark lines on
    white: uint8 (N, H, W)."""
    from .channel import DEFAULT_CANNY_HIGH, DEFAULT_CANNY_LOW
    from pycompgen.ops import canny
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 8008]).permutation(len(faces_uint8))
    out = np.empty((len(order),) + tuple(faces_uint8.shape[1:3]), np.uint8)
    for a in range(0, len(order), chunk):
        sel = np.sort(order[a:a + chunk])
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(faces_uint8[sel]).transpose(0, 3, 1, 2))).float() / 255
        e = canny(x, DEFAULT_CANNY_LOW, DEFAULT_CANNY_HIGH)[:, 0]
        out[a:a + len(sel)] = (255 - 255 * (e > 0.5).to(torch.uint8)).numpy()
    return out


def synthetic_sketch_images(n: int, image_size: int, seed: int) -> np.ndarray:
    """Hand-drawn-style synthetic sketches (``synthetic_sketches`` at 2x, area-resized): uint8 (n, H, W)."""
    from .synthetic import synthetic_sketches
    big = synthetic_sketches(n, size=2 * image_size, seed=seed)
    return np.stack([center_square_resize(s, image_size) for s in big])


def load_unpaired(data, split: str, *, sketch_source: str = "cufsf", sketch_path=None, image_size: int = 64,
                  cache_dir=None, synthetic_count: int = 512, seed: int = 0,
                  photos: bool = False) -> UnpairedSketchFaces:
    """The unpaired sketch/face dataset of one split. ``data``: the face data (``load_faces``: None/"synthetic",
    a CelebA root or a face folder). Sketches: ``sketch_source`` "cufsf" reads ``sketch_path`` (required with real
    face data; synthetic sketches when it is None and the faces are synthetic), "canny" edge maps of faces.
    ``photos``: also the CUFSF photos of the sketches (``load_sketch_photos``; cufsf with a sketch_path only)."""
    if photos and (sketch_source != "cufsf" or sketch_path is None):
        raise ValueError("sketch2face.lambda_paired needs the CUFSF photos: sketch2face.sketch_source=cufsf and "
                         "sketch2face.sketch_path set to a CUFSF root with photos/ beside sketches/")
    from .dataset import load_faces
    if sketch_source not in SKETCH_SOURCES:
        raise ValueError(f"sketch2face.sketch_source must be one of {', '.join(SKETCH_SOURCES)}, got "
                         f"{sketch_source!r}")
    faces = load_faces(data, split, image_size=image_size, cache_dir=cache_dir, synthetic_count=synthetic_count,
                       seed=seed)
    synthetic = data is None or str(data) == "synthetic"
    split_seed = int(seed) * 3 + {"train": 0, "val": 1, "valid": 1, "test": 2}.get(split, 1)
    if sketch_source == "canny":
        if synthetic:
            other = load_faces(None, split, image_size=image_size, synthetic_count=synthetic_count,
                               seed=int(seed) + 7919)
            sk = canny_sketches(other.images, seed=split_seed)
        else:
            sk = canny_sketches(faces.images, seed=split_seed)
        src = f"canny:{faces.source}"
    elif sketch_path is None:
        if not synthetic:
            raise ValueError("sketch2face.sketch_source=cufsf with real face data needs sketch2face.sketch_path "
                             "(a CUFSF root with sketches/ and sketches_unpaired/, or a folder of sketches)")
        n = len(faces)
        sk = synthetic_sketch_images(n, image_size, seed=split_seed + 5003)
        src = f"synthetic-sketches:{faces.source}"
    else:
        sk, files = _read_split(sketch_path, split, image_size)
        src = f"cufsf:{Path(os.path.expanduser(str(sketch_path))).resolve()}:{faces.source}"
    ph, has = load_sketch_photos(files, image_size) if photos else (None, None)
    return UnpairedSketchFaces(sk, faces, seed=split_seed, source=src, photos=ph, has_photo=has)


__all__ = ["UnpairedSketchFaces", "load_unpaired", "load_sketch_images", "load_sketch_photos", "read_sketches",
           "sketch_files", "canny_sketches", "synthetic_sketch_images", "SKETCH_SOURCES"]
