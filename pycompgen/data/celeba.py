"""CelebA "Align&Cropped" reader: ROOT/img_align_celeba/*.jpg + ROOT/list_eval_partition.txt (0 train, 1 val,
2 test). Reads a full 202,599-image download or any subset listed in the same format."""
from __future__ import annotations

import os
from pathlib import Path

SPLITS = {"train": 0, "val": 1, "test": 2}
_ALIASES = {"valid": "val", "validation": "val", "0": "train", "1": "val", "2": "test"}
IMAGE_DIR = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"


def normalize_split(split: str) -> str:
    s = _ALIASES.get(str(split).lower(), str(split).lower())
    if s not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return s


def is_celeba_root(root: str | os.PathLike) -> bool:
    r = Path(root)
    return (r / IMAGE_DIR).is_dir() and (r / PARTITION_FILE).is_file()


def read_split_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """Parse a "name split" file (split 0/1/2 or train/val/test) into {split: [names in file order]}."""
    out = {k: [] for k in SPLITS}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'NAME SPLIT', got {line.strip()!r}")
            try:
                out[normalize_split(parts[1])].append(parts[0])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: unknown split {parts[1]!r} (expected 0, 1, 2 or "
                                 f"train/val/test)") from None
    return out


def celeba_files(root: str | os.PathLike, split: str = "train") -> tuple[list[str], list[str]]:
    """(paths, names) of the split, in partition-file order. Listed files are not checked here: missing ones are
    skipped (and counted) when the cache is built."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CelebA root not found: {root}")
    if not is_celeba_root(root):
        raise FileNotFoundError(f"{root} is not a CelebA root: expected {root / IMAGE_DIR}/ and "
                                f"{root / PARTITION_FILE}")
    names = read_split_file(root / PARTITION_FILE)[normalize_split(split)]
    img_dir = root / IMAGE_DIR
    return [str(img_dir / n) for n in names], names
