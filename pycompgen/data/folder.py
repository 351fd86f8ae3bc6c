"""Generic face folder: every image file under a folder (recursively), with an optional split file
("name split" lines, split 0/1/2 or train/val/test, names relative to the folder). Without one, a deterministic
90/10 train/val split by a hash of each relative name (stable when files are added or removed)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .celeba import normalize_split, read_split_file

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
SPLIT_FILE_NAMES = ("list_eval_partition.txt", "splits.txt", "split.txt")
CACHE_DIR_NAME = ".pycompgen_cache"


def list_images(root: str | os.PathLike) -> list[str]:
    """Sorted relative POSIX names of the image files under root (hidden folders and the cache skipped)."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        for fn in filenames:
            if Path(fn).suffix.lower() in IMAGE_EXTS and not fn.startswith("."):
                out.append((rel / fn).as_posix())
    return sorted(out)


def hash_split(name: str, val_fraction: float = 0.1) -> str:
    h = int.from_bytes(hashlib.sha1(name.encode("utf-8", "surrogateescape")).digest()[:8], "big")
    return "val" if (h % 10000) < int(round(val_fraction * 10000)) else "train"


def folder_files(root: str | os.PathLike, split: str = "train", split_file: str | os.PathLike | None = None
                 ) -> tuple[list[str], list[str]]:
    """(paths, names) of one split of a face folder. A split file is taken from `split_file`, else from one of
    SPLIT_FILE_NAMES inside the folder; without one, "test" is empty and train/val is a 90/10 hash split."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"face folder not found: {root}")
    split = normalize_split(split)
    if split_file is None:
        split_file = next((root / n for n in SPLIT_FILE_NAMES if (root / n).is_file()), None)
    if split_file is not None:
        names = read_split_file(split_file)[split]
    else:
        names = [n for n in list_images(root) if hash_split(n) == split]
    return [str(root / n) for n in names], names
