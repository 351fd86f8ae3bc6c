"""The per-worker loop of a Ray Train run: the plain-PyTorch ``pycompgen.training.fit`` on this worker's shard.

Each worker loads the cached face array, reads its own shard (rank::world for validation, a seeded
``DistributedSampler`` for training), wraps the trainable networks for DDP with ``ray.train.torch.prepare_model``
and runs the edge channel and the losses on its device. After every epoch all workers call ``ray.train.report``;
rank 0 attaches a checkpoint directory holding ``checkpoint.pt`` (this epoch) and ``best.pt`` (best validation
SSIM so far) and logs the epoch to MLflow. On a restart (a worker died, or ``--resume``) the loop continues from
``ray.train.get_checkpoint()``.

Fault injection for tests and drills (``loop_config["fault"]``, filled from PYCOMPGEN_FAULT_* by the driver):
worker ``rank`` exits (``os._exit``) or raises after the first step of epoch ``epoch`` (1-based), once: the marker
file records that it happened.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + world, ... (an exact partition: no padding, for validation)."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


class FaultInjector:
    """Kills or fails one worker mid-epoch, once (see the module docstring)."""

    def __init__(self, fault: Optional[dict], rank: int):
        self.fault = fault or {}
        self.rank = rank

    def active(self, epoch: int) -> bool:
        f = self.fault
        return bool(f) and int(f.get("epoch", 0)) == epoch + 1 and int(f.get("rank", 0)) == self.rank

    def fire(self, epoch: int) -> None:
        marker = self.fault.get("marker")
        if marker:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return  # already happened once
            os.write(fd, f"epoch {epoch + 1} rank {self.rank} pid {os.getpid()}\n".encode())
            os.close(fd)
        # Ray Train V2 registers a report when its controller next polls the workers
        # (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S); wait so the failure lands mid-epoch, after the last report counted.
        time.sleep(float(self.fault.get("delay_s", 0.0)))
        msg = f"injected fault: worker rank {self.rank} in epoch {epoch + 1}"
        print(msg, flush=True)
        if self.fault.get("mode", "exit") == "raise":
            raise RuntimeError(msg)
        os._exit(1)


class _FaultyLoader:
    """A DataLoader view that lets ``FaultInjector`` fire after the first step of an epoch."""

    def __init__(self, loader, injector: FaultInjector):
        self.loader, self.injector = loader, injector
        self.sampler = loader.sampler
        self.batch_sampler = loader.batch_sampler

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        epoch = int(getattr(self.sampler, "epoch", 0))
        fire = self.injector.active(epoch)
        for i, batch in enumerate(self.loader):
            yield batch
            if fire and i == 0:
                self.injector.fire(epoch)


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _node_ids(world: int) -> list:
    import ray
    import torch.distributed as dist
    me = ray.get_runtime_context().get_node_id()
    if world > 1 and dist.is_available() and dist.is_initialized():
        nodes = [None] * world
        dist.all_gather_object(nodes, me)
        return nodes
    return [me]


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train's ``train_loop_per_worker`` (see the module docstring). ``loop_config`` keys: ``config``
    (Config.to_dict()), ``init`` ({net: state_dict}) or ``init_checkpoint`` (path), ``tracking``
    ({"uri", "run_id", "grid_every"}) or None, ``fault`` or None, ``threads`` (torch threads per worker)."""
    import ray.train
    import ray.train.torch
    from torch.utils.data import DataLoader, DistributedSampler

    from pycompgen.config import Config
    from pycompgen.training import EpochShuffleSampler, fit, load_checkpoint, save_checkpoint, train_subset_indices

    torch.set_num_threads(max(1, int(loop_config.get("threads") or 1)))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    cfg = Config.from_dict(loop_config["config"])
    cfg.train.progress = False  # per-epoch lines come from the driver / MLflow, not interleaved tqdm bars
    nodes = _node_ids(world)

    # -- data: this worker's shard of the cached faces ---------------------------------------------------------------
    t = cfg.train
    from pycompgen.systems import get_system
    system_cls = get_system(cfg.model.name)  # System.datasets: the face data unless the system supplies its own
    train_set, val_set = system_cls.datasets(cfg, "train"), system_cls.datasets(cfg, "val")
    if world > 1:
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=t.seed)
    else:
        sampler = EpochShuffleSampler(len(train_set), t.seed)  # same order as a single-process run
    per_worker = max(1, math.ceil(t.batch_size / world))  # train.batch_size is the global batch
    lkw = dict(num_workers=t.num_workers, persistent_workers=t.num_workers > 0,
               pin_memory=device.type == "cuda")
    train_loader = DataLoader(train_set, batch_size=per_worker, sampler=sampler, **lkw)
    val_loader = DataLoader(val_set, batch_size=per_worker, sampler=ShardSampler(len(val_set), rank, world), **lkw)
    sub = train_subset_indices(len(train_set), len(val_set), t.train_subset, t.seed)  # validated beside val
    sub_loader = (DataLoader(torch.utils.data.Subset(train_set, sub), batch_size=per_worker,
                             sampler=ShardSampler(len(sub), rank, world), **lkw) if sub else None)
    if loop_config.get("fault"):
        train_loader = _FaultyLoader(train_loader, FaultInjector(loop_config["fault"], rank))

    # -- state: restart from Ray's latest checkpoint, else previous-step weights -----------------------------------
    local = Path(tempfile.mkdtemp(prefix="pycompgen-rank0-")) if rank == 0 else None
    best_file = local / BEST_NAME if local else None
    resume_state, init = None, loop_config.get("init")
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as cdir:
            resume_state = load_checkpoint(os.path.join(cdir, CHECKPOINT_NAME), expect_model=cfg.model.name)
            if best_file is not None and os.path.isfile(os.path.join(cdir, BEST_NAME)):
                shutil.copyfile(os.path.join(cdir, BEST_NAME), best_file)
        if resume_state.get("stage") != t.stage:
            raise ValueError(f"Ray checkpoint is from stage {resume_state.get('stage')!r}, not {t.stage!r}")
    elif init is None and loop_config.get("init_checkpoint"):
        init = load_checkpoint(loop_config["init_checkpoint"], expect_model=cfg.model.name)["models"]
    start_epoch = int(resume_state["epoch"]) if resume_state else 0
    if rank == 0 and resume_state is not None:
        print(f"[pycompgen] {t.stage}: restored from Ray checkpoint at epoch {start_epoch}", flush=True)

    # -- MLflow (rank 0 only) -------------------------------------------------------------------------------------
    logger = None
    tracking = loop_config.get("tracking")
    if rank == 0 and tracking:
        try:
            from pycompgen.tracking import EpochLogger
            from pycompgen.tracking.artifacts import sample_batch
            logger = EpochLogger(tracking["uri"], tracking["run_id"], grid_every=tracking.get("grid_every", 5),
                                 sample_batch=sample_batch(cfg, val_set))
            logger.cl.set_tag(tracking["run_id"], "pycompgen.worker_nodes", ",".join(nodes))
            # one value per (re)start: where this attempt picked up (0 = from scratch)
            logger.cl.log_metric(tracking["run_id"], "start_epoch", start_epoch, step=start_epoch)
        except Exception as e:  # tracking must not take the training down
            print(f"[pycompgen] warning: MLflow logging disabled on rank 0 ({type(e).__name__}: {e})", flush=True)
            logger = None

    def on_epoch_end(epoch: int, metrics: dict, state: dict) -> None:
        nonlocal logger
        scalars = _scalars(metrics)
        scalars["images_per_s_worker"] = scalars.get("images_per_s", 0.0)
        if scalars.get("train_time_s"):
            scalars["images_per_s"] = scalars.get("train_images", 0) / scalars["train_time_s"]
        report = dict(scalars, epoch=epoch + 1, start_epoch=start_epoch, world_size=world,
                      worker_nodes=",".join(nodes), stage=t.stage)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_checkpoint(os.path.join(tmp, CHECKPOINT_NAME), state)
                if metrics.get("is_best") or not best_file.is_file():
                    shutil.copyfile(os.path.join(tmp, CHECKPOINT_NAME), best_file)
                shutil.copyfile(best_file, os.path.join(tmp, BEST_NAME))
                if logger is not None:
                    try:
                        logger.log_epoch(epoch + 1, scalars, state, step_logs=metrics.get("step_logs"))
                    except Exception as e:
                        print(f"[pycompgen] warning: MLflow logging failed, continuing without it "
                              f"({type(e).__name__}: {e})", flush=True)
                        logger = None
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(report, checkpoint=checkpoint)

    wrap = (lambda m: ray.train.torch.prepare_model(m)) if world > 1 else (lambda m: m.to(device))
    fit(cfg, device=device, train_loader=train_loader, val_loader=val_loader, init=init,
        resume_state=resume_state, wrap_module=wrap, on_epoch_end=on_epoch_end, rank=rank,
        train_eval_loader=sub_loader)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)


__all__ = ["train_loop_per_worker", "ShardSampler", "FaultInjector", "CHECKPOINT_NAME", "BEST_NAME"]
