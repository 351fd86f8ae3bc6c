"""Command line: ``python -m pycompgen`` / ``compgen`` with subcommands train, evaluate, generate, compress, decompress.

Every subcommand takes ``--config file.yaml`` plus positional ``key=value`` overrides (e.g. ``model.num_res=3
train.psnr_range=[0,50]``), ``--data PATH`` (default: synthetic faces) and ``--out DIR``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional



def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. model.num_res=3 train.epochs=5 train.psnr_range=[0,50]")
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (see configs/)")
    p.add_argument("--data", metavar="PATH",
                   help="CelebA root or face folder (default: synthetic faces); sets data.path")
    p.add_argument("--out", metavar="DIR", help="run folder (sets out)")
    p.add_argument("--device", metavar="DEV", help="cpu | cuda | cuda:N | auto (sets train.device)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycompgen", description="Compgen: compress and generate faces from edge maps (Pandian et al.).")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,generate,compress,decompress,zoo,judge}")
    sub.required = True

    t = sub.add_parser("train", help="train a step / approach, or the whole pipeline",
                       description="Train step1 | approach1 | approach2 | approach3 (train.stage) or the pipeline.")
    _common(t)
    t.add_argument("--system", metavar="NAME",
                   help="system to train (sets model.name; default compgen; see pycompgen.systems)")
    t.add_argument("--stage", metavar="STAGE",
                   help="stage to train (sets train.stage; Compgen: step1 | approach1 | approach2 | approach3); "
                        "'pipeline' runs all of the system's stages in order into OUT/<stage>/")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (pipeline: skip finished stages)")
    t.add_argument("--init", metavar="CKPT", help="previous-step checkpoint to start from (sets train.init)")
    ray = t.add_argument_group("distributed (Ray Train)")
    ray.add_argument("--workers", type=int, metavar="N", help="train with N Ray Train workers")
    ray.add_argument("--gpu", action="store_true", help="one GPU per Ray worker")
    ray.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    ray.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI")
    ray.add_argument("--storage-path", metavar="PATH",
                     help="Ray checkpoint storage (default OUT/ray_results; shared folder or s3:// on clusters)")
    ray.add_argument("--max-failures", type=int, metavar="K",
                     help="restarts from the latest checkpoint after worker failures (default 3)")

    e = sub.add_parser("evaluate", help="PSNR sweep of trained checkpoints (SSIM, MS-SSIM, PSNR, L1, L2, edge-F1)")
    _common(e)
    e.add_argument("--checkpoint", action="append", default=[], metavar="[LABEL=]PATH",
                   help="checkpoint to evaluate (repeatable; default: the run folder's stages)")
    e.add_argument("--split", help="data split (sets eval.split)")
    e.add_argument("--psnrs", metavar="DB,DB,...", help="channel PSNRs in dB, e.g. 50,25,10,0,-2,-5 "
                   "(default eval.psnrs)")
    e.add_argument("--pretrained", metavar="NAME", help="evaluate a pretrained zoo model (see 'pycompgen zoo list'); "
                   "not with --checkpoint")

    g = sub.add_parser("generate", help="faces from hand-drawn sketches or unconditionally from pure noise")
    _common(g)
    g.add_argument("--checkpoint", metavar="PATH", help="trained checkpoint (default: OUT/approach3/best.pt)")
    g.add_argument("--sketches", metavar="DIR", help="folder of hand-drawn sketches")
    g.add_argument("--unconditional", type=int, metavar="N", help="generate N faces from pure noise")
    g.add_argument("--psnr", type=float, metavar="DB", help="channel PSNR in dB (default: -5 for generation)")
    g.add_argument("--pretrained", metavar="NAME", help="generate with a pretrained zoo model (its approach3; see "
                   "'pycompgen zoo list'); not with --checkpoint")

    z = sub.add_parser("zoo", help="pretrained models shipped with pycompgen (pycompgen.zoo)",
                       description="List the pretrained models (pycompgen/zoo/manifest.json, or $PYCOMPGEN_ZOO_DIR).")
    z.add_argument("action", choices=["list", "info"], help="list: one line per model; info NAME: its manifest entry")
    z.add_argument("name", nargs="?", help="model name (for info)")
    z.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")

    from .codec.cli import add_parsers as add_codec_parsers  # compress, decompress
    add_codec_parsers(sub)
    from .evaluation.judge_generators import add_parser as add_judge_parser  # judge (issue 10 §3)
    add_judge_parser(sub)
    return parser


def make_config(args):
    from .config import load_config, set_value
    overrides = list(args.overrides)
    if getattr(args, "system", None):  # first, so that the system's own keys and stages apply
        overrides.insert(0, f"model.name={args.system}")
        if not getattr(args, "stage", None):  # a config file's stage may be another system's
            overrides.insert(1, "train.stage=null")
    cfg = load_config(args.config, overrides)
    if args.data is not None:
        set_value(cfg, "data.path", args.data)
    if args.out is not None:
        set_value(cfg, "out", args.out)
    if getattr(args, "device", None):
        set_value(cfg, "train.device", args.device)
    if getattr(args, "stage", None) and args.stage != "pipeline":
        set_value(cfg, "train.stage", args.stage)
    if getattr(args, "init", None):
        set_value(cfg, "train.init", args.init)
    if getattr(args, "split", None):
        set_value(cfg, "eval.split", args.split)
    return cfg.validate()


def _check_data(cfg) -> None:
    from pathlib import Path
    p = cfg.data.path
    if p is not None and p != "synthetic" and not Path(p).expanduser().exists():
        raise FileNotFoundError(f"data folder not found: {p} (give --data a CelebA root or a folder of face "
                                f"images, or omit it for synthetic faces)")


def cmd_train(cfg, args) -> int:
    _check_data(cfg)
    if args.workers is not None:
        try:
            from .distributed import train_distributed
        except ImportError as e:
            raise RuntimeError(f"distributed training is not available (pycompgen.distributed: {e})") from None
        train_distributed(cfg, args)
        return 0
    if args.gpu or args.address or args.tracking_uri:
        print("note: --gpu/--address/--tracking-uri apply to Ray runs; add --workers N", file=sys.stderr)
    from .training import run_pipeline, train_local
    if args.stage == "pipeline":
        run_pipeline(cfg, resume=args.resume)
    else:
        train_local(cfg, resume=args.resume)
    return 0


def cmd_zoo(args) -> int:
    from . import zoo
    if args.action == "list":
        print(zoo.format_list())
        return 0
    if not args.name:
        raise ValueError("zoo info needs a model name (see 'pycompgen zoo list')")
    import json
    print(json.dumps(zoo.info(args.name), indent=2))
    return 0


def _delegate(name: str, cfg, args) -> int:
    try:
        from . import evaluation
    except ImportError as e:
        raise RuntimeError(f"'{args.command}' is not available: pycompgen.evaluation cannot be imported ({e})") \
            from None
    fn = getattr(evaluation, name, None)
    if fn is None:
        raise RuntimeError(f"'{args.command}' is not available yet: pycompgen.evaluation.{name} does not exist")
    rc = fn(cfg, args)
    return int(rc) if isinstance(rc, int) else 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("compress", "decompress"):
            from .codec.cli import run as run_codec
            return run_codec(args)
        if args.command == "judge":
            from .evaluation.judge_generators import cli_judge
            return cli_judge(args)
        if args.command == "zoo":
            return cmd_zoo(args)
        cfg = make_config(args)
        if args.command == "train":
            return cmd_train(cfg, args)
        if args.command == "evaluate":
            _check_data(cfg)
            return _delegate("cli_evaluate", cfg, args)
        return _delegate("cli_generate", cfg, args)
    except KeyboardInterrupt:
        print("interrupted (resume with --resume)", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError, ImportError) as e:
        if args.debug:
            raise
        print(f"pycompgen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
