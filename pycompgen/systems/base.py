"""The training harness's view of a system: networks, optimisers, extra state and one ``train_step``.

A system (one paper's model family) subclasses ``System`` and declares its stages. A stage names the networks it
uses, the ones it trains (the rest are frozen: ``requires_grad=False``, ``eval()``, not in any optimiser) and the
ones that must come from an earlier stage. ``train_step(batch)`` may update several optimisers in turn (a
discriminator step per generator step, n critic steps per generator step); everything else -- epochs, validation,
checkpoints, resume, DDP wrapping, Ray Train, Ray Tune, MLflow -- is the harness's and stays system-agnostic.

Conventions:
- ``self.models``: the raw networks (what checkpoints hold); ``self.nets``: the same, with the trainable ones
  wrapped by ``wrap_module`` (DDP). Forward passes that should synchronise gradients use ``self.nets``; a frozen
  network, or a network used only to pass gradients to another one, uses ``self.models``.
- ``self.optimizers``: {name: optimizer}; ``self.extra``: state that must be checkpointed (floats, ints, tensors).
- Batches are dicts made by ``prepare_batch`` from the loader's uint8 images; ``x`` is always the image in [0, 1].
- ``validation_step`` returns {"loss": scalar, "x_hat": images in [0, 1]}; the harness computes SSIM and PSNR of
  ``x_hat`` against ``batch["x"]`` and keeps the checkpoint with the best value of the stage's selection metric
  (``StageSpec.select``, or ``train.select``; Ray Tune optimises the same metric: ``System.selection``).

GAN craft the harness gives every system (``train.*`` keys; a system sets its defaults in ``train_defaults``):
- ``ema_decay``: an exponential moving average of ``ema_networks`` (the generators), updated after every
  ``train_step``, checkpointed beside the raw weights (``payload["ema"]``, restored on resume) and used for
  validation, figures and export (``pycompgen.models`` loads the EMA weights where a checkpoint has them).
- ``lr_schedule``: ``step`` or ``plateau`` (on ``lr_metric``, default the selection metric) for every optimiser,
  stepped once per epoch by ``fit``; scheduler state checkpointed and restored.
- ``grad_clip``: each optimiser's gradient norm clipped in ``step``.
- ``fp32_networks``: networks whose forward runs in float32 under bf16 autocast (a critic with a gradient penalty).
"""
from __future__ import annotations

import copy
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
from torch import nn


def adam(params, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with torch's fused kernel where every parameter allows it (CPU or CUDA floating point): one pass over
    all parameters instead of a chain of per-tensor ops (on 2 CPU cores the foreach step took ~3.3 ms of a ~50 ms
    bf16 approach-3 step of Compgen; the fused one ~0.7 ms for 1.9 M parameters). Same update rule.
    ``weight_decay`` > 0: AdamW's decoupled decay on weight matrices and kernels (dim >= 2), none on biases and
    normalisation scales."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if weight_decay > 0:
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": float(weight_decay)},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas),
                                 fused=fused or None)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=fused or None)


@dataclass(frozen=True)
class StageSpec:
    name: str
    uses: tuple           # networks of this stage (saved in its checkpoint)
    trainable: tuple      # networks updated by the optimisers (everything else in ``uses`` is frozen)
    requires: tuple = ()  # networks that must come from a previous stage (``init``)
    epochs: int = 10      # default epoch count (``train.epochs`` overrides)
    description: str = ""
    select: tuple = ("val_ssim", "max")  # validation metric (and direction) that picks the stage's best.pt


def _float32_forward(self, *args, **kwargs):
    """A network's forward with autocast off and floating inputs in float32 (``train.fp32_networks``)."""
    args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
    with torch.autocast(args[0].device.type if args and torch.is_tensor(args[0]) else "cpu", enabled=False):
        return type(self).forward(self, *args, **kwargs)


def force_float32(module: nn.Module) -> nn.Module:
    """Run ``module`` in float32 even inside a bf16 autocast region (state dict unchanged; a deepcopy keeps it)."""
    module.forward = types.MethodType(_float32_forward, module)
    return module


def load_net(name: str, module: nn.Module, sd: dict, source: str) -> None:
    """``module.load_state_dict(sd)`` with a one-line error naming the network and where the weights came from."""
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(f"weights for network {name!r} from {source} do not fit the configured model "
                         f"(different widths/depths or data.image_size?): "
                         f"{first[1].strip() if len(first) > 1 else first[0]}") from None


def image_batch(batch, image_size: int) -> torch.Tensor:
    """The (N, 3, image_size, image_size) image tensor of a loader batch (a tensor, dict or tuple), checked."""
    if isinstance(batch, dict):
        batch = batch.get("image", batch.get("x"))
    elif isinstance(batch, (list, tuple)):
        batch = batch[0]
    if not torch.is_tensor(batch) or batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"the data loader must yield (N, 3, H, W) image batches, got "
                         f"{getattr(batch, 'shape', type(batch).__name__)}")
    if tuple(batch.shape[-2:]) != (image_size, image_size):
        raise ValueError(f"the data yields {batch.shape[-2]}x{batch.shape[-1]} images but "
                         f"data.image_size={image_size}")
    return batch


def images01(batch, image_size: int, device) -> torch.Tensor:
    """Loader batch (uint8 or float (N,3,H,W)) -> float images in [0, 1] on ``device``."""
    batch = image_batch(batch, image_size)
    x = batch.to(device, non_blocking=True)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CPU: AVX512-BF16 or AMX; CUDA: compute capability >= 8.0)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def resolve_precision(train_cfg, device: torch.device) -> tuple[str, bool]:
    """(``"bf16"`` | ``"off"``, channels_last) for ``train.amp`` / ``train.channels_last`` on ``device``."""
    amp = train_cfg.amp
    if amp == "auto":
        amp = "bf16" if native_bf16(device) else "off"
    cl = train_cfg.channels_last
    return amp, (cl == "on" or (cl == "auto" and amp == "bf16"))


FIELD_RULES: dict = {">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0,
                     "in [0, 1]": lambda v: 0 <= v <= 1,
                     "two numbers in [0, 1)": lambda b: len(b) == 2 and all(0 <= x < 1 for x in b)}


def check_fields(section: str, obj, rule: str, *keys: str) -> None:
    """Raise ``ValueError("<section>.<key> must be <rule>, got <value>")`` for the first of ``keys`` of the config
    section ``obj`` that breaks ``rule`` (a key of ``FIELD_RULES``)."""
    ok = FIELD_RULES[rule]
    for k in keys:
        v = getattr(obj, k)
        if not ok(v):
            raise ValueError(f"{section}.{k} must be {rule}, got {v}")


def latent_rate(eb, y: torch.Tensor, rate_weight: float, pixels: int):
    """The entropy bottleneck on a latent y (Ballé et al., factorised prior; ``pycompgen.codec.entropy``).

    Returns (ŷ for the decoder, estimated bits per pixel, the rate term of the loss). Training: ŷ = y + U(-½, ½);
    the rate fits the density model and, with ``rate_weight`` λ > 0, also pushes the encoder (λ·bpp); with λ = 0 the
    encoder sees the quantisation noise but no rate gradient. Eval: ŷ = y rounded (what a decoder gets from a file).
    Computed in float32 (also under autocast). ``eb`` may be DDP-wrapped."""
    from pycompgen.codec.entropy import EntropyBottleneck
    y = y.float()
    with torch.autocast(y.device.type, enabled=False):
        y_hat, lik = eb(y if rate_weight > 0 else y.detach())
    if rate_weight <= 0:
        y_hat = y + (y_hat - y.detach())
    bpp = EntropyBottleneck.rate_bits(lik) / pixels
    return y_hat, bpp, (rate_weight if rate_weight > 0 else 1.0) * bpp


class System:
    """Base class of a trainable system for one stage (see the module docstring)."""

    name: ClassVar[str] = ""
    stages: ClassVar[dict] = {}        # {stage name: StageSpec}, in pipeline order
    description: ClassVar[str] = ""
    section: ClassVar[Optional[type]] = None  # dataclass of the system's own hyper-parameters (cfg.<name>)
    psnr_sweep: ClassVar[bool] = False       # whether pycompgen.evaluation's channel-PSNR sweep applies
    step_log_keys: ClassVar[tuple] = ()      # train_step scalars also logged every step (MLflow), e.g. BEGAN's k_t
    ema_networks: ClassVar[tuple] = ()       # networks that get an EMA when train.ema_decay > 0 (generators)
    train_defaults: ClassVar[dict] = {}      # the system's values for train.* keys left at None (e.g. ema_decay)
    architecture: ClassVar[tuple] = ()       # cfg.<name> fields that shape the networks (train.init checks them)

    # -- construction -------------------------------------------------------------------------------------------------
    def __init__(self, cfg, device, init: Optional[dict] = None, *, resume_state: Optional[dict] = None,
                 wrap_module: Callable[[nn.Module], nn.Module] = lambda m: m):
        self.cfg = cfg
        self.device = torch.device(device)
        self.spec: StageSpec = self.stage_spec(cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)
            built = self.build_networks(cfg)
        missing = [k for k in self.spec.uses if k not in built]
        if missing:
            raise ValueError(f"system {self.name!r} has no network(s) {missing} needed by stage {self.spec.name!r}")
        self.models: dict[str, nn.Module] = {k: built[k] for k in self.spec.uses}
        init = self.filter_init(dict(init or {}))
        if resume_state is None:
            lacking = [k for k in self.spec.requires if k not in init]
            if lacking:
                raise ValueError(self.missing_init_message(lacking))
            for k, sd in init.items():
                if k in self.models:
                    load_net(k, self.models[k], sd, "train.init")
        for k, m in self.models.items():
            m.to(self.device)
            trainable = k in self.spec.trainable
            for p in m.parameters():
                p.requires_grad_(trainable)
            m.train(trainable)
        if resume_state is not None:
            for k in self.spec.uses:
                if k not in resume_state.get("models", {}):
                    raise ValueError(f"resume checkpoint has no network {k!r} for stage {self.spec.name!r}")
                load_net(k, self.models[k], resume_state["models"][k], "the resume checkpoint")
        self.amp, self.channels_last = resolve_precision(cfg.train, self.device)
        if self.channels_last:
            for m in self.models.values():
                m.to(memory_format=torch.channels_last)
        for k in self._named(cfg.train.fp32_networks, "train.fp32_networks", self.spec.uses):
            force_float32(self.models[k])
        self.ema: dict[str, nn.Module] = {}
        self.ema_steps = 0
        if cfg.train.ema_decay:
            names = self.ema_networks if cfg.train.ema_networks is None else cfg.train.ema_networks
            for k in self._named(names, "train.ema_networks", self.spec.trainable, lenient=cfg.train.ema_networks
                                 is None):
                self.ema[k] = copy.deepcopy(self.models[k]).requires_grad_(False).eval()
        self.extra: dict = self.initial_extra()
        self.optimizers: dict[str, torch.optim.Optimizer] = self.configure_optimizers()
        self.schedulers: dict = self.configure_schedulers()
        if resume_state is not None:
            self.load_training_state(resume_state)
        self.nets = {k: (wrap_module(m) if k in self.spec.trainable else m) for k, m in self.models.items()}
        self.train_mode()

    def _named(self, names, key: str, allowed, lenient: bool = False) -> list:
        """``names`` checked against ``allowed`` (a one-line error naming ``key``; ``lenient``: drop the others)."""
        names = list(names or ())
        bad = [k for k in names if k not in allowed]
        if bad and not lenient:
            raise ValueError(f"{key}: stage {self.spec.name!r} of {self.name!r} has no such network(s) {bad} "
                             f"(networks: {', '.join(allowed)})")
        return [k for k in names if k in allowed]

    # -- what a system declares ---------------------------------------------------------------------------------------
    @classmethod
    def selection(cls, cfg) -> tuple:
        """(metric, "min" | "max") that picks best.pt for ``cfg.train.stage`` and that Ray Tune optimises:
        ``train.select`` if set, else the stage's ``StageSpec.select``."""
        if cfg.train.select:
            from pycompgen.config import parse_metric
            return parse_metric(cfg.train.select)
        return tuple(cls.get_stage(cfg.train.stage or cls.pipeline()[0]).select)

    @classmethod
    def get_stage(cls, stage: str) -> StageSpec:
        if stage not in cls.stages:
            raise ValueError(f"unknown stage {stage!r} for system {cls.name!r} "
                             f"(expected one of {', '.join(cls.stages)})")
        return cls.stages[stage]

    @classmethod
    def stage_spec(cls, cfg) -> StageSpec:
        """The spec of ``cfg.train.stage`` (a system may add optional networks that its config switches on)."""
        return cls.get_stage(cfg.train.stage)

    @classmethod
    def pipeline(cls) -> tuple:
        """Stages in the order ``--stage pipeline`` runs them."""
        return tuple(cls.stages)

    @classmethod
    def build_networks(cls, cfg) -> dict:
        raise NotImplementedError

    @classmethod
    def handover(cls, cfg, stage: str, models_of: Callable[[str], Optional[dict]]) -> Optional[dict]:
        """Initial weights of ``stage`` in a pipeline: ``models_of(earlier_stage)`` gives that stage's best weights
        ({net: state_dict}) or None. Default: every earlier stage's networks, later stages winning."""
        init: dict = {}
        for s in cls.pipeline():
            if s == stage:
                break
            m = models_of(s)
            if m is None:
                raise ValueError(f"pipeline stage {stage!r} of {cls.name!r} needs stage {s!r} first")
            init.update(m)
        return init or None

    @classmethod
    def prerequisites(cls, cfg, stage: str) -> list:
        """Stages that must run before ``stage`` when it is trained alone (e.g. in a Tune trial): by default every
        earlier stage of the pipeline; each hands its checkpoint to the next."""
        order = cls.pipeline()
        return list(order[:order.index(cls.get_stage(stage).name)])

    @classmethod
    def datasets(cls, cfg, split: str):
        """The dataset of ``split`` ("train" | "val") that the harness's loaders read (``make_loaders``, the Ray
        worker). Default: the face data (``pycompgen.data.load_faces``: uint8 (3, H, W) items). A system with other
        data (e.g. two unpaired domains) overrides this; items go through ``prepare_batch`` / ``example_batch``.
        ``data.train_limit`` keeps a fixed subset of the training split (``pycompgen.data.limit_faces``)."""
        from pycompgen.data import limit_faces, load_faces
        d = cfg.data
        faces = load_faces(d.path, split, image_size=d.image_size, cache_dir=d.cache_dir,
                           synthetic_count=d.synthetic_count, seed=cfg.train.seed)
        return limit_faces(faces, d.train_limit) if split == "train" and d.train_limit else faces

    def filter_init(self, init: dict) -> dict:
        return init

    def missing_init_message(self, lacking: list) -> str:
        return (f"stage {self.spec.name!r} of {self.name!r} needs trained network(s) {', '.join(lacking)} from a "
                f"previous stage: set train.init=PATH to that stage's best.pt or run the pipeline (--stage pipeline)")

    def initial_extra(self) -> dict:
        return {}

    def configure_optimizers(self, exclude: tuple = ()) -> dict:
        """Default: one Adam over every trainable network at ``train.lr`` (AdamW with ``train.weight_decay``);
        networks named in ``exclude`` are left to a subclass's own optimiser (e.g. a critic)."""
        params = [p for k in self.spec.trainable if k not in exclude for p in self.models[k].parameters()]
        return {"main": adam(params, lr=self.cfg.train.lr, weight_decay=self.cfg.train.weight_decay)}

    def configure_schedulers(self) -> dict:
        """{optimiser name: scheduler} for ``train.lr_schedule`` (none: {}); stepped once per epoch by ``fit``."""
        t = self.cfg.train
        if t.lr_schedule == "step":
            return {k: torch.optim.lr_scheduler.StepLR(o, step_size=t.lr_step, gamma=t.lr_gamma)
                    for k, o in self.optimizers.items()}
        if t.lr_schedule == "plateau":
            _, mode = self.plateau_metric()
            return {k: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode=mode, factor=t.lr_gamma,
                                                                  patience=t.lr_patience, min_lr=t.lr_min)
                    for k, o in self.optimizers.items()}
        return {}

    def plateau_metric(self) -> tuple:
        if self.cfg.train.lr_metric:
            from pycompgen.config import parse_metric
            return parse_metric(self.cfg.train.lr_metric, "train.lr_metric")
        return self.selection(self.cfg)

    def schedule_step(self, metrics: dict) -> None:
        """End of an epoch: step every scheduler (plateau: only after a validation that gave its metric)."""
        if self.cfg.train.lr_schedule == "plateau":
            key, _ = self.plateau_metric()
            if key not in metrics:
                return
            for s in self.schedulers.values():
                s.step(float(metrics[key]))
        else:
            for s in self.schedulers.values():
                s.step()

    def prepare_batch(self, batch, generator: torch.Generator) -> dict:
        return {"x": images01(batch, self.cfg.data.image_size, self.device)}

    def train_step(self, batch: dict) -> dict:
        """One optimisation step (possibly several optimisers); returns detached logs with a scalar "loss"."""
        raise NotImplementedError

    def validation_step(self, batch: dict) -> dict:
        """{"loss": scalar tensor, "x_hat": reconstruction in [0, 1]} with ``self.models`` in eval mode."""
        raise NotImplementedError

    # -- inference (class level: used on networks rebuilt from a checkpoint) ------------------------------------------
    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        """The stage's output image in [0, 1] from ``batch`` (eval-mode ``models``)."""
        raise NotImplementedError

    @classmethod
    def latent(cls, models: dict, x: torch.Tensor) -> torch.Tensor:
        """The latent y that a file carries for image x (systems with an entropy bottleneck "eb")."""
        return models["f"](x)

    @classmethod
    def input_key(cls, stage: str) -> str:
        """The batch entry ``reconstruct`` reads ("x": an image (N,3,H,W); Compgen's approaches: "z_noisy")."""
        return "x"

    @classmethod
    def example_batch(cls, cfg, x_uint8: torch.Tensor, generator: torch.Generator) -> dict:
        """A CPU batch of ``x_uint8`` (N,3,H,W) as training sees it (for sample grids)."""
        return {"x": x_uint8.float() / 255.0}

    # -- helpers for train steps --------------------------------------------------------------------------------------
    def autocast(self):
        """bfloat16 autocast of forward passes when ``train.amp`` resolves to bf16 (losses are computed in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16")

    def step(self, loss: torch.Tensor, optimizer: str = "main", inputs: Optional[list] = None) -> None:
        """zero_grad, backward, step of one optimiser. ``inputs``: accumulate gradients only into these tensors
        (e.g. a generator's parameters when its loss passes through a discriminator)."""
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=inputs)
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                           self.cfg.train.grad_clip)
        opt.step()

    # -- generator EMA ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_ema(self) -> None:
        """After a train step: ema ← d·ema + (1 − d)·model with d = min(ema_decay, (1 + n)/(10 + n)) (a short
        warm-up, so early averages are not dominated by the random start); buffers (BatchNorm) are copied."""
        if not self.ema:
            return
        self.ema_steps += 1
        d = min(self.cfg.train.ema_decay, (1.0 + self.ema_steps) / (10.0 + self.ema_steps))
        for k, e in self.ema.items():
            m = self.models[k]
            ep = [p for p in e.parameters() if p.is_floating_point()]
            mp = [p.detach() for p in m.parameters() if p.is_floating_point()]
            torch._foreach_lerp_(ep, mp, 1.0 - d)
            for eb, mb in zip(e.buffers(), m.buffers()):
                eb.copy_(mb)

    @contextmanager
    def ema_weights(self):
        """Within: ``self.models[k]`` is the EMA copy of each averaged network (validation, figures)."""
        saved = {k: self.models[k] for k in self.ema}
        self.models.update(self.ema)
        try:
            yield
        finally:
            self.models.update(saved)
            for e in self.ema.values():
                e.eval()

    @staticmethod
    def requires_grad(module: nn.Module, flag: bool) -> None:
        for p in module.parameters():
            p.requires_grad_(flag)

    # -- modes and state ----------------------------------------------------------------------------------------------
    def train_mode(self) -> None:
        for k, m in self.models.items():
            m.train(k in self.spec.trainable)
        for k in self.spec.trainable:
            self.nets[k].train()

    def eval_mode(self) -> None:
        for m in self.models.values():
            m.eval()
        for m in self.nets.values():
            m.eval()

    def model_state(self) -> dict:
        return {k: m.state_dict() for k, m in self.models.items()}

    def load_training_state(self, state: dict) -> None:
        """Optimisers and extra state from a checkpoint payload (networks are loaded in ``__init__``)."""
        opts = state.get("optimizers")
        if opts is None and state.get("optimizer") and len(self.optimizers) == 1:  # format of pycompgen <= 0.1
            opts = {next(iter(self.optimizers)): state["optimizer"]}
        for k, sd in (opts or {}).items():
            if k not in self.optimizers:
                raise ValueError(f"resume checkpoint has optimiser {k!r}, which stage {self.spec.name!r} of "
                                 f"{self.name!r} lacks (optimisers: {sorted(self.optimizers)})")
            if sd:
                self.optimizers[k].load_state_dict(sd)
        for k, v in (state.get("extra") or {}).items():
            self.extra[k] = v.to(self.device) if torch.is_tensor(v) else v
        for k, sd in (state.get("schedulers") or {}).items():
            if k in self.schedulers:
                self.schedulers[k].load_state_dict(sd)
        ema = state.get("ema") or {}
        if self.ema:
            for k, e in self.ema.items():  # a run resumed with EMA newly on starts its average from the weights
                if k in ema.get("models", {}):
                    load_net(k, e, ema["models"][k], "the resume checkpoint's EMA")
                else:
                    e.load_state_dict(self.models[k].state_dict())
            self.ema_steps = int(ema.get("steps", 0))

    def payload(self, epoch: int, metrics: dict, best: float) -> dict:
        """The checkpoint payload (see pycompgen.models.checkpoint; ``save_checkpoint`` stamps its format)."""
        return {
            "model": self.name, "stage": self.spec.name, "epoch": int(epoch),
            "config": self.cfg.to_dict(), "models": self.model_state(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            **({"schedulers": {k: s.state_dict() for k, s in self.schedulers.items()}} if self.schedulers else {}),
            **({"ema": {"decay": float(self.cfg.train.ema_decay), "steps": self.ema_steps,
                        "models": {k: e.state_dict() for k, e in self.ema.items()}}} if self.ema else {}),
            "extra": {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in self.extra.items()},
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))},
            **self.best_fields(best),
        }

    def best_fields(self, best: float) -> dict:
        """{"best_metric", "best_value"} of the stage's selection metric, plus "best_val_ssim" when that metric is
        val_ssim (the name older payloads, summaries and MLflow charts use)."""
        key = self.selection(self.cfg)[0]
        fields = {"best_metric": key, "best_value": float(best)}
        if key == "val_ssim":
            fields["best_val_ssim"] = float(best)
        return fields


__all__ = ["System", "StageSpec", "load_net", "force_float32", "image_batch", "images01", "native_bf16", "resolve_precision", "latent_rate",
           "check_fields", "FIELD_RULES"]
