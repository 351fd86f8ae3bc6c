"""The command line: ``pycompgen VERB`` (also ``python -m pycompgen``), one module per verb, each a thin layer over
library functions.

| verb | module | library |
|---|---|---|
| train | ``train`` | ``pycompgen.training`` (one process), ``pycompgen.distributed`` (Ray Train) |
| evaluate | ``evaluate`` | ``pycompgen.evaluation.sweep`` (Compgen), ``pycompgen.evaluation.entries`` (other zoo entries) |
| generate | ``generate`` | ``pycompgen.evaluation.generate`` |
| compress / decompress | ``compress`` / ``decompress`` | ``pycompgen.inference`` |
| refine | ``refine`` | ``pycompgen.inference.refine`` (the BEGAN refiner) |
| zoo | ``zoo`` | ``pycompgen.zoo`` |
| judge | ``judge`` | ``pycompgen.evaluation.judge_generators`` |
| tune | ``tune`` (also ``python tune/search.py``) | ``pycompgen.tune`` (Ray Tune) |

Every verb with a config takes ``--config file.yaml`` plus positional ``key=value`` overrides (e.g.
``model.num_res=3 train.psnr_range=[0,50]``), ``--data PATH`` (default: synthetic faces) and ``--out DIR``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from . import compress, decompress, evaluate, generate, judge, refine, train, zoo
from .common import check_data, make_config

VERBS = ("train", "evaluate", "generate", "compress", "decompress", "refine", "zoo", "judge", "tune")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycompgen", description="Compgen: compress and generate faces from edge maps (Pandian et al.).")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(VERBS) + "}")
    sub.required = True
    for verb in (train, evaluate, generate, zoo, compress, decompress, refine, judge):
        verb.add_parser(sub)
    sub.add_parser("tune", help="Ray Tune search over a system's hyper-parameters (= python tune/search.py; "
                                "'pycompgen tune --help' for its options)", add_help=False)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tune":  # its own parser (shared with tune/search.py)
        from . import tune
        return tune.main(argv[1:], prog="pycompgen tune")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "compress":
            return compress.run(args)
        if args.command == "decompress":
            return decompress.run(args)
        if args.command == "refine":
            return refine.run(args)
        if args.command == "judge":
            return judge.run(args)
        if args.command == "zoo":
            return zoo.run(args)
        cfg = make_config(args)
        if args.command == "train":
            return train.run(cfg, args)
        if args.command == "evaluate":
            check_data(cfg)
            return evaluate.run(cfg, args)
        return generate.run(cfg, args)
    except KeyboardInterrupt:
        print("interrupted (resume with --resume)", file=sys.stderr)
        return 130
    except OSError as e:  # unreadable or unwritable files: one line naming the file
        if args.debug:
            raise
        msg = str(e) if isinstance(e, (FileNotFoundError, NotADirectoryError)) or not e.filename \
            else f"{e.strerror or e}: {e.filename}"
        print(f"pycompgen {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, ImportError) as e:
        if args.debug:
            raise
        print(f"pycompgen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
