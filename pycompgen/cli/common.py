"""What every verb shares: config options and overrides, one-line errors, and a trained model from
``--checkpoint PATH`` or ``--pretrained NAME``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. model.num_res=3 train.epochs=5 train.psnr_range=[0,50]")
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (see configs/)")
    p.add_argument("--data", metavar="PATH",
                   help="CelebA root or face folder (default: synthetic faces); sets data.path")
    p.add_argument("--out", metavar="DIR", help="run folder (sets out)")
    p.add_argument("--device", metavar="DEV", help="cpu | cuda | cuda:N | auto (sets train.device)")
    add_debug(p)


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")


def make_config(args):
    """Defaults, ``--config``, ``key=value`` overrides, then the verb's own options."""
    from pycompgen.config import load_config, set_value
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


def check_data(cfg) -> None:
    p = cfg.data.path
    if p is not None and p != "synthetic" and not Path(p).expanduser().exists():
        raise FileNotFoundError(f"data folder not found: {p} (give --data a CelebA root or a folder of face "
                                f"images, or omit it for synthetic faces)")


def one_of(checkpoint, pretrained, verb: str, required: bool = True) -> None:
    """``--checkpoint`` and ``--pretrained`` exclude each other; with ``required`` one of them must be given."""
    if checkpoint and pretrained:
        raise ValueError("--pretrained and --checkpoint are mutually exclusive: give one of them")
    if required and not checkpoint and not pretrained:
        raise ValueError(f"{verb} needs a model: --pretrained NAME (see 'pycompgen zoo list') or --checkpoint PATH")


def pretrained_stage(name: str, device="cpu", prefer: str = "approach3", quality: int | None = None):
    """The stage of zoo entry ``name`` the codec verbs use, ready to code: a latent codec's rate point
    ``quality`` (1 = the lowest rate; default: the entry's default), else ``prefer`` when it has a trained ELM,
    else its last approach."""
    from pycompgen import zoo
    from pycompgen.inference import prepare_codec
    pre = zoo.load(name, device=device, quality=quality)
    if "eb" in pre[next(iter(pre))].parts:  # a latent codec: its one stage
        return prepare_codec(pre[next(iter(pre))])
    return prepare_codec(pre[pre.elm_stage(prefer)])


def positive(n: int, flag: str = "--batch-size") -> int:
    """``n`` if >= 1, else a one-line error naming ``flag``."""
    if n < 1:
        raise ValueError(f"{flag} must be >= 1, got {n}")
    return n


def check_quality(args) -> None:
    if getattr(args, "quality", None) is not None and not args.pretrained:
        raise ValueError("--quality picks a rate point of a --pretrained entry; a --checkpoint has one rate")


def add_quality(p) -> None:
    p.add_argument("--quality", type=int, metavar="Q", help="rate point of a --pretrained latent codec with several "
                   "(1 = the lowest rate; 'pycompgen zoo info NAME' lists them)")


# -- evaluate / generate: checkpoints, PSNRs and output folders ----------------------------------------------
def _get(args, name, default=None):
    return getattr(args, name, default) if args is not None else default


def _checkpoint_spec(args):
    spec = _get(args, "checkpoints") or _get(args, "checkpoint")
    if isinstance(spec, str):
        spec = [spec]
    return list(spec) if spec else []


def _psnrs(cfg, args) -> list[float]:
    p = _get(args, "psnrs")
    if p is None or p == [] or p == "":
        return [float(v) for v in cfg.eval.psnrs]
    if isinstance(p, str):
        p = [s for s in p.replace(",", " ").split()]
    try:
        return [float(v) for v in p]
    except ValueError:
        raise ValueError(f"--psnrs must be numbers of dB (e.g. 50,25,10,0,-2,-5), got {p!r}") from None


def _out_dir(cfg, args, spec, sub: str) -> Path:
    if spec and _get(args, "out"):
        return Path(args.out)
    return Path(cfg.out) / sub


def _pretrained(cfg, args):
    """``--pretrained NAME`` -> the loaded zoo entry (pycompgen.zoo.Pretrained), or None without the flag."""
    name = _get(args, "pretrained")
    if not name:
        return None
    one_of(_checkpoint_spec(args), name, args.command, required=False)
    from pycompgen import zoo
    from pycompgen.evaluation.sweep import resolve_device
    return zoo.load(name, device=resolve_device(cfg.train.device))


def _pretrained_out(args, pre, sub: str) -> Path:
    return Path(args.out) if _get(args, "out") else Path("runs") / "pretrained" / pre.name / sub
