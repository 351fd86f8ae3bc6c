"""A trained model's codec: faces to ``.pcg`` files and back (behind ``pycompgen compress`` / ``decompress``).

- Edge payload (Compgen): x -> Canny edge map z (the checkpoint config's ``data.canny_low/high/blur_sigma``) ->
  lossless context-adaptive coding (``pycompgen.codec.edges``); decoding runs the approach-3 path
  x̂ = g(h(z)) (optionally through the AWGN channel first, ``--psnr``). Decoding needs the networks g and h.
- Edges+hint payload (Compgen with a colour hint, ``model.hint_size``): the edge map as above, then the quantised
  thumbnail (``pycompgen.codec.hint``); decoding runs x̂ = g(h(z, hint)); ``--psnr`` sends both through the channel.
- Latent payload (systems whose checkpoint holds an entropy bottleneck, network key ``"eb"``):
  y = f(x) -> ``EntropyBottleneck.compress``; decoding x̂ = g(ŷ). Decoding needs g and eb. The edge-guided
  diffusion compressor's latent files are its receiver's (``pycompgen.inference.edgediff``).

The container (``pycompgen.codec.container``) records the system and a hash of exactly the networks the decoder
uses, so a file decoded with another checkpoint fails with a clear message instead of giving a wrong image.
"""
from __future__ import annotations

from pathlib import Path

from pycompgen.codec.container import _read_varint, _varint, pack, unpack, weights_hash
from pycompgen.codec.edges import coder_params, encode_edges, params_from_header
from pycompgen.codec.edges import decode_edges as decode_edge_bits
from pycompgen.codec.hint import SPACES, decode_hint_planes, encode_hint_planes, hint_codes, plane_values, planes_to_rgb
from pycompgen.data import decode_image, to_float01
from pycompgen.models import load_for_eval
from pycompgen.ops import awgn, canny
from pycompgen.systems.compgen.system import decode_edges, hint_space, hint_spec

from . import edgediff

SUFFIX = ".pcg"
DECODER_PARTS = {"edges": ("g", "h"), "latent": ("eb", "g"), "edges+hint": ("g", "h")}


# -- models ---------------------------------------------------------------------------------------------------
def prepare_codec(ckpt):
    """A loaded model (checkpoint or zoo stage) ready to code: its entropy bottleneck gets its code tables if the
    weights lack them."""
    if edgediff.is_edgediff(ckpt):
        return edgediff.check_model(ckpt) if not edgediff.missing_parts(ckpt) else ckpt
    eb = ckpt.models.get("eb")
    if eb is not None and "eb" in ckpt.parts and not getattr(eb, "has_tables", True):
        eb.update()
    return ckpt


def load_checkpoint_for_codec(path, device: str = "cpu"):
    """``load_for_eval`` for any system, ready to code (``prepare_codec``)."""
    return prepare_codec(load_for_eval(path, expect_model=None, device=device))


def missing_decoder_parts(ckpt, kind: str) -> list:
    """The networks a ``kind`` payload decodes with that ``ckpt`` lacks or holds untrained."""
    if edgediff.is_edgediff(ckpt):
        return edgediff.missing_parts(ckpt)
    return [k for k in DECODER_PARTS[kind] if k not in ckpt.models or k not in ckpt.parts]


def _hint_of(ckpt) -> tuple[int, int]:
    return hint_spec(ckpt.models) if "h" in ckpt.models else (0, 0)


def choose_payload(ckpt, payload: str = "auto") -> str:
    has_eb = "eb" in ckpt.models and "eb" in ckpt.parts
    hinted = bool(_hint_of(ckpt)[0])
    if payload == "auto":
        payload = "latent" if has_eb else "edges+hint" if hinted else "edges"
    if payload in ("edges", "edges+hint") and ckpt.has_elm and (payload == "edges+hint") != hinted:
        raise ValueError(f"checkpoint {ckpt.path} " + ("decodes edge maps with a colour hint: use the edges+hint "
                                                       "payload" if hinted else "takes no colour hint (model."
                                                       "hint_size=0): use the edges payload"))
    if payload in ("edges", "edges+hint") and not ckpt.has_elm:
        raise ValueError(f"checkpoint {ckpt.path} (stage {ckpt.stage}) has no trained ELM h and decoder g: edge "
                         f"maps decode with an approach checkpoint (e.g. approach3/best.pt)")
    if payload == "latent" and not has_eb:
        raise ValueError(f"checkpoint {ckpt.path} holds no entropy bottleneck ('eb'): latent coding needs one")
    return payload


def decoder_hash(ckpt, kind: str) -> bytes:
    if edgediff.is_edgediff(ckpt):
        return edgediff.decoder_hash(ckpt)
    return weights_hash({k: ckpt.models[k] for k in DECODER_PARTS[kind]})


# -- latents (API for systems with an entropy bottleneck) -------------------------------------------------------
def encode_latent(models: dict, x):
    """y = f(x) (float32) that a latent file carries: a VAE's encoder gives (μ, log σ²) and the file carries μ."""
    import torch
    with torch.no_grad():
        y = models["f"](x)
    return (y[0] if isinstance(y, tuple) else y).float()


def compress_latent(models: dict, bottleneck, x):
    """x (N,3,H,W) in [0,1] -> (payload bytes, latent shape (N, C, h, w)); y = f(x) coded by ``bottleneck``."""
    y = encode_latent(models, x)
    return bottleneck.compress(y), tuple(y.shape)


def decompress_latent(models: dict, bottleneck, data: bytes, shape):
    """Inverse of ``compress_latent``: x̂ = g(ŷ) with ŷ decoded exactly (``shape`` = the latent's (N, C, h, w))."""
    import torch
    y_hat = bottleneck.decompress(data, shape)
    g = models["g"]
    dev = next(g.parameters()).device
    with torch.no_grad():
        return g(y_hat.to(dev))


# -- images <-> files ---------------------------------------------------------------------------------------------
def read_images(paths, size: int):
    """Image files -> float tensor (N,3,size,size) in [0,1]: centre square crop and resize as pycompgen.data does."""
    out = []
    for p in paths:
        img = decode_image(str(p), int(size))
        if isinstance(img, str):
            if img == "missing":
                raise FileNotFoundError(f"image not found: {p}")
            raise ValueError(f"cannot decode image {p} (not a readable image file)")
        out.append(img)
    return to_float01(out)


def compress_images(ckpt, x, payload: str = "auto") -> bytes:
    """Faces x (N,3,H,W) in [0,1] -> a complete ``.pcg`` file (bytes) for ``ckpt`` (a LoadedCheckpoint)."""
    import torch
    kind = choose_payload(ckpt, payload)
    n, _, h, w = x.shape
    _check_size(ckpt, h, w)
    if edgediff.is_edgediff(ckpt):
        return edgediff.compress_images(ckpt, x)
    dev = next(ckpt.models["g"].parameters()).device
    x = x.to(dev)
    shape, params = None, None
    if kind == "edges":
        data = encode_edges(_edges(ckpt, x))
    elif kind == "edges+hint":
        data, params = _edges_hint(ckpt, _edges(ckpt, x), _hint_codes(ckpt, x))
    else:
        with torch.no_grad():
            data, shape = compress_latent(ckpt.models, ckpt.models["eb"], x)
    return pack(data, system=ckpt.model_name, weights_hash=decoder_hash(ckpt, kind), height=h, width=w, count=n,
                kind=kind, params=params or _params(ckpt, kind, shape and shape[1:]))


def compress_batch(ckpt, x, payload: str = "auto") -> list:
    """Faces x (N,3,H,W) in [0,1] -> N complete ``.pcg`` files (one face each), with one forward pass (edge
    detection or the encoder) for the whole batch and the decoder hash computed once; each file is what
    ``compress_images`` writes for that face alone."""
    kind = choose_payload(ckpt, payload)
    n, _, h, w = x.shape
    _check_size(ckpt, h, w)
    if edgediff.is_edgediff(ckpt):
        return edgediff.compress_batch(ckpt, x)
    dev = next(ckpt.models["g"].parameters()).device
    x = x.to(dev)
    hsh = decoder_hash(ckpt, kind)
    if kind == "edges+hint":
        z, q = _edges(ckpt, x), _hint_codes(ckpt, x)
        coded = [_edges_hint(ckpt, z[i:i + 1], [c[i:i + 1] for c in q]) for i in range(n)]
        return [pack(d, system=ckpt.model_name, weights_hash=hsh, height=h, width=w, count=1, kind=kind,
                     params=params) for d, params in coded]
    if kind == "edges":
        z = _edges(ckpt, x)
        payloads = [encode_edges(z[i:i + 1]) for i in range(n)]
    else:
        y = encode_latent(ckpt.models, x)
        payloads = [ckpt.models["eb"].compress(y[i:i + 1]) for i in range(n)]
    params = _params(ckpt, kind, None if kind == "edges" else y.shape[1:])
    return [pack(d, system=ckpt.model_name, weights_hash=hsh, height=h, width=w, count=1, kind=kind,
                 params=params) for d in payloads]


def _check_size(ckpt, h: int, w: int) -> None:
    if (h, w) != (ckpt.image_size, ckpt.image_size):
        raise ValueError(f"images are {h}x{w}, but the model was trained on {ckpt.image_size}x{ckpt.image_size}")


def _edges(ckpt, x):
    d = ckpt.config.data
    return canny(x, d.canny_low, d.canny_high, blur_sigma=d.blur_sigma)


def _hint_codes(ckpt, x) -> list:
    size, bits = _hint_of(ckpt)
    return hint_codes(x, size, bits, hint_space(ckpt.models))


def _edges_hint(ckpt, z, q: list) -> tuple[bytes, dict]:
    """(payload, header params) of an edges+hint file for edge maps z and hint code planes q: varint(len(edge
    stream)) + edge stream + hint stream. The header names a colour space other than rgb by its index in SPACES."""
    size, bits = _hint_of(ckpt)
    space = hint_space(ckpt.models)
    edges = encode_edges(z)
    hint, scale = encode_hint_planes(q, bits, space)
    params = dict(_params(ckpt, "edges"), hint_size=size, hint_bits=bits, hint_scale=scale)
    if space != "rgb":
        params["hint_space"] = SPACES.index(space)
    return _varint(len(edges)) + edges + hint, params


def _params(ckpt, kind: str, latent_shape=None) -> dict:
    if kind == "edges":
        d = ckpt.config.data
        params = dict(coder_params(), canny_low=d.canny_low, canny_high=d.canny_high)
        if d.blur_sigma is not None:
            params["blur_sigma"] = d.blur_sigma
        return params
    return {"latent_shape": [int(v) for v in latent_shape]}


def decompress_bytes(ckpt, data: bytes, name: str = "file", psnr: float | None = None, seed: int = 0,
                     denoise: str | None = None):
    """A ``.pcg`` file's bytes -> (x̂ (N,3,H,W) on CPU, Header). Checks the system and the decoder's weights;
    ``denoise``: an edgediff file's decoding (none | sdc | full, default full)."""
    if edgediff.is_edgediff(ckpt) or denoise not in (None, "full"):
        return decompress_batch(ckpt, [(name, data)], psnr, seed, denoise=denoise)[0]
    hdr, kind, inp = decode_payload(ckpt, data, name, psnr, seed)
    return run_decoder(ckpt, kind, inp).cpu(), hdr


def decode_payload(ckpt, data: bytes, name: str = "file", psnr: float | None = None, seed: int = 0,
                   hashes: dict | None = None):
    """A ``.pcg`` file's bytes -> (Header, kind, the decoder's input on its device): the edge map z (through the
    AWGN channel at ``psnr``, noise seeded by ``seed``) or the decoded latent ŷ. ``hashes`` caches
    {kind: decoder hash} across files. The checks of ``decompress_bytes``."""
    import torch
    hdr, _ = unpack(data, name=name)
    if hdr.kind not in DECODER_PARTS:
        raise ValueError(f"{name}: unsupported payload kind {hdr.kind!r}")
    missing = missing_decoder_parts(ckpt, hdr.kind)
    if hdr.system != ckpt.model_name or missing:
        raise ValueError(f"{name} was written by model {hdr.model_id}, but this checkpoint is system "
                         f"{ckpt.model_name!r}" + (f" without trained {', '.join(missing)}" if missing else "")
                         + ": use the same checkpoint")
    hinted = bool(_hint_of(ckpt)[0])
    if hdr.kind in ("edges", "edges+hint") and (hdr.kind == "edges+hint") != hinted:
        raise ValueError(f"{name} holds " + ("an edge map and a colour hint, but this model takes edges only"
                                             if not hinted else "an edge map without the colour hint this model "
                                             "needs") + f" (file from model {hdr.model_id}): use the same checkpoint")
    hashes = {} if hashes is None else hashes
    if hdr.kind not in hashes:
        hashes[hdr.kind] = decoder_hash(ckpt, hdr.kind)
    hdr, payload = unpack(data, expect_system=ckpt.model_name, expect_hash=hashes[hdr.kind], name=name)
    if (hdr.height, hdr.width) != (ckpt.image_size, ckpt.image_size):
        raise ValueError(f"{name} holds {hdr.height}x{hdr.width} images, but the model was trained on "
                         f"{ckpt.image_size}x{ckpt.image_size}")
    dev = next(ckpt.models["g"].parameters()).device
    if hdr.kind in ("edges", "edges+hint"):
        hint = None
        if hdr.kind == "edges+hint":
            payload, hint = _read_hint(ckpt, hdr, payload, name)
            hint = [t.to(dev) for t in hint]
        z = torch.from_numpy(decode_edge_bits(payload, hdr.count, hdr.height, hdr.width,
                                              **params_from_header(hdr.params))).float().to(dev)
        if psnr is not None:
            gen = torch.Generator(device=dev)
            gen.manual_seed(int(seed))
            z = awgn(z, float(psnr), normalize=True, peak=1.0, generator=gen)
            if hint is not None:  # the hint's plane values through the same channel
                hint = [awgn(t, float(psnr), normalize=True, peak=1.0, generator=gen) for t in hint]
        if hint is not None:
            hint = planes_to_rgb(hint, hint_space(ckpt.models))
        return hdr, hdr.kind, (z if hint is None else (z, hint))
    if psnr is not None:
        raise ValueError("--psnr applies to edge-map payloads only")
    shape = hdr.params.get("latent_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise ValueError(f"{name}: the header lacks a valid latent_shape")
    return hdr, "latent", ckpt.models["eb"].decompress(payload, (hdr.count, *shape)).to(dev)


def _read_hint(ckpt, hdr, payload: bytes, name: str):
    """An edges+hint payload -> (edge stream, the hint's dequantised plane values (``plane_values``)); a one-line
    error for a hint of another size or colour space than the model's or a damaged layout."""
    p = hdr.params
    size, bits, scale = p.get("hint_size"), p.get("hint_bits"), p.get("hint_scale")
    if not all(isinstance(v, int) for v in (size, bits, scale)):
        raise ValueError(f"{name}: the header lacks the colour hint's size, bits or scale")
    want = _hint_of(ckpt)[0]
    if size != want:
        raise ValueError(f"{name} holds a {size}x{size} colour hint, but this model takes {want}x{want} hints")
    index, own = p.get("hint_space", 0), hint_space(ckpt.models)
    space = SPACES[index] if isinstance(index, int) and 0 <= index < len(SPACES) else None
    if space != own:
        raise ValueError(f"{name} holds a colour hint in space {space or index!r}, but this model takes {own} hints")
    try:
        n_edges, off = _read_varint(payload, 0)
    except ValueError:
        raise ValueError(f"{name}: the edges+hint payload is truncated (bad length prefix)") from None
    if off + n_edges > len(payload):
        raise ValueError(f"{name}: the edges+hint payload is truncated")
    try:
        q = decode_hint_planes(payload[off + n_edges:], hdr.count, size, bits, scale, space)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return payload[off:off + n_edges], plane_values(q, bits, space)


def run_decoder(ckpt, kind: str, inp, flip_average: bool = False):
    """x̂ of a batch of decoder inputs (``decode_payload``'s): g(h(z)) for edge maps, g(h(z, hint)) with a colour
    hint ((z, hint)), g(ŷ) for latents. ``flip_average`` (edge payloads): ``decode_edges``'s mirror average."""
    import torch
    g = ckpt.models["g"]
    with torch.no_grad():
        if kind == "edges":
            return decode_edges({"h": ckpt.models["h"], "g": g}, inp, flip_average=flip_average)
        if kind == "edges+hint":
            return decode_edges({"h": ckpt.models["h"], "g": g}, inp[0], inp[1], flip_average=flip_average)
        return g(inp)


def decompress_batch(ckpt, blobs, psnr: float | None = None, seed: int = 0, batch_size: int = 64,
                     denoise: str | None = None, flip_average: bool = False) -> list:
    """Many ``.pcg`` files [(name, bytes)] -> [(x̂ on CPU, Header)] in order: every file is checked and its payload
    decoded first (a bad file fails before any network runs), then the decoder runs on batches of up to
    ``batch_size`` images that share a payload kind. ``denoise`` (none | sdc | full, default full): how an edgediff
    model decodes (``pycompgen.inference.edgediff``); any other model takes only the default. ``flip_average``:
    Compgen edge files only, x̂ averaged with the mirrored decoding of the mirrored edge map."""
    import torch
    if flip_average and ckpt.model_name != "compgen":
        raise ValueError(f"--flip-average applies to Compgen edge files only; these are {ckpt.model_name!r} files")
    if edgediff.is_edgediff(ckpt):
        return edgediff.decompress_batch(ckpt, blobs, denoise or "full", seed, batch_size, psnr)
    hashes: dict = {}
    items = [decode_payload(ckpt, data, name, psnr, seed, hashes) for name, data in blobs]
    if denoise not in (None, "full"):
        raise ValueError(f"--denoise {denoise} applies to edgediff files only; these are {ckpt.model_name!r} files")
    if flip_average and any(not k.startswith("edges") for _, k, _ in items):
        raise ValueError("--flip-average applies to edge-map files; these hold a latent payload")
    out: list = [None] * len(items)
    count = lambda inp: (inp[0] if isinstance(inp, tuple) else inp).shape[0]  # noqa: E731
    for kind in DECODER_PARTS:
        idx = [i for i, (_, k, _) in enumerate(items) if k == kind]
        start = 0
        while start < len(idx):  # batches of whole files, at most batch_size images (a file of more: alone)
            group, n = [], 0
            while start < len(idx) and (not group or n + count(items[idx[start]][2]) <= batch_size):
                group.append(idx[start])
                n += count(items[idx[start]][2])
                start += 1
            inps = [items[i][2] for i in group]
            batch = tuple(torch.cat(p) for p in zip(*inps)) if isinstance(inps[0], tuple) else torch.cat(inps)
            x_hat = run_decoder(ckpt, kind, batch, flip_average).cpu()
            for i, part in zip(group, x_hat.split([count(items[i][2]) for i in group])):
                out[i] = (part, items[i][0])
    return out


def rate_line(name: str, nbytes: int, header_bytes: int, n: int, h: int, w: int) -> str:
    pixels = n * h * w
    return (f"{name}: {nbytes} bytes ({header_bytes} header + {nbytes - header_bytes} payload), "
            f"{8 * nbytes / pixels:.4f} bpp with header, {8 * (nbytes - header_bytes) / pixels:.4f} bpp without "
            f"({n} image{'s' if n > 1 else ''} {h}x{w})")


def _outputs(inputs: list[Path], out: Path) -> list[Path]:
    if len(inputs) == 1 and (out.suffix == SUFFIX or out.is_file()):
        return [out]
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file: give a folder for several inputs")
    names: dict[str, Path] = {}
    for p in inputs:
        if p.stem in names:
            raise ValueError(f"inputs {names[p.stem]} and {p} would both be written to {p.stem}{SUFFIX}: "
                             f"compress them into separate folders")
        names[p.stem] = p
    return [out / (p.stem + SUFFIX) for p in inputs]


def compress_files(ckpt, inputs, output, payload: str = "auto", note=print, batch_size: int = 64) -> list:
    """Compress image files or folders of images with ``ckpt`` into ``output`` (a folder, or a .pcg file for one
    input): every input is read and compressed (``batch_size`` images per forward pass) before anything is written
    (a bad input writes nothing), then each file is written atomically; returns the paths written."""
    import torch
    from .images import expand_inputs
    inputs = expand_inputs(inputs)
    outs = _outputs(inputs, Path(output))
    kind = choose_payload(ckpt, payload)
    images = [read_images([src], ckpt.image_size) for src in inputs]  # all readable before any work
    files = []
    for i in range(0, len(images), batch_size):  # one forward pass per batch, one file per image
        files += compress_batch(ckpt, torch.cat(images[i:i + batch_size]), kind)
        if len(images) > batch_size:
            note(f"compressed {len(files)}/{len(images)}")
    for dst, data in zip(outs, files):
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dst)
        hdr, _ = unpack(data)
        note(rate_line(str(dst), len(data), hdr.nbytes, hdr.count, hdr.height, hdr.width))
    return outs


def decompress_files(ckpt, files, output, psnr: float | None = None, seed: int = 0, note=print,
                     batch_size: int = 64, denoise: str | None = None, flip_average: bool = False) -> list:
    """Decode ``.pcg`` files with ``ckpt`` (a LoadedCheckpoint) into PNGs in ``output``, ``batch_size`` images per
    forward pass (``denoise``: see ``decompress_batch``); everything is decoded before anything is written;
    returns the PNG paths."""
    import cv2
    import numpy as np
    import torch
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file: decompress writes PNGs into a folder")
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"compressed file not found: {p}")
    decoded = []                                             # decode everything before writing anything
    for i in range(0, len(paths), 4 * batch_size):
        chunk = paths[i:i + 4 * batch_size]
        res = decompress_batch(ckpt, [(str(p), p.read_bytes()) for p in chunk], psnr, seed, batch_size, denoise,
                               flip_average)
        decoded += [(p, x_hat, hdr) for p, (x_hat, hdr) in zip(chunk, res)]
        if len(paths) > 4 * batch_size:
            note(f"decoded {len(decoded)}/{len(paths)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p, x_hat, hdr in decoded:
        imgs = (x_hat.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, img in enumerate(imgs):
            dst = out / (p.stem + (f"_{i}" if len(imgs) > 1 else "") + ".png")
            if not cv2.imwrite(str(dst), np.ascontiguousarray(img[:, :, ::-1])):
                raise RuntimeError(f"cannot write {dst}")
            written.append(dst)
            note(f"{p} -> {dst}")
    return written



def find_decoder(data: bytes, name: str = "file", device: str = "cpu"):
    """The zoo stage that wrote a ``.pcg`` file: the entry of the header's system whose decoder networks hash to
    the header's weights hash; ValueError naming the model id when no entry matches."""
    from pycompgen import zoo
    hdr, _ = unpack(data, name=name)
    if hdr.kind not in DECODER_PARTS:
        raise ValueError(f"{name}: unsupported payload kind {hdr.kind!r}")
    for entry_name in zoo.names():
        e = zoo.entry(entry_name)
        if e.get("system", e.get("model", "compgen")) != hdr.system:
            continue
        tried = set()
        for q in zoo.qualities(e) or [None]:  # every rate point of a latent codec with weights of its own
            sha = zoo.rate_point(e, q).get("sha256") if q is not None else None
            if sha is not None and sha in tried:
                continue  # points sharing one weights file (edgediff's bit depths, colour-hint bits): tried once
            tried.add(sha)
            pre = zoo.load(entry_name, device=device, quality=q)
            for lc in pre.stages.values():  # hashed as the writer hashed it: ready to code (code tables built)
                if not missing_decoder_parts(lc, hdr.kind) and \
                        decoder_hash(prepare_codec(lc), hdr.kind) == hdr.weights_hash:
                    return lc
    raise ValueError(f"{name} was written by model {hdr.model_id}, which is not in the zoo "
                     f"({', '.join(zoo.names()) or 'empty'}): decode it with --checkpoint PATH")
