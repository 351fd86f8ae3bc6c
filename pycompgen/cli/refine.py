"""``pycompgen refine``: face images through a trained refiner (the BEGAN refiner), one PNG per input."""
from __future__ import annotations

from .common import add_debug, one_of


def add_parser(sub) -> None:
    r = sub.add_parser("refine", help="refine face images with the BEGAN refiner (e.g. --pretrained began-64-a)",
                       description="Refine face images (files or folders; any size, centre-cropped and resized to "
                                   "the refiner's size as pycompgen.data does; greyscale and RGBA read as RGB) and "
                                   "write one PNG per input, named by the input's stem.")
    r.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders of images")
    r.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    r.add_argument("--pretrained", metavar="NAME", help="a zoo refiner (began-64-a, began-64-b, began-64-c)")
    r.add_argument("--checkpoint", metavar="PATH", help="a trained BEGAN checkpoint (best.pt); not with --pretrained")
    r.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default 64)")
    r.add_argument("--device", default="cpu", metavar="DEV", help="cpu | cuda | cuda:N (default cpu)")
    add_debug(r)


def run(args) -> int:
    from pycompgen.inference import refine_files
    one_of(args.checkpoint, args.pretrained, "refine")
    if args.pretrained:
        from pycompgen import zoo
        pre = zoo.load(args.pretrained, device=args.device)
        lc = pre[next(iter(pre))]
    else:
        from pycompgen.models import load_for_eval
        lc = load_for_eval(args.checkpoint, expect_model=None, device=args.device)
    refine_files(lc, args.inputs, args.output, args.batch_size)
    return 0
