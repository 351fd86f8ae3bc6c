"""FaceArray dataset and `load_faces`, the single entry point for face data."""
from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import torch

from . import cache as _cache
from .celeba import IMAGE_DIR, celeba_files, is_celeba_root, normalize_split
from .folder import folder_files, list_images
from .synthetic import synthetic_faces


def to_float01(images) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -- an array, a memmap, a list of arrays or a FaceArray -- as a new float32 tensor
    (N, 3, H, W) in [0, 1] (a copy: memmaps are read-only)."""
    arr = np.stack(images) if isinstance(images, list) else np.array(getattr(images, "images", images))
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"to_float01: expected uint8 (N, H, W, 3) images, got {arr.dtype} of shape {arr.shape}")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def limit_faces(faces: "FaceArray", n: int) -> "FaceArray":
    """The first ``n`` faces of a fixed permutation of ``faces`` (seeded by nothing else, so the subsets of one split
    are nested: the 4,000 hold the 2,000), in their original order; ``n`` 0 keeps them all. For learning curves over
    the training-set size (``data.train_limit``)."""
    n = int(n)
    if n < 0 or n > len(faces):
        raise ValueError(f"data.train_limit={n}: expected 0 (all) to the split's {len(faces)} faces")
    if n == 0 or n == len(faces):
        return faces
    idx = np.sort(np.random.default_rng(20261207).permutation(len(faces))[:n])
    return FaceArray(np.ascontiguousarray(faces.images[idx]), source=f"{faces.source} (first {n} of a fixed order)",
                     meta={**faces.meta, "train_limit": n})


class FaceArray(torch.utils.data.Dataset):
    """Faces over a uint8 (N, H, W, 3) RGB array (a read-only memmap is fine); item i -> uint8 tensor (3, H, W).

    The default collate stacks items into (B, 3, H, W) uint8; EdgeChannel converts to float on the training device.
    Pickles by path when the array is a memmap (DataLoader / Ray workers reopen the file instead of copying it).
    """

    def __init__(self, images: np.ndarray, source: str = "array", meta: dict | None = None):
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError("FaceArray needs a uint8 numpy array of shape (N, H, W, 3), got "
                             f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}")
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"FaceArray needs square images, got {images.shape[1]}x{images.shape[2]}")
        self.images = images
        self.image_size = int(images.shape[1])
        self.source = str(source)
        self.meta = dict(meta or {})

    def __len__(self):
        return int(self.images.shape[0])

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(self.images[i].transpose(2, 0, 1)))

    def __getitems__(self, indices):
        # batched fetch used by torch DataLoader: one fancy-indexed read instead of B small ones
        idx = np.asarray(indices, dtype=np.int64)
        batch = torch.from_numpy(np.ascontiguousarray(self.images[idx].transpose(0, 3, 1, 2)))
        return list(batch.unbind(0))

    def __repr__(self):
        return f"FaceArray(n={len(self)}, image_size={self.image_size}, source={self.source!r})"

    def __getstate__(self):
        st = self.__dict__.copy()
        fn = getattr(self.images, "filename", None)
        # only a whole-file memmap (not a view of one) is reopened by path
        if isinstance(self.images, np.memmap) and fn is not None and isinstance(self.images.base, mmap.mmap):
            st["images"] = None
            st["_mmap_path"] = str(fn)
        return st

    def __setstate__(self, st):
        path = st.pop("_mmap_path", None)
        self.__dict__.update(st)
        if path is not None:
            self.images = np.load(path, mmap_mode="r")


def load_faces(data: str | None, split: str = "train", image_size: int = 64, cache_dir: str | None = None,
               synthetic_count: int = 512, seed: int = 0) -> FaceArray:
    """Faces of one split as a FaceArray.

    data None or "synthetic": `synthetic_count` deterministic synthetic faces for "train" (val/test:
    max(16, synthetic_count // 8), with a different seed per split); a CelebA root (img_align_celeba/ +
    list_eval_partition.txt): that split; any other folder: a generic face folder. Real images are decoded once
    into a cached memory-mapped uint8 array (see pycompgen.data.cache).
    """
    split = normalize_split(split)
    image_size = int(image_size)
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if data is None or str(data) == "synthetic":
        n = int(synthetic_count) if split == "train" else max(16, int(synthetic_count) // 8)
        split_seed = int(seed) * 3 + {"train": 0, "val": 1, "test": 2}[split]
        imgs = synthetic_faces(n, image_size, seed=split_seed)
        return FaceArray(imgs, source=f"synthetic:{split}:seed={seed}", meta={"kind": "synthetic", "split": split})
    root = Path(os.path.expanduser(str(data)))
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root} (give a CelebA root, a folder of face images, "
                                f"or omit it for synthetic faces)")
    if not root.is_dir():
        raise NotADirectoryError(f"data path is not a folder: {root}")
    if root.name == IMAGE_DIR and is_celeba_root(root.parent):
        root = root.parent  # the image folder of a CelebA root was given: use the official partition
    if is_celeba_root(root):
        kind = "celeba"
        paths, names = celeba_files(root, split)
    else:
        kind = "folder"
        paths, names = folder_files(root, split)
        if not paths and not list_images(root):
            raise FileNotFoundError(f"no image files in {root} (expected .jpg/.png/... images, or a CelebA root "
                                    f"with img_align_celeba/ and list_eval_partition.txt)")
    if not paths:
        raise ValueError(f"the {split!r} split of {root} is empty")
    arr, meta = _cache.build_or_load(kind, root, paths, names, split, image_size, cache_dir=cache_dir)
    return FaceArray(arr, source=f"{kind}:{root.resolve()}:{split}", meta=meta)
