"""``pycompgen train``: a stage of any system, or its whole pipeline, in one process or on Ray Train."""
from __future__ import annotations

import sys

from .common import add_common, check_data


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a step / approach, or the whole pipeline",
                       description="Train step1 | approach1 | approach2 | approach3 (train.stage) or the pipeline.")
    add_common(t)
    t.add_argument("--system", metavar="NAME",
                   help="system to train (sets model.name; default compgen; see pycompgen.systems)")
    t.add_argument("--stage", metavar="STAGE",
                   help="stage to train (sets train.stage; Compgen: step1 | approach1 | approach2 | approach3); "
                        "'pipeline' runs all of the system's stages in order into OUT/<stage>/")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (pipeline: skip finished stages)")
    t.add_argument("--init", metavar="CKPT", help="previous-step checkpoint to start from, or zoo:NAME[/STAGE] to "
                                               "fine-tune from a pretrained entry (sets train.init)")
    ray = t.add_argument_group("distributed (Ray Train)")
    ray.add_argument("--workers", type=int, metavar="N", help="train with N Ray Train workers")
    ray.add_argument("--gpu", action="store_true", help="one GPU per Ray worker")
    ray.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    ray.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI")
    ray.add_argument("--storage-path", metavar="PATH",
                     help="Ray checkpoint storage (default OUT/ray_results; shared folder or s3:// on clusters)")
    ray.add_argument("--max-failures", type=int, metavar="K",
                     help="restarts from the latest checkpoint after worker failures (default 3)")


def run(cfg, args) -> int:
    check_data(cfg)
    if args.workers is not None:
        try:
            from pycompgen.distributed import train_distributed
        except ImportError as e:
            raise RuntimeError(f"distributed training is not available (pycompgen.distributed: {e})") from None
        train_distributed(cfg, args)
        return 0
    if args.gpu or args.address or args.tracking_uri:
        print("note: --gpu/--address/--tracking-uri apply to Ray runs; add --workers N", file=sys.stderr)
    from pycompgen.training import run_pipeline, train_local
    if args.stage == "pipeline":
        run_pipeline(cfg, resume=args.resume)
    else:
        train_local(cfg, resume=args.resume)
    return 0
