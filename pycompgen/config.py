"""Run configuration: dataclasses, YAML loading and ``key=value`` overrides.

Defaults follow the Compgen paper (Sec. 3): Adam, lr 1e-3, batch 100, step 1 for 50 epochs, approaches for 40,
distortion d = 0.5(1 - SSIM) (w_ssim = 1, w_l1 = w_mse = w_latent = 0).
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from pycompgen import registry

# Sections beyond the systems' own (``register_section``): name -> dataclass, reachable as ``cfg.<name>``. A system's
# own section (``cvae.kl_weight``, ...) is its class attribute ``section``, read from the registry.
SECTIONS: dict[str, type] = {}


def _check_section(name: str, cls: type) -> None:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"config section {name!r} must be a dataclass")
    if name in {f.name for f in dataclasses.fields(Config)}:
        raise ValueError(f"config section {name!r} clashes with a built-in section")


HINT_SPACES = ("rgb", "ycocg420")  # pycompgen.codec.hint.SPACES (the codec sits beside config, not below it)


def check_hint(m, image_size: int) -> None:
    """model.hint_size / hint_bits: a thumbnail no larger than h's H/4 grid that divides the image; bits 1..8."""
    bits = m.hint_bits if isinstance(m.hint_bits, (list, tuple)) else [m.hint_bits]
    if not (1 <= int(m.hint_size) <= min(image_size // 4, 64) and image_size % int(m.hint_size) == 0):
        raise ValueError(f"model.hint_size must divide data.image_size and be at most image_size/4 and 64 "
                         f"({min(image_size // 4, 64)}), got {m.hint_size}")
    if not bits or any(not isinstance(b, int) or not 1 <= b <= 8 for b in bits):
        raise ValueError(f"model.hint_bits must be a list of integers in 1..8, got {m.hint_bits!r}")
    space = getattr(m, "hint_space", "rgb")
    if space not in HINT_SPACES:
        raise ValueError(f"model.hint_space must be one of {', '.join(HINT_SPACES)}, got {space!r}")
    if space == "ycocg420" and int(m.hint_size) % 2:
        raise ValueError(f"model.hint_space=ycocg420 halves the chroma: model.hint_size must be even, got {m.hint_size}")


def register_section(name: str, cls: type) -> None:
    _check_section(name, cls)
    SECTIONS[name] = cls


def _system(name: str):
    return registry.get_system(name)


def _sections() -> dict:
    systems = registry.sections()
    for name, cls in systems.items():  # SECTIONS were checked by register_section
        _check_section(name, cls)
    return {**systems, **SECTIONS}


@dataclass
class ModelConfig:
    name: str = "compgen"            # a system of pycompgen.registry (pycompgen train --system NAME)
    num_res: int = 2                 # residual network blocks (paper: num_res)
    num_mult: int = 2                # residual blocks per network block (paper: num_mult)
    channels: int = 128              # width of f/g at the residual stage (first conv uses channels // 2)
    latent_channels: int = 16        # y has latent_channels x H/8 x W/8 values (16x8x8 = 1024 for 64x64)
    norm: str = "batch"              # normalisation in f/g: "batch" | "none"
    elm_channels: int = 64           # ELM conv width
    elm_num_res: int = 2             # ELM residual blocks (with BatchNorm)
    elm_norm: str = "batch"          # h's normalisation: "batch" (paper) | "group" (per image) | "none"
    elm_hidden: int = 1024           # FC1 width
    elm_dropout: float = 0.0         # dropout on h's FC input and hidden layer (beyond the paper: regularisation)
    elm_skips: bool = False          # beyond the paper: gated skip features from h's convs into g (see ELM)
    elm_skip_blocks: int = 0         # residual blocks on each skip path before its gate (with elm_skips)
    hint_size: int = 0               # beyond the paper: h also takes a hint_size^2 RGB thumbnail (0: edges only)
    hint_bits: list[int] = field(default_factory=lambda: [4])  # the thumbnail's bits per value; training draws one per
    # image from the list, files use the largest (a zoo entry's --quality picks one)
    hint_space: str = "rgb"          # the hint's colour space: "rgb" | "ycocg420" (luma at hint_size, chroma at half)
    entropy_bottleneck: bool = False  # step 1 also trains an entropy bottleneck "eb" on y (a real latent bitstream)


@dataclass
class DataConfig:
    path: Optional[str] = None       # None / "synthetic" -> synthetic faces; a CelebA root; or any face folder
    image_size: int = 64
    cache_dir: Optional[str] = None
    canny_low: float = 0.30          # Canny hysteresis thresholds on [0, 1] intensities (pycompgen.data defaults:
    canny_high: float = 0.60         # ~10-20 % edge pixels on 64x64 faces)
    blur_sigma: Optional[float] = None
    synthetic_count: int = 512
    # training-time augmentation (pycompgen.data.augment; Compgen: edge maps are made from the augmented face)
    augment_flip: bool = False       # horizontal flips
    augment_shift: float = 0.0       # max shift, fraction of the side
    augment_scale: float = 0.0       # max relative zoom
    augment_rotate: float = 0.0      # max rotation (degrees)
    augment_jitter: float = 0.0      # brightness / contrast / saturation factors in [1 -/+ jitter]
    train_limit: int = 0             # train on this many faces of the training split (pycompgen.data.limit_faces:
                                     # nested fixed subsets, for learning curves over data size); 0 = all


@dataclass
class TrainConfig:
    stage: Optional[str] = None      # None -> the system's first stage (Compgen: step1 | approach1 | approach2 | approach3)
    epochs: Optional[int] = None     # None -> paper default for the stage (50 step1, 40 approaches)
    stage_epochs: Optional[dict[str, int]] = None  # per-stage budgets, e.g. {pretrain: 30, cycle: 5}: a stage
                                                   # named here gets these epochs ahead of train.epochs
    batch_size: int = 100
    lr: float = 1e-3
    w_ssim: float = 1.0
    w_l1: float = 0.0
    w_mse: float = 0.0
    w_latent: float = 0.0            # approach 3: + w_latent * MSE(y_hat, f(x)) with frozen f
    w_adv: float = 0.0               # approach 3, beyond the paper: + w_adv * hinge loss of a critic d(z_noisy, x_hat)
    rate_weight: float = 0.0         # step 1 with model.entropy_bottleneck: + rate_weight * bits per pixel of y
    psnr: Optional[float] = 50.0     # fixed training channel PSNR (dB); ignored when psnr_range is set
    psnr_range: Optional[list[float]] = None  # [lo, hi]: per-image PSNR drawn uniformly (dB)
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    max_steps_per_epoch: Optional[int] = None
    max_val_batches: Optional[int] = None
    val_every: int = 1
    init: Optional[str] = None       # checkpoint whose weights initialise the stage (e.g. step1's best.pt)
    approach3_init: str = "approach1"  # approach 3 starts h from approach 1 ("approach1") or fresh ("fresh")
    amp: str = "auto"                # bfloat16 autocast of the forward passes (losses stay float32): "auto" = where
                                     # the device computes bf16 natively (CPU AVX512-BF16/AMX, CUDA sm_80+); "bf16"; "off"
    channels_last: str = "auto"      # channels_last memory format for the networks: "auto" (= with bf16), "on", "off"
    progress: bool = True
    # GAN craft (pycompgen.systems.base); None = the system's default (System.train_defaults)
    select: Optional[str] = None     # "METRIC[:min|max]" that picks best.pt (and that Ray Tune optimises); None =
                                     # the stage's own (val_ssim for codecs, BEGAN: val_m_global:min)
    ema_decay: Optional[float] = None  # exponential moving average of the system's generators (System.ema_networks),
                                       # used for validation, figures and export; 0 = off
    ema_networks: Optional[list[str]] = None  # which networks get an EMA (None = the system's ema_networks)
    lr_schedule: Optional[str] = None  # "none" | "step" (x lr_gamma every lr_step epochs) | "plateau" (x lr_gamma
                                       # when lr_metric has not improved for lr_patience validations)
    lr_gamma: float = 0.5
    lr_step: int = 10
    lr_patience: Optional[int] = None  # None = the system's (2 unless it says otherwise)
    lr_min: float = 0.0
    lr_metric: Optional[str] = None  # plateau metric "METRIC[:min|max]" (None = the selection metric)
    weight_decay: float = 0.0        # decoupled (AdamW) weight decay of the default optimiser's weight matrices
    train_subset: int = 1000         # a fixed subset of training faces (at most the validation set's size)
                                     # validated beside val each epoch: trainsub_ssim, gap_ssim (0 = off)
    grad_clip: float = 0.0           # clip each optimiser's gradient norm to this (0 = off)
    fp32_networks: Optional[list[str]] = None  # networks run in float32 under bf16 autocast (e.g. a critic with
                                               # a gradient penalty); None = the system's ([] unless it says)


TRAIN_FALLBACKS = {"ema_decay": 0.0, "lr_schedule": "none", "lr_patience": 2, "fp32_networks": []}


def parse_metric(spec: str, key: str = "train.select") -> tuple[str, str]:
    """"val_m_global:min" -> ("val_m_global", "min"); a bare name means "max" for SSIM/PSNR-like metrics
    (val_ssim, val_psnr, val_ms_ssim, ...) and "min" otherwise (losses)."""
    name, _, mode = str(spec).partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{key} must be METRIC[:min|max], got {spec!r}")
    if not mode:
        mode = "max" if any(t in name for t in ("ssim", "psnr", "f1", "acc")) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"{key} must be METRIC[:min|max], got {spec!r}")
    return name, mode


@dataclass
class EvalConfig:
    psnrs: list[float] = field(default_factory=lambda: [50.0, 25.0, 10.0, 0.0, -2.0, -5.0])
    split: str = "val"
    batch_size: int = 100
    max_images: Optional[int] = None
    seed: int = 0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str = "runs/compgen"

    def __post_init__(self):
        self.__dict__["sections"] = {name: cls() for name, cls in _sections().items()}

    def __getattr__(self, name):  # system sections: cfg.cvae, cfg.dcgan, ...
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- conversions ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Built-in sections, plus the active system's own section (if it has one)."""
        d = dataclasses.asdict(self)
        if self.model.name in self.sections:
            d[self.model.name] = dataclasses.asdict(self.sections[self.model.name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        cfg = cls()
        _merge(cfg, d or {}, prefix="")
        cfg.validate()
        return cfg

    def flatten(self) -> dict:
        out = {}

        def walk(obj, prefix):
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                key = prefix + f.name
                if dataclasses.is_dataclass(v):
                    walk(v, key + ".")
                else:
                    out[key] = copy.deepcopy(v)
        walk(self, "")
        if self.model.name in self.sections:
            walk(self.sections[self.model.name], self.model.name + ".")
        return out

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    def epochs_for(self, stage: Optional[str] = None) -> int:
        system = _system(self.model.name)
        stage = stage or self.train.stage or system.pipeline()[0]
        if self.train.stage_epochs and stage in self.train.stage_epochs:
            return self.train.stage_epochs[stage]
        if self.train.epochs is not None:
            return self.train.epochs
        return system.get_stage(stage).epochs

    def validate(self) -> "Config":
        t, m, d = self.train, self.model, self.data
        system = _system(m.name)
        if t.stage is None:
            t.stage = system.pipeline()[0]
        if t.stage not in system.stages:
            raise ValueError(f"train.stage must be one of {', '.join(system.stages)} for system {m.name!r}, "
                             f"got {t.stage!r}")
        t.amp = {"true": "bf16", "bfloat16": "bf16", "false": "off", "fp32": "off", "float32": "off"}.get(
            str(t.amp).lower(), str(t.amp).lower())
        if t.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"train.amp must be auto, bf16 or off, got {t.amp!r}")
        t.channels_last = {"true": "on", "false": "off"}.get(str(t.channels_last).lower(), str(t.channels_last).lower())
        if t.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"train.channels_last must be auto, on or off, got {t.channels_last!r}")
        if t.approach3_init not in ("approach1", "fresh"):
            raise ValueError(f"train.approach3_init must be 'approach1' or 'fresh', got {t.approach3_init!r}")
        if t.psnr_range is not None:
            if len(t.psnr_range) != 2 or t.psnr_range[0] > t.psnr_range[1]:
                raise ValueError(f"train.psnr_range must be [lo, hi] with lo <= hi, got {t.psnr_range!r}")
        elif t.psnr is None:
            raise ValueError("set train.psnr (fixed dB) or train.psnr_range ([lo, hi] dB)")
        for name in ("batch_size", "val_every"):
            if getattr(t, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(t, name)}")
        if t.epochs is not None and t.epochs < 0:
            raise ValueError(f"train.epochs must be >= 0, got {t.epochs}")
        for k, v in (t.stage_epochs or {}).items():
            if k not in system.stages:
                raise ValueError(f"train.stage_epochs names stage {k!r}, not a stage of {m.name!r} "
                                 f"({', '.join(system.stages)})")
            if v < 0:
                raise ValueError(f"train.stage_epochs[{k}] must be >= 0, got {v}")
        if t.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {t.lr}")
        for k, v in system.train_defaults.items():  # the system's GAN-craft defaults for keys left at None
            if getattr(t, k) is None:
                setattr(t, k, copy.deepcopy(v))
        for k, v in TRAIN_FALLBACKS.items():  # and the harness's own for keys no system set
            if getattr(t, k) is None:
                setattr(t, k, copy.deepcopy(v))
        if not 0.0 <= t.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
        if t.lr_schedule not in ("none", "step", "plateau"):
            raise ValueError(f"train.lr_schedule must be none, step or plateau, got {t.lr_schedule!r}")
        if not 0.0 < t.lr_gamma <= 1.0:
            raise ValueError(f"train.lr_gamma must be in (0, 1], got {t.lr_gamma}")
        for name in ("lr_step", "lr_patience"):
            if getattr(t, name) < 1 - (name == "lr_patience"):
                raise ValueError(f"train.{name} must be >= {1 - (name == 'lr_patience')}, got {getattr(t, name)}")
        if t.weight_decay < 0 or t.train_subset < 0:
            raise ValueError(f"train.weight_decay and train.train_subset must be >= 0, got {t.weight_decay}, "
                             f"{t.train_subset}")
        if d.train_limit < 0:
            raise ValueError(f"data.train_limit must be >= 0 (0: every training face), got {d.train_limit}")
        if not 0.0 <= m.elm_dropout < 1.0:
            raise ValueError(f"model.elm_dropout must be in [0, 1), got {m.elm_dropout}")
        if m.hint_size:
            check_hint(m, d.image_size)
        from pycompgen.data.augment import Augment
        Augment.from_config(d).check()
        if t.lr_min < 0 or t.grad_clip < 0:
            raise ValueError(f"train.lr_min and train.grad_clip must be >= 0, got {t.lr_min}, {t.grad_clip}")
        for key in ("select", "lr_metric"):
            if getattr(t, key) is not None:
                parse_metric(getattr(t, key), f"train.{key}")
        for name in ("w_ssim", "w_l1", "w_mse", "w_latent", "w_adv", "rate_weight"):
            if getattr(t, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(t, name)}")
        if t.w_ssim + t.w_l1 + t.w_mse <= 0:
            raise ValueError("the distortion needs a positive weight: w_ssim, w_l1 or w_mse")
        for name in ("num_res", "num_mult", "elm_num_res"):
            if getattr(m, name) < 0:
                raise ValueError(f"model.{name} must be >= 0, got {getattr(m, name)}")
        for name in ("channels", "latent_channels", "elm_channels", "elm_hidden"):
            if getattr(m, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(m, name)}")
        if m.channels < 2:
            raise ValueError("model.channels must be >= 2")
        if m.norm not in ("batch", "none"):
            raise ValueError(f"model.norm must be 'batch' or 'none', got {m.norm!r}")
        if m.elm_skip_blocks < 0 or (m.elm_skip_blocks and not m.elm_skips):
            raise ValueError(f"model.elm_skip_blocks must be >= 0 and needs model.elm_skips=true, got "
                             f"{m.elm_skip_blocks} with elm_skips={m.elm_skips}")
        if m.elm_norm not in ("batch", "group", "none"):
            raise ValueError(f"model.elm_norm must be 'batch', 'group' or 'none', got {m.elm_norm!r}")
        if d.image_size < 16 or d.image_size % 8:
            raise ValueError(f"data.image_size must be a multiple of 8 and >= 16, got {d.image_size}")
        section = self.sections.get(m.name)
        if section is not None and hasattr(section, "validate"):
            section.validate(self)
        return self


# -- type-checked merging ---------------------------------------------------------------------------------------
def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), True
    return tp, False


def _coerce(value: Any, tp, key: str):
    base, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"config key {key!r} cannot be null")
    origin = typing.get_origin(base)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} expects a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(base) or (Any, Any)
        return {_coerce(k, k_tp, f"{key} key"): _coerce(v, v_tp, f"{key}[{k}]") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {key!r} expects a list, got {value!r}")
        (item_tp,) = typing.get_args(base)[:1] or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if base is Any:
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key {key!r} expects true/false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"config key {key!r} expects an integer, got {value!r}")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" and "inf" as strings
            text = value.strip().lower().replace(".inf", "inf")
            try:
                return float(text)
            except ValueError:
                pass
        raise ValueError(f"config key {key!r} expects a number, got {value!r}")
    if base is str:
        if isinstance(value, bool):  # e.g. train.amp=true (YAML reads it as a boolean)
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ValueError(f"config key {key!r} expects a string, got {value!r}")
    raise ValueError(f"config key {key!r}: unsupported type {base!r}")


def _hints(obj):
    return typing.get_type_hints(type(obj))


def _merge(obj, d: dict, prefix: str):
    if not isinstance(d, dict):
        raise ValueError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {d!r}")
    hints = _hints(obj)
    names = {f.name for f in dataclasses.fields(obj)}
    sections = obj.sections if isinstance(obj, Config) else {}
    for k, v in d.items():
        key = prefix + str(k)
        if k in sections:
            _merge(sections[k], v, key + ".")
            continue
        if k not in names:
            known = sorted([prefix + n for n in names] + list(sections))
            raise ValueError(f"unknown config key {key!r} (known: {', '.join(known)})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            _merge(cur, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, hints[k], key))


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted key (``"model.num_res"``) with type checking; unknown keys raise ValueError naming them."""
    parts = key.split(".")
    nested: Any = value
    for p in reversed(parts):
        nested = {p: nested}
    _merge(cfg, nested, prefix="")


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value (e.g. model.num_res=3)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError as e:
        raise ValueError(f"override {item!r}: cannot parse value ({e})") from None
    return key, value


def apply_overrides(cfg: Config, overrides: Optional[list[str]]) -> Config:
    for item in overrides or []:
        key, value = parse_override(item)
        set_value(cfg, key, value)
    return cfg.validate()


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``key=value`` overrides."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(p) as fh:
            try:
                d = yaml.safe_load(fh) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"config file {path}: invalid YAML ({e})") from None
        _merge(cfg, d, prefix="")
    return apply_overrides(cfg, overrides)


__all__ = ["Config", "ModelConfig", "DataConfig", "TrainConfig", "EvalConfig", "parse_metric",
           "SECTIONS", "register_section",
           "load_config", "apply_overrides", "set_value", "parse_override"]
