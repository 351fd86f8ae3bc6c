"""Ray Train at the edge of training: ``pycompgen train --workers N`` and ``make_trainer`` for Ray Tune trials.

The training step stays plain PyTorch (pycompgen.training.fit); this package only shards the data, wraps the
networks for DDP, reports checkpoints and restarts from them.
"""
from .trainer import (DEFAULT_MAX_FAILURES, absolute_paths, connect, fault_from_env, make_trainer,
                      train_distributed)
from .worker import BEST_NAME, CHECKPOINT_NAME, ShardSampler, train_loop_per_worker

__all__ = ["make_trainer", "train_distributed", "train_loop_per_worker", "connect", "fault_from_env",
           "absolute_paths", "ShardSampler", "CHECKPOINT_NAME", "BEST_NAME", "DEFAULT_MAX_FAILURES"]
