"""``pycompgen compress``: face images to ``.pcg`` files (edge map or latent bitstream) with a trained model."""
from __future__ import annotations

from .common import add_debug, add_quality, check_quality, one_of, positive, pretrained_stage


def add_parser(sub) -> None:
    c = sub.add_parser("compress", help="compress face images into .pcg files (edge map or latent bitstream)",
                       description="Compress face images (PNG/JPG; centre-cropped and resized to the model's size "
                                   "as pycompgen.data does) into one .pcg file each.")
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="image files")
    c.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder (created), or a .pcg file when there is one input")
    c.add_argument("--checkpoint", metavar="PATH", help="trained checkpoint (e.g. approach3/best.pt)")
    c.add_argument("--pretrained", metavar="NAME", help="a pretrained zoo model (see 'pycompgen zoo list'); "
                   "not with --checkpoint")
    c.add_argument("--payload", choices=("auto", "edges", "edges+hint", "latent"), default="auto",
                   help="what to code: the Canny edge map (Compgen), the edge map and its colour hint (a Compgen "
                        "model with model.hint_size), or the latent through the checkpoint's entropy bottleneck; "
                        "auto: latent when the checkpoint has one, else edges+hint or edges as the model takes")
    c.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="images per forward pass (default 64)")
    c.add_argument("--device", default="cpu", metavar="DEV", help="cpu | cuda | cuda:N (default cpu)")
    add_quality(c)
    add_debug(c)


def run(args) -> int:
    from pycompgen.inference import compress_files, load_checkpoint_for_codec
    check_quality(args)
    one_of(args.checkpoint, args.pretrained, "compress")
    ckpt = (pretrained_stage(args.pretrained, args.device, quality=args.quality) if args.pretrained
            else load_checkpoint_for_codec(args.checkpoint, args.device))
    compress_files(ckpt, args.inputs, args.output, args.payload, batch_size=positive(args.batch_size))
    return 0
