"""Plain-PyTorch training loop: ``train_one_epoch``, ``evaluate`` and ``fit`` (Ray wraps these, never forks them)."""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Optional

import torch
import torch.distributed as dist
from torch import nn

from pycompgen.ops import ssim
from pycompgen.systems import System, build_system
from pycompgen.metrics import image_psnr


def resolve_device(device) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but this torch has no CUDA device (use train.device=cpu)")
    return dev


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Shuffles with a permutation drawn from (seed, epoch): resumed runs see the same order as uninterrupted ones."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


def _seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed % (2 ** 63))


def _all_reduce(values: list[float], device) -> list[float]:
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()
    return values


def _common_keys(d: dict) -> list:
    """Sorted keys of ``d`` on every rank (a rank that saw no batch has none): the all-reduce needs one list."""
    keys = set(d)
    if dist.is_available() and dist.is_initialized():
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, sorted(keys))
        keys = set().union(*map(set, every))
    return sorted(keys)


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _n_batches(loader, limit):
    try:
        n = len(loader)
    except TypeError:
        return limit
    return min(n, limit) if limit is not None else n


def train_one_epoch(system: System, loader: Iterable, epoch: int, *, rank: int = 0, progress: bool = False) -> dict:
    """One pass over ``loader`` (at most ``train.max_steps_per_epoch`` batches) of ``system.train_step``. Batch
    randomness (e.g. channel noise) comes from a generator seeded by (seed, epoch, rank), so a resumed run repeats
    the uninterrupted one."""
    cfg = system.cfg
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    bsampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    if bsampler is not sampler and hasattr(bsampler, "set_epoch"):
        bsampler.set_epoch(epoch)
    key = (cfg.train.seed + 1) * 1_000_003 + epoch * 1009 + rank
    gen = _seeded_generator(system.device, key)
    torch.manual_seed(key)  # the global RNG too (e.g. a VAE's reparameterisation noise)
    limit = cfg.train.max_steps_per_epoch
    system.train_mode()
    total = torch.zeros((), dtype=torch.float64, device=system.device)
    logs_sum: dict = {}  # the system's other scalar logs (e.g. a GAN's loss_d), averaged per image
    per_step: dict = {k: [] for k in getattr(system, "step_log_keys", ())}  # logged every step (kept on device)
    count, steps = 0, 0
    t0 = time.perf_counter()
    name = system.spec.name
    bar = _progress(loader, _n_batches(loader, limit), f"{name} epoch {epoch + 1}", progress)
    for i, batch in enumerate(bar):
        if limit is not None and i >= limit:
            break
        b = system.prepare_batch(batch, gen)
        logs = system.train_step(b)
        system.update_ema()
        loss = logs["loss"]
        if i % 25 == 0 and not torch.isfinite(loss):  # occasional check: each one syncs an accelerator
            raise FloatingPointError(f"{name}: non-finite loss {loss.item()} at epoch {epoch + 1}, step {i + 1} "
                                     f"(lower train.lr?)")
        n = b["x"].shape[0]
        total += loss.double() * n
        for k, v in logs.items():
            if k != "loss" and torch.is_tensor(v) and v.dim() == 0:
                logs_sum[k] = logs_sum.get(k, 0.0) + v.detach().double() * n
        for k in per_step:
            if k in logs:
                per_step[k].append(torch.as_tensor(logs[k], dtype=torch.float64).detach().reshape(()))
        count += n
        steps += 1
        if progress and steps % 10 == 0:
            bar.set_postfix(loss=f"{total.item() / count:.4f}")
    if system.device.type == "cuda":
        torch.cuda.synchronize(system.device)
    secs = time.perf_counter() - t0
    keys = _common_keys(logs_sum)
    loss_sum, count_all, *rest = _all_reduce([total.item(), float(count)] + [float(logs_sum.get(k, 0.0))
                                                                              for k in keys], system.device)
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"{name}: non-finite training loss in epoch {epoch + 1} (lower train.lr?)")
    return {"train_loss": loss_sum / max(count_all, 1.0), "train_images": int(count_all), "train_steps": steps,
            "train_time_s": secs, "images_per_s": count / secs if secs > 0 else 0.0,
            **{f"train_{k}": v / max(count_all, 1.0) for k, v in zip(keys, rest)},
            **({"step_logs": {k: torch.stack(v).tolist() for k, v in per_step.items() if v}} if per_step else {})}


@torch.no_grad()
def evaluate(system: System, loader: Iterable, *, max_batches: Optional[int] = None, progress: bool = False) -> dict:
    """Validation: mean SSIM and PSNR of ``system.validation_step``'s reconstruction (Compgen step 1: g(f(x));
    approaches: g(h(z+n))) and its loss, with batch randomness from a fixed seed (comparable across epochs). With a
    generator EMA (``train.ema_decay``) validation runs the averaged networks."""
    with system.ema_weights():
        return _evaluate(system, loader, max_batches=max_batches, progress=progress)


def _evaluate(system: System, loader: Iterable, *, max_batches: Optional[int], progress: bool) -> dict:
    cfg = system.cfg
    system.eval_mode()
    gen = _seeded_generator(system.device, cfg.train.seed * 7919 + 424242)
    sums = torch.zeros(3, dtype=torch.float64, device=system.device)
    extra: dict = {}  # other scalars of validation_step (e.g. "bpp"), averaged per image
    count = 0
    bar = _progress(loader, _n_batches(loader, max_batches), f"{system.spec.name} val", progress)
    for i, batch in enumerate(bar):
        if max_batches is not None and i >= max_batches:
            break
        b = system.prepare_batch(batch, gen)
        out = system.validation_step(b)
        x_hat = out["x_hat"].float()
        n = b["x"].shape[0]
        sums[0] += ssim(x_hat, b["x"], reduction="none").double().sum()
        sums[1] += image_psnr(b["x"], x_hat).double().sum()
        sums[2] += out["loss"].double() * n
        for k, v in out.items():
            if k not in ("loss", "x_hat") and torch.is_tensor(v) and v.dim() == 0:
                extra[k] = extra.get(k, 0.0) + v.detach().double() * n
        count += n
    system.train_mode()
    keys = _common_keys(extra)
    s_ssim, s_psnr, s_loss, n_all, *rest = _all_reduce(sums.tolist() + [float(count)] +
                                                       [float(extra.get(k, 0.0)) for k in keys], system.device)
    if n_all == 0:
        return {}
    return {"val_ssim": s_ssim / n_all, "val_psnr": s_psnr / n_all, "val_loss": s_loss / n_all,
            "val_images": int(n_all), **{f"val_{k}": v / n_all for k, v in zip(keys, rest)}}


def train_subset_indices(n_train: int, n_val: int, size: int, seed: int = 0) -> list:
    """The fixed training faces validated beside val: ``min(size, n_val, n_train)`` indices of a permutation seeded
    by ``seed`` alone (the same faces every epoch, run and resume); [] when ``size`` is 0."""
    k = min(int(size), int(n_val), int(n_train))
    if k <= 0:
        return []
    g = torch.Generator().manual_seed(int(seed) * 9973 + 1729)
    return sorted(torch.randperm(int(n_train), generator=g)[:k].tolist())


def fit(cfg, *, device, train_loader, val_loader, init: Optional[dict] = None, resume_state: Optional[dict] = None,
        wrap_module: Callable[[nn.Module], nn.Module] = lambda m: m,
        on_epoch_end: Optional[Callable[[int, dict, dict], None]] = None, rank: int = 0,
        start_epoch: int = 0, train_eval_loader: Optional[Iterable] = None) -> dict:
    """Train stage ``cfg.train.stage`` of system ``cfg.model.name`` for ``cfg.epochs_for()`` epochs; returns the
    final metrics.

    ``init``: previous-step weights {"f": state_dict, ...}. ``resume_state``: a checkpoint payload to continue from
    (its ``epoch`` overrides ``start_epoch``). ``wrap_module`` wraps each trainable network (DDP). After every epoch
    ``on_epoch_end(epoch, metrics, state)`` gets the metrics and the full checkpoint payload (live tensors: save or
    copy it before returning). Progress bars only on rank 0 with ``train.progress``. ``train_eval_loader``: a fixed
    subset of the training faces (``train_subset_loader``) validated like ``val_loader`` at every validation, as
    ``trainsub_ssim`` / ``trainsub_psnr`` / ``trainsub_loss`` and the gap ``gap_ssim`` = trainsub_ssim - val_ssim.
    """
    device = resolve_device(device)
    cfg.validate()
    system = build_system(cfg, device, init, resume_state=resume_state, wrap_module=wrap_module)
    if rank == 0 and cfg.train.progress:
        print(f"{system.spec.name}: precision {'bfloat16 autocast' if system.amp == 'bf16' else 'float32'}"
              f"{', channels_last' if system.channels_last else ''} (train.amp={cfg.train.amp}, "
              f"train.channels_last={cfg.train.channels_last}, device {device})", flush=True)
    key, mode = system.selection(cfg)  # the metric that picks best.pt (and that Ray Tune optimises)
    sign = 1.0 if mode == "max" else -1.0
    best = -math.inf  # best sign * metric so far
    metrics: dict = {}
    if resume_state is not None:
        start_epoch = int(resume_state.get("epoch", 0))
        if resume_state.get("best_metric", "val_ssim") == key:  # older payloads: best_val_ssim only
            best = sign * float(resume_state.get("best_value", resume_state.get("best_val_ssim", -math.inf * sign)))
        metrics = dict(resume_state.get("metrics", {}))
    epochs = cfg.epochs_for()
    progress = bool(cfg.train.progress) and rank == 0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        lrs = {f"lr_{k}": o.param_groups[0]["lr"] for k, o in system.optimizers.items()}
        m = {"stage": system.spec.name, "epoch": epoch + 1, "epochs": epochs,
             "lr": next(iter(lrs.values()), cfg.train.lr), **(lrs if len(lrs) > 1 else {}),
             "precision": system.amp, "amp_bf16": float(system.amp == "bf16"),
             "channels_last": float(system.channels_last)}
        m.update(train_one_epoch(system, train_loader, epoch, rank=rank, progress=progress))
        if val_loader is not None and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == epochs):
            m.update(evaluate(system, val_loader, max_batches=cfg.train.max_val_batches, progress=False))
            if train_eval_loader is not None:
                tm = evaluate(system, train_eval_loader, max_batches=cfg.train.max_val_batches, progress=False)
                m.update({"trainsub_" + k[4:]: v for k, v in tm.items()})
                if "trainsub_ssim" in m and "val_ssim" in m:
                    m["gap_ssim"] = m["trainsub_ssim"] - m["val_ssim"]
        m["is_best"] = False
        if key in m and sign * m[key] > best:
            best = sign * m[key]
            m["is_best"] = True
        m.update(system.best_fields(sign * best))
        system.schedule_step(m)  # after this epoch's validation: the next epoch's learning rates
        m["epoch_time_s"] = time.perf_counter() - t0
        metrics = m
        if progress:
            from tqdm.auto import tqdm
            val = (f" val_ssim {m['val_ssim']:.4f} val_psnr {m['val_psnr']:.2f} dB" if "val_ssim" in m else "")
            val += f" (train subset {m['trainsub_ssim']:.4f})" if "trainsub_ssim" in m else ""
            tqdm.write(f"{system.spec.name} epoch {epoch + 1}/{epochs}: loss {m['train_loss']:.5f}{val} "
                       f"{m['images_per_s']:.0f} img/s")
        if on_epoch_end is not None:
            on_epoch_end(epoch, m, system.payload(epoch + 1, m, sign * best))
    return {**metrics, **system.best_fields(sign * best)}


__all__ = ["fit", "train_one_epoch", "evaluate", "resolve_device", "train_subset_indices",
           "EpochShuffleSampler"]
