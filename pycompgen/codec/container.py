"""The ``.pcg`` container: one versioned, checksummed binary file per compressed image (or batch of images).

Layout (all integers big-endian)::

    magic  b"PCG1"                                    4 bytes
    format version                                    u8
    payload kind (1 = edges, 2 = latent, 3 = edges+hint) u8
    system name (e.g. "compgen")                      u8 length + UTF-8
    weights hash of the decoding networks             16 bytes (see ``weights_hash``)
    image height, width                               u16, u16
    number of images                                  u16
    coder parameters                                  varint length + compact key/value encoding (below)
    payload                                           the rest, up to the CRC (edges+hint: varint length
                                                      of the edge stream, the edge stream, the hint stream)
    CRC32 over everything before it                   u32

Coder parameters are a dict of str -> None | bool | int | float | str | list[int], written as (key, typed value)
pairs: keys from ``PARAM_KEYS`` take one byte (their index + 1), others 0 + length + UTF-8; integers are zigzag
varints; a float takes 4 bytes when its float32 rounding prints back to the same value (0.3, 0.6, 1.5, ...), else 8.
Coders omit parameters that equal their documented defaults for this format version, so typical headers are
~50 bytes. Everything but the payload is the header; ``Header.nbytes`` is its size (CRC included), so rates can be
given with and without it. Range-coder streams (``constriction`` gives 32-bit words) are stored big-endian, without trailing
zero bytes and with the last word shortened when the shorter stream provably decodes to the same symbols
(``seal_stream``).
"""
from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

MAGIC = b"PCG1"
FORMAT_VERSION = 1
HASH_BYTES = 16
KINDS = {"edges": 1, "latent": 2, "edges+hint": 3}
_KIND_NAMES = {v: k for k, v in KINDS.items()}
_FIXED = struct.Struct(">4sBB")
_DIMS = struct.Struct(">HHH")
# one-byte keys for common coder parameters (append only: the index is part of the format)
PARAM_KEYS = ("coder", "template", "delta", "alpha", "prob_bits", "canny_low", "canny_high", "blur_sigma",
              "latent_shape", "precision", "hint_size", "hint_bits", "hint_scale", "hint_space")
_T_NONE, _T_TRUE, _T_FALSE, _T_INT, _T_F32, _T_F64, _T_STR, _T_INTS = range(8)


@dataclass
class Header:
    system: str
    weights_hash: bytes
    height: int
    width: int
    count: int
    kind: str
    params: dict = field(default_factory=dict)
    version: int = FORMAT_VERSION
    nbytes: int = 0          # header bytes in the file (everything except the payload, CRC included)

    @property
    def model_id(self) -> str:
        """``system@hash`` (12 hex digits), as shown in error messages."""
        return f"{self.system}@{self.weights_hash.hex()[:12]}"


def weights_hash(modules: dict) -> bytes:
    """First 16 bytes of SHA-256 over the state_dicts of ``modules`` ({name: nn.Module}).

    Deterministic: modules in sorted name order, tensors in sorted key order, each contributing its name, dtype,
    shape and raw bytes (CPU, contiguous). Parameters and buffers both count (BatchNorm statistics and the entropy
    bottleneck's code tables change the decoder's output).
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        sd = modules[name].state_dict()
        for key in sorted(sd):
            t = sd[key].detach().cpu().contiguous()
            h.update(f"{name}.{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(dtype=_u8()).numpy().tobytes())
    return h.digest()[:HASH_BYTES]


def _u8():
    import torch
    return torch.uint8


def pack(payload: bytes, *, system: str, weights_hash: bytes, height: int, width: int, count: int, kind: str,
         params: dict | None = None) -> bytes:
    """Serialise one compressed payload with its header and CRC32."""
    if kind not in KINDS:
        raise ValueError(f"container: payload kind must be one of {sorted(KINDS)}, got {kind!r}")
    sysb = str(system).encode("utf-8")
    if not 0 < len(sysb) < 256:
        raise ValueError(f"container: system name must be 1..255 UTF-8 bytes, got {system!r}")
    if not isinstance(weights_hash, (bytes, bytearray)) or len(weights_hash) != HASH_BYTES:
        raise ValueError(f"container: weights_hash must be {HASH_BYTES} bytes")
    for name, v in (("height", height), ("width", width), ("count", count)):
        if not 1 <= int(v) <= 0xFFFF:
            raise ValueError(f"container: {name} must be in 1..65535, got {v}")
    pj = encode_params(params or {})
    body = b"".join([_FIXED.pack(MAGIC, FORMAT_VERSION, KINDS[kind]), bytes([len(sysb)]), sysb,
                     bytes(weights_hash), _DIMS.pack(int(height), int(width), int(count)),
                     _varint(len(pj)), pj, bytes(payload)])
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def header_size(data: bytes) -> int:
    """Bytes of ``data`` (a packed file) that are not payload."""
    return unpack(data)[0].nbytes


def unpack(data: bytes, expect_system: str | None = None, expect_hash: bytes | None = None,
           name: str = "file") -> tuple[Header, bytes]:
    """Parse a packed file -> (Header, payload). ``name`` names the file in error messages.

    Raises ValueError (one line) when the data is not a pycompgen file, is truncated or corrupted (CRC), has an
    unsupported version, or was written by another system / other weights than ``expect_system`` /
    ``expect_hash``.
    """
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        if len(data) < 4 and MAGIC.startswith(data):
            raise ValueError(f"{name} is truncated ({len(data)} bytes)")
        raise ValueError(f"{name} is not a pycompgen compressed file (bad magic {data[:4]!r})")
    min_len = _FIXED.size + 1 + 1 + HASH_BYTES + _DIMS.size + 1 + 4
    if len(data) < min_len:
        raise ValueError(f"{name} is truncated ({len(data)} bytes, the header alone needs at least {min_len})")
    _, version, kind_id = _FIXED.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        raise ValueError(f"{name} has format version {version}; this pycompgen reads version {FORMAT_VERSION}")
    (crc,) = struct.unpack_from(">I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise ValueError(f"{name} is corrupted or truncated (CRC32 mismatch)")
    try:
        off = _FIXED.size
        ls = data[off]
        off += 1
        system = data[off:off + ls].decode("utf-8")
        off += ls
        whash = data[off:off + HASH_BYTES]
        off += HASH_BYTES
        h, w, n = _DIMS.unpack_from(data, off)
        off += _DIMS.size
        lp, off = _read_varint(data, off)
        params = decode_params(data[off:off + lp])
        off += lp
        if off > len(data) - 4 or len(whash) != HASH_BYTES or kind_id not in _KIND_NAMES:
            raise ValueError("header fields out of range")
    except (ValueError, UnicodeDecodeError, struct.error, IndexError) as e:
        raise ValueError(f"{name} has a malformed header ({e})") from None
    hdr = Header(system=system, weights_hash=whash, height=h, width=w, count=n, kind=_KIND_NAMES[kind_id],
                 params=params, version=version, nbytes=off + 4)
    if expect_system is not None and system != expect_system:
        raise ValueError(f"{name} was written by system {system!r}, but this model is {expect_system!r}: "
                         f"decode it with a {system} checkpoint")
    if expect_hash is not None and whash != bytes(expect_hash):
        expected = f"{expect_system or system}@{bytes(expect_hash).hex()[:12]}"
        raise ValueError(f"{name} was written by model {hdr.model_id}, but this model is {expected}: "
                         f"use the same checkpoint")
    return hdr, data[off:-4]


# -- coder parameters ---------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, off: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if off >= len(data) or shift > 63:
            raise ValueError("bad varint")
        b = data[off]
        off += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, off


def _zigzag(v: int) -> bytes:
    return _varint(v * 2 if v >= 0 else -v * 2 - 1)


def _read_zigzag(data: bytes, off: int) -> tuple[int, int]:
    u, off = _read_varint(data, off)
    return (u >> 1) ^ -(u & 1), off


def _f32_exact(v: float) -> bool:
    return math.isfinite(v) and float(str(np.float32(v))) == v


def encode_params(params: dict) -> bytes:
    """Compact, deterministic encoding of a coder-parameter dict (sorted keys)."""
    out = bytearray()
    for key in sorted(params):
        v = params[key]
        if not isinstance(key, str) or not key:
            raise ValueError(f"container: parameter names must be non-empty strings, got {key!r}")
        if key in PARAM_KEYS:
            out.append(PARAM_KEYS.index(key) + 1)
        else:
            kb = key.encode()
            out += b"\0" + _varint(len(kb)) + kb
        if v is None:
            out.append(_T_NONE)
        elif isinstance(v, bool):
            out.append(_T_TRUE if v else _T_FALSE)
        elif isinstance(v, (int, np.integer)):
            out += bytes([_T_INT]) + _zigzag(int(v))
        elif isinstance(v, (float, np.floating)):
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"container: parameter {key!r} is not finite ({v})")
            out += bytes([_T_F32]) + struct.pack(">f", v) if _f32_exact(v) else bytes([_T_F64]) + struct.pack(">d", v)
        elif isinstance(v, str):
            vb = v.encode()
            out += bytes([_T_STR]) + _varint(len(vb)) + vb
        elif isinstance(v, (list, tuple)) and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                                                  for i in v):
            out += bytes([_T_INTS]) + _varint(len(v)) + b"".join(_zigzag(int(i)) for i in v)
        else:
            raise ValueError(f"container: parameter {key!r} has unsupported value {v!r} "
                             "(None, bool, int, float, str or list of ints)")
    return bytes(out)


def decode_params(data: bytes) -> dict:
    """Inverse of ``encode_params`` (ValueError on malformed data)."""
    out: dict = {}
    off = 0
    while off < len(data):
        kid = data[off]
        off += 1
        if kid == 0:
            n, off = _read_varint(data, off)
            key = data[off:off + n].decode()
            off += n
        elif kid <= len(PARAM_KEYS):
            key = PARAM_KEYS[kid - 1]
        else:
            raise ValueError(f"unknown parameter key id {kid}")
        tag = data[off]
        off += 1
        if tag == _T_NONE:
            v = None
        elif tag in (_T_TRUE, _T_FALSE):
            v = tag == _T_TRUE
        elif tag == _T_INT:
            v, off = _read_zigzag(data, off)
        elif tag == _T_F32:
            v = float(str(np.float32(struct.unpack_from(">f", data, off)[0])))
            off += 4
        elif tag == _T_F64:
            (v,) = struct.unpack_from(">d", data, off)
            off += 8
        elif tag == _T_STR:
            n, off = _read_varint(data, off)
            v = data[off:off + n].decode()
            off += n
        elif tag == _T_INTS:
            n, off = _read_varint(data, off)
            v = []
            for _ in range(n):
                i, off = _read_zigzag(data, off)
                v.append(i)
        else:
            raise ValueError(f"unknown parameter type {tag}")
        if off > len(data):
            raise ValueError("parameters truncated")
        out[key] = v
    return out


# -- range-coder streams --------------------------------------------------------------------------------------
def words_to_bytes(words: np.ndarray) -> bytes:
    """uint32 words (constriction) -> big-endian bytes without trailing zero bytes."""
    return np.asarray(words, dtype=np.uint32).astype(">u4").tobytes().rstrip(b"\0")


def bytes_to_words(data: bytes) -> np.ndarray:
    """Big-endian bytes -> uint32 words, zero-padded to a whole word."""
    data = bytes(data) + b"\0" * (-len(data) % 4)
    return np.frombuffer(data, dtype=">u4").astype(np.uint32)


def seal_stream(words: np.ndarray, decodes_same: Callable[[np.ndarray], bool]) -> bytes:
    """Store a finished range-coder stream in as few bytes as possible.

    constriction's decoder reads zeros past the end of its data, so trailing zero bytes need not be stored, and
    the last word may be replaced by one with more trailing zero bytes (its low bytes cleared, or cleared and the
    rest rounded up), or dropped. A candidate is taken only when ``decodes_same(words)`` confirms that decoding it
    gives exactly the encoded symbols (decoding is deterministic, so the check is a proof); otherwise the stream
    is stored whole. Saves ~1.7 bytes per stream on average.
    """
    w = np.asarray(words, dtype=np.uint32)
    cands = []
    if w.size:
        cands.append(w[:-1])
        v = int(w[-1])
        for nbytes in (3, 2, 1):
            s = 8 * nbytes
            for c in ((v >> s) << s, ((v >> s) + 1) << s):
                if c < 1 << 32:
                    cw = w.copy()
                    cw[-1] = c
                    cands.append(cw)
    cands.append(w)
    for c in cands:
        b = words_to_bytes(c)
        if decodes_same(bytes_to_words(b)):
            return b
    return w.astype(">u4").tobytes()


def decodes_safely(fn: Callable[[], np.ndarray], expected: np.ndarray) -> bool:
    """True when ``fn()`` (a trial decode) returns ``expected``; constriction signals invalid data by raising."""
    try:
        return bool(np.array_equal(fn(), expected))
    except Exception:  # noqa: BLE001 - constriction raises AssertionError/ValueError on data its model rejects
        return False
