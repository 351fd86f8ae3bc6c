"""Search-space files for tune/search.py: parse, validate, turn into Ray Tune domains and config overrides.

A space is a mapping ``key: spec``. A spec is a fixed value or one of
``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}`` (hi exclusive),
``{quniform: [lo, hi, q]}``, ``{grid: [...]}`` (every value, each num_samples times; random search only). On the command line ``key=spec`` takes the same YAML (``num_res={choice: [1, 2]}``)
or the call form ``num_res=choice(1,2,3)``, ``lr=loguniform(1e-4,1e-2)``.
The training PSNR ``psnr`` is a number (fixed dB) or a range written ``"lo:hi"`` (a per-image PSNR drawn in it).
Keys with a dot (``model.channels``, ``cvae.kl_weight``) set any other config value: a fixed value or a spec
(numbers; ``randint`` for integers); the config itself checks the sampled value when a trial starts.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

# Short searchable keys -> config keys.
SEARCH_KEYS = {
    "num_res": "model.num_res",
    "num_mult": "model.num_mult",
    "w_ssim": "train.w_ssim",
    "w_l1": "train.w_l1",
    "w_mse": "train.w_mse",
    "w_latent": "train.w_latent",
    "lr": "train.lr",
    "psnr": "train.psnr",
}
# Keys that select what is tuned rather than a config value (the stage must be one of the searched system's).
META_KEYS = {"stage": None}
SPEC_KINDS = {"choice": None, "grid": None, "uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}
INT_KEYS = {"num_res", "num_mult"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 (no dot) as a float, as users write learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def yaml_load(text):
    return yaml.load(text, Loader=_Loader)


class SpaceError(ValueError):
    """A bad search-space file or override; the message names the source and the key."""


def _where(source, key):
    return f"{source}: key {key!r}"


def parse_psnr(value, where="psnr"):
    """Number -> ('fixed', dB); 'lo:hi' or [lo, hi] -> ('range', lo, hi)."""
    if isinstance(value, bool):
        raise SpaceError(f"{where}: PSNR must be a number or 'lo:hi', got {value!r}")
    if isinstance(value, (int, float)):
        return ("fixed", float(value))
    if isinstance(value, str) and ":" in value:
        lo, _, hi = value.partition(":")
        value = [lo, hi]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            lo, hi = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            raise SpaceError(f"{where}: PSNR range must be two numbers 'lo:hi', got {value!r}") from None
        if lo > hi:
            raise SpaceError(f"{where}: PSNR range {lo}:{hi} has lo > hi")
        return ("range", lo, hi)
    raise SpaceError(f"{where}: PSNR must be a number (dB) or a range 'lo:hi', got {value!r}")


def _check_value(key, value, where):
    if key == "psnr":
        parse_psnr(value, where)
    elif key == "stage":
        if not isinstance(value, str) or not value:
            raise SpaceError(f"{where}: stage must be a stage name, got {value!r}")
    elif key in INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpaceError(f"{where}: expected a non-negative integer, got {value!r}")
    elif key in SEARCH_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise SpaceError(f"{where}: expected a non-negative number, got {value!r}")
        if key == "lr" and value <= 0:
            raise SpaceError(f"{where}: lr must be > 0, got {value!r}")


def validate_spec(key, spec, source):
    """Check one entry; return it normalised ({kind: args} or a fixed value)."""
    where = _where(source, key)
    if not isinstance(key, str):
        raise SpaceError(f"{source}: keys must be strings, got {key!r}")
    dotted = "." in key
    if dotted and not isinstance(spec, dict):
        return spec
    if not dotted and key not in SEARCH_KEYS and key not in META_KEYS:
        known = ", ".join(sorted(SEARCH_KEYS) + sorted(META_KEYS))
        raise SpaceError(f"{where} is unknown (known keys: {known}; or a dotted config key such as model.channels)")
    if not isinstance(spec, dict):
        _check_value(key, spec, where)
        return spec
    if len(spec) != 1:
        raise SpaceError(f"{where}: a spec has exactly one of {sorted(SPEC_KINDS)}, got {spec!r}")
    (kind, args), = spec.items()
    if kind not in SPEC_KINDS:
        raise SpaceError(f"{where}: unknown spec {kind!r} (use one of {sorted(SPEC_KINDS)})")
    if key in META_KEYS:
        raise SpaceError(f"{where}: {key} is fixed for a whole search (use a plain value)")
    if not isinstance(args, (list, tuple)) or not args:
        raise SpaceError(f"{where}: {kind} needs a non-empty list, got {args!r}")
    args = list(args)
    if kind in ("choice", "grid"):
        for a in args:
            _check_value(key, a, where)
            if key == "psnr" and isinstance(a, list):
                raise SpaceError(f"{where}: write PSNR ranges inside a choice as strings 'lo:hi', got {a!r}")
            if not isinstance(a, (int, float, str, type(None))):
                raise SpaceError(f"{where}: choice values must be numbers or strings, got {a!r}")
        return {kind: args}
    if key == "psnr" and kind != "uniform":
        raise SpaceError(f"{where}: psnr takes a fixed value, a choice or uniform")
    n = SPEC_KINDS[kind]
    if len(args) != n or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        raise SpaceError(f"{where}: {kind} needs {n} numbers, got {args!r}")
    if args[0] >= args[1]:
        raise SpaceError(f"{where}: {kind} needs lo < hi, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise SpaceError(f"{where}: loguniform needs lo > 0, got {args!r}")
    if key in INT_KEYS and kind != "randint":
        raise SpaceError(f"{where}: {key} is an integer; use a fixed value, choice or randint")
    if dotted:
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            raise SpaceError(f"{where}: randint needs integers, got {args!r}")
        return {kind: args}
    if kind == "randint" and key not in INT_KEYS:
        raise SpaceError(f"{where}: randint is for integer keys ({', '.join(sorted(INT_KEYS))})")
    if kind != "randint" and key != "psnr":
        _check_value(key, args[0], where)
    return {kind: args}


def load_space_file(path):
    p = Path(path)
    if not p.is_file():
        raise SpaceError(f"search-space file {path} does not exist")
    try:
        data = yaml_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpaceError(f"search-space file {path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpaceError(f"search-space file {path} must hold a mapping key: spec, got {type(data).__name__}")
    return {k: validate_spec(k, v, str(path)) for k, v in data.items()}


_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)


def parse_override(text):
    """'key=spec' from the command line -> (key, normalised spec)."""
    if "=" not in text:
        raise SpaceError(f"command-line override {text!r}: expected key=spec")
    key, _, rhs = text.partition("=")
    key = key.strip()
    m = _CALL.match(rhs)
    if m and m.group(1) in SPEC_KINDS:
        try:
            args = yaml_load(f"[{m.group(2)}]")
        except yaml.YAMLError as e:
            raise SpaceError(f"command line: key {key!r}: cannot parse {rhs!r}: {e}") from None
        spec = {m.group(1): args}
    else:
        try:
            spec = yaml_load(rhs) if rhs.strip() else None
        except yaml.YAMLError as e:
            raise SpaceError(f"command line: key {key!r}: cannot parse {rhs!r}: {e}") from None
        if spec is None:
            raise SpaceError(f"command line: key {key!r} has no value")
    return key, validate_spec(key, spec, "command line")


def build_space(space_file, overrides):
    space = load_space_file(space_file)
    for text in overrides:
        k, v = parse_override(text)
        space[k] = v
    return space


def is_searched(spec):
    return isinstance(spec, dict)


def has_grid(space):
    return any(is_searched(v) and "grid" in v for v in space.values())


def to_tune(space):
    """Normalised space -> Ray Tune param_space (fixed values pass through)."""
    from ray import tune

    out = {}
    for k, spec in space.items():
        if not is_searched(spec):
            out[k] = spec
            continue
        (kind, args), = spec.items()
        out[k] = {"choice": lambda a: tune.choice(a), "grid": lambda a: tune.grid_search(a), "uniform": lambda a: tune.uniform(*a),
                  "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a),
                  "quniform": lambda a: tune.quniform(*a)}[kind](args)
    return out


def flat_params(params):
    """A trial's params as Tune reports them back (dotted keys may come back nested: {"cvae": {"kl_weight": ..}})
    -> flat {"cvae.kl_weight": ..}."""
    out = {}
    for k, v in (params or {}).items():
        if isinstance(v, dict) and not (len(v) == 1 and next(iter(v)) in SPEC_KINDS):
            out.update({f"{k}.{k2}": v2 for k2, v2 in flat_params(v).items()})
        else:
            out[k] = v
    return out


def config_overrides(params):
    """A sampled trial config (short keys) -> load_config override strings."""
    ovs = []
    for k, v in params.items():
        if k in META_KEYS:
            continue
        if k == "psnr":
            p = parse_psnr(v)
            if p[0] == "fixed":
                ovs += [f"train.psnr={p[1]}", "train.psnr_range=null"]
            else:
                ovs += [f"train.psnr_range=[{p[1]}, {p[2]}]"]
            continue
        target = SEARCH_KEYS.get(k, k)
        ovs.append(f"{target}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
    return ovs
