"""Decode-once image cache: a uint8 (N, H, W, 3) .npy memory-mapped on later loads.

Cache files live in `<dataset root>/.pycompgen_cache/` when that folder is writable, else in
`~/.cache/pycompgen/` (or an explicit cache_dir). Names are keyed by the dataset identity (kind, absolute root,
hash of the file list of the split), the split and the image size:
    <kind>-<split>-<size>px-<key16>.npy   the images, RGB, center square crop resized with cv2.INTER_AREA
    <kind>-<split>-<size>px-<key16>.json  sidecar: source, size, counts (listed, kept, missing, corrupt), names skipped
Both are written to a temporary name and renamed into place, so an interrupted build never leaves a partial cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger("pycompgen.data")

CACHE_VERSION = 1  # bump when the decode/crop policy changes
_HEADER_LEN = 128  # fixed .npy v1.0 header length so the row count can be patched after streaming


def center_square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Center square crop (side = min(h, w)) then resize to size x size with INTER_AREA (CelebA 178x218 -> the
    central 178x178 rows 20..197)."""
    import cv2
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    if s != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)
    return img


def decode_image(path: str, size: int):
    """RGB uint8 (size, size, 3) of one image file, or a status string "missing" / "corrupt"."""
    import cv2
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "corrupt"
    if buf.size == 0:
        return "corrupt"
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 1:
        return "corrupt"
    img = center_square_resize(img, size)
    return np.ascontiguousarray(img[:, :, ::-1])  # cv2 decodes BGR


def _writable_dir(d: Path) -> bool:
    """d can be written, and is not marked read-only (no write bit: honoured even for root)."""
    try:
        return os.access(d, os.W_OK) and bool(d.stat().st_mode & 0o222)
    except OSError:
        return False


def default_cache_dir(root: str | os.PathLike) -> Path:
    """`<root>/.pycompgen_cache` when it can be created and written, else `~/.cache/pycompgen`."""
    cand = Path(root) / ".pycompgen_cache"
    if (cand.is_dir() and _writable_dir(cand)) or (not cand.exists() and _writable_dir(Path(root))):
        try:
            cand.mkdir(exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cand, prefix=".probe-"):
                pass
            return cand
        except OSError:
            pass
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pycompgen"
    home.mkdir(parents=True, exist_ok=True)
    return home


def dataset_key(kind: str, root: str | os.PathLike, names, split: str, size: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}\0{kind}\0{Path(root).resolve()}\0{split}\0{int(size)}\0".encode())
    for n in names:
        h.update(n.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _npy_header(shape) -> bytes:
    d = "{'descr': '|u1', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{int(s)}, " for s in shape)
    body_len = _HEADER_LEN - 10
    if len(d) + 1 > body_len:
        raise ValueError(f"shape {shape} too large for the cache header")
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + (d.ljust(body_len - 1) + "\n").encode("latin1")


def _atomic_write_text(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_or_load(kind: str, root: str | os.PathLike, paths: list[str], names: list[str], split: str, size: int,
                  cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                  progress: bool = True) -> tuple[np.ndarray, dict]:
    """The cached (N, size, size, 3) uint8 array (memory-mapped, read-only) of `paths` and its sidecar dict.

    Builds it on first use: decodes with a thread pool (cv2 releases the GIL), skipping missing and corrupt files,
    which are counted and reported once in a single warning line.
    """
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir(root)
    cdir.mkdir(parents=True, exist_ok=True)
    key = dataset_key(kind, root, names, split, size)
    stem = f"{kind}-{split}-{int(size)}px-{key[:16]}"
    npy, side = cdir / f"{stem}.npy", cdir / f"{stem}.json"
    hit = _try_load(npy, side, key, size)
    if hit is not None:
        return hit
    # one builder per cache entry: other processes (e.g. several workers on one node) wait, then reuse it
    with _FileLock(cdir / f".{stem}.lock"):
        hit = _try_load(npy, side, key, size)
        if hit is not None:
            return hit
        if npy.exists():
            log.info("pycompgen.data: rebuilding invalid cache %s", npy)
        return _build(kind, root, paths, names, split, size, cdir, stem, key, npy, side, workers, progress)


class _FileLock:
    """Advisory exclusive lock on a file (fcntl); a no-op where fcntl is unavailable."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _try_load(npy: Path, side: Path, key: str, size: int):
    if not (npy.exists() and side.exists()):
        return None
    try:
        meta = json.loads(side.read_text())
        arr = np.load(npy, mmap_mode="r")
        if meta.get("key") == key and arr.shape == (meta["kept"], size, size, 3) and arr.dtype == np.uint8:
            log.debug("pycompgen.data: cache hit %s", npy)
            return arr, meta
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        pass
    return None


def _build(kind, root, paths, names, split, size, cdir, stem, key, npy, side, workers, progress):
    t0 = time.perf_counter()
    n = len(paths)
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    skipped = {"missing": [], "corrupt": []}
    kept = 0
    fd, tmp = tempfile.mkstemp(dir=cdir, prefix=f".tmp-{stem}-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_npy_header((n, size, size, 3)))
            bar = None
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=n, desc=f"caching {kind}/{split} {size}px", unit="img", mininterval=1.0,
                           leave=False)
            chunk = 1024
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for start in range(0, n, chunk):
                    part = paths[start:start + chunk]
                    for name, res in zip(names[start:start + chunk], pool.map(decode_image, part,
                                                                             [size] * len(part))):
                        if isinstance(res, str):
                            skipped[res].append(name)
                        else:
                            f.write(res.tobytes())
                            kept += 1
                    if bar is not None:
                        bar.update(len(part))
            if bar is not None:
                bar.close()
            f.seek(0)
            f.write(_npy_header((kept, size, size, 3)))
            f.truncate(_HEADER_LEN + kept * size * size * 3)
        if kept == 0:
            raise ValueError(f"pycompgen.data: no readable image in the {split!r} split of {root} ({n} listed: "
                             f"{len(skipped['missing'])} missing, {len(skipped['corrupt'])} corrupt)")
        seconds = time.perf_counter() - t0
        meta = {"format": f"pycompgen-cache/{CACHE_VERSION}", "key": key, "kind": kind,
                "source": str(Path(root).resolve()), "split": split, "image_size": int(size), "listed": n,
                "kept": kept, "missing": len(skipped["missing"]), "corrupt": len(skipped["corrupt"]),
                "skipped_names": {k: v[:100] for k, v in skipped.items()}, "build_seconds": round(seconds, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.replace(tmp, npy)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _atomic_write_text(side, json.dumps(meta, indent=1))
    if meta["missing"] or meta["corrupt"]:
        first = (skipped["missing"] + skipped["corrupt"])[:3]
        log.warning("pycompgen.data: %s %s split of %s: skipped %d of %d listed images (%d missing, %d corrupt), "
                    "e.g. %s; cached %d in %s", kind, split, root, meta["missing"] + meta["corrupt"], n,
                    meta["missing"], meta["corrupt"], ", ".join(first), kept, npy)
    log.info("pycompgen.data: cached %d images (%s/%s %dpx) in %.1f s -> %s", kept, kind, split, size, seconds, npy)
    return np.load(npy, mmap_mode="r"), meta
