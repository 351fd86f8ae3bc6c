"""``pycompgen decompress``: ``.pcg`` files back to PNG faces, with the model that wrote them."""
from __future__ import annotations

from pathlib import Path

from .common import add_debug, add_quality, check_quality, one_of, positive, pretrained_stage


def add_parser(sub) -> None:
    d = sub.add_parser("decompress", help="decode .pcg files into PNG faces",
                       description="Decode .pcg files with the model that wrote them and write PNGs. Without "
                                   "--checkpoint or --pretrained the model is found among the zoo's entries "
                                   "from the file's system and decoder-weights hash.")
    d.add_argument("files", nargs="+", metavar="FILE", help=".pcg files")
    d.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder for the PNGs (created)")
    d.add_argument("--checkpoint", metavar="PATH", help="the checkpoint that wrote the files")
    d.add_argument("--pretrained", metavar="NAME", help="the zoo model that wrote the files; not with --checkpoint")
    d.add_argument("--psnr", type=float, metavar="DB",
                   help="send the decoded edge map through the AWGN channel at this PSNR first (edge payload)")
    d.add_argument("--seed", type=int, default=0, help="channel noise seed (with --psnr)")
    d.add_argument("--denoise", choices=("none", "sdc", "full"), metavar="MODE",
                   help="edgediff files: none (the plain VAE decode), sdc (the unconditional denoiser) or full "
                        "(edge-guided; the default)")
    d.add_argument("--flip-average", action="store_true",
                   help="Compgen edge files: average x̂ with the mirrored decoding of the mirrored edge map (twice "
                        "the decoding cost; +0.006 SSIM for compgen-64-plus on validation faces at 50 dB)")
    d.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="images per forward pass (default 64)")
    d.add_argument("--device", default="cpu", metavar="DEV", help="cpu | cuda | cuda:N (default cpu)")
    add_quality(d)
    add_debug(d)


def run(args) -> int:
    from pycompgen.inference import decompress_files, load_checkpoint_for_codec
    check_quality(args)
    one_of(args.checkpoint, args.pretrained, "decompress", required=False)
    if args.pretrained:
        ckpt = pretrained_stage(args.pretrained, args.device, quality=args.quality)
    elif args.checkpoint:
        ckpt = load_checkpoint_for_codec(args.checkpoint, args.device)
    else:
        from pycompgen.inference import find_decoder
        first = Path(args.files[0])
        if not first.is_file():
            raise FileNotFoundError(f"compressed file not found: {first}")
        ckpt = find_decoder(first.read_bytes(), name=str(first), device=args.device)
    decompress_files(ckpt, args.files, args.output, args.psnr, args.seed, batch_size=positive(args.batch_size),
                     denoise=args.denoise, flip_average=args.flip_average)
    return 0
