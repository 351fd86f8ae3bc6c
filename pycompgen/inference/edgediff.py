"""The edge-guided diffusion compressor's files behind ``pycompgen compress`` / ``decompress``: one
``receiver.compress`` bitstream per face at the model's bit depth (a zoo rate point's ``bits``, else the trained
``eval_bits``), read back with ``receiver.decompress`` (the bit depth from the file) and decoded with
``receiver.receive``: ``--denoise`` none (the plain VAE decode, "wo"), sdc (the unconditional denoiser) or full
(edge-guided, the default). Files are coded with the entropy (else the denoiser) stage's networks; their hash is in every file."""
from __future__ import annotations

SYSTEM = "edgediff"
DENOISE = {"none": "wo", "sdc": "sdc", "full": "full"}    # --denoise -> receiver mode
PARTS = ("vae", "eb", "een", "unet", "control", "null")   # the receiver's networks (the critic D: not needed)


def _rx():
    from pycompgen.systems.edgediff import receiver
    return receiver


def is_edgediff(ckpt) -> bool:
    return ckpt.model_name == SYSTEM


def receiver_config(ckpt):
    """The receiver's settings stored with the weights (latent range, DDIM steps, schedule, eval_bits)."""
    return ckpt.models["eb"].receiver_config()


def bits_of(ckpt) -> int:
    """The bit depth files are written at: the zoo rate point's, else the model's ``eval_bits``."""
    return int(ckpt.bits) if ckpt.bits is not None else int(receiver_config(ckpt).eval_bits)


def run_checkpoint(run_dir):
    """(stage, checkpoint) of an edgediff run folder that files are coded with: the last stage holding the whole
    receiver, ``completer`` (the trained completer besides), else ``entropy`` (its entropy models fitted again),
    else ``denoiser`` (best.pt, else last.pt; a missing one is named in the loader's error). Warns when an earlier
    stage was trained again after the one chosen."""
    import warnings
    from pathlib import Path
    from pycompgen.models import stage_checkpoint
    run_dir = Path(run_dir)
    order = ("completer", "entropy", "denoiser")            # last stage first
    found = {s: stage_checkpoint(run_dir / s) for s in order}
    i = next((i for i, s in enumerate(order) if found[s] is not None), None)
    if i is None:
        return "denoiser", run_dir / "denoiser" / "best.pt"
    stage, ck = order[i], found[order[i]]
    newer = [s for s in order[i + 1:] if found[s] is not None and found[s].stat().st_mtime > ck.stat().st_mtime]
    if newer:
        warnings.warn(f"{found[newer[0]]} is newer than {ck}: the {stage} stage holds an older {newer[0]} stage's "
                      f"networks; run the {stage} stage again (delete {run_dir / stage} and resume the pipeline)")
    return stage, ck


def missing_parts(ckpt) -> list:
    return [k for k in PARTS if k not in ckpt.parts]


def check_model(ckpt):
    """``ckpt`` ready to code (code tables built); a one-line error unless it holds the receiver's networks (the
    completer, entropy or denoiser stage)."""
    if missing := missing_parts(ckpt):
        raise ValueError(f"{ckpt.path} (edgediff stage {ckpt.stage}) lacks trained {', '.join(missing)}: edgediff "
                         f"files are coded with the completer, entropy or denoiser stage's checkpoint "
                         f"(e.g. entropy/best.pt)")
    _rx().ensure_tables(ckpt.models)
    return ckpt


def decoder_hash(ckpt) -> bytes:
    """The weights hash ``receiver.compress`` writes into a file (the decoding networks, code tables built)."""
    from pycompgen.codec.container import weights_hash
    R = _rx()
    R.ensure_tables(ckpt.models)
    return weights_hash(R._decoding_nets(ckpt.models))


def _device(ckpt):
    return next(ckpt.models["vae"].parameters()).device


def compress_images(ckpt, x) -> bytes:
    """Faces x (N,3,H,W) in [0,1] -> one ``.pcg`` file holding all N."""
    check_model(ckpt)
    return _rx().compress(ckpt.models, receiver_config(ckpt), x.to(_device(ckpt)), bits_of(ckpt))


def compress_batch(ckpt, x) -> list:
    """Faces x (N,3,H,W) in [0,1] -> N ``.pcg`` files, one face each, from one encoder pass (each what
    ``compress_images`` writes for that face alone, up to the float rounding of a batched convolution)."""
    check_model(ckpt)
    return _rx().compress_each(ckpt.models, receiver_config(ckpt), x.to(_device(ckpt)), bits_of(ckpt))


def decompress_batch(ckpt, blobs, denoise: str = "full", seed: int = 0, batch_size: int = 64, psnr=None,
                     steps: int | None = None) -> list:
    """Many ``.pcg`` files [(name, bytes)] -> [(x̂ on CPU, Header)] in order: every file is checked and its latent
    decoded first (a bad file fails before any network runs), then ``receive`` runs on batches of up to
    ``batch_size`` images that share a bit depth."""
    import torch
    from pycompgen.codec.container import unpack
    if denoise not in DENOISE:
        raise ValueError(f"--denoise must be one of {', '.join(DENOISE)}, got {denoise!r}")
    if psnr is not None:
        raise ValueError("--psnr applies to edge-map payloads only")
    check_model(ckpt)
    R, c, dev = _rx(), receiver_config(ckpt), _device(ckpt)
    items = []
    for name, data in blobs:
        y_hat, bits = R.decompress(ckpt.models, c, data, name)
        items.append((unpack(data, name=name)[0], y_hat.to(dev), bits))
    out: list = [None] * len(items)
    for bits in sorted({b for _, _, b in items}):
        idx = [i for i, it in enumerate(items) if it[2] == bits]
        start = 0
        while start < len(idx):  # whole files, at most batch_size images per batch (a larger file: alone)
            group, n = [], 0
            while start < len(idx) and (not group or n + items[idx[start]][1].shape[0] <= batch_size):
                group.append(idx[start])
                n += items[idx[start]][1].shape[0]
                start += 1
            y = torch.cat([items[i][1] for i in group])
            x_hat = R.receive(ckpt.models, c, y, bits, DENOISE[denoise], steps=steps, seed=seed).float().cpu()
            for i, part in zip(group, x_hat.split([items[i][1].shape[0] for i in group])):
                out[i] = (part, items[i][0])
    return out


__all__ = ["DENOISE", "PARTS", "is_edgediff", "receiver_config", "bits_of", "missing_parts", "check_model",
           "decoder_hash", "compress_images", "compress_batch", "decompress_batch"]
