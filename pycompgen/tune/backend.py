"""The tuner's link to the project's distributed training: a trial's steps are Ray Train runs built by
``pycompgen.distributed.make_trainer`` (the plain-PyTorch fit() on Ray Train workers)."""
from __future__ import annotations

import os


def build_trainer(cfg, *, num_workers, use_gpu, resources_per_worker, storage_path, name, init_checkpoint,
                  callbacks):
    from pycompgen.distributed import make_trainer

    return make_trainer(cfg, num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources_per_worker,
                        storage_path=storage_path, name=name, init_checkpoint=init_checkpoint, callbacks=callbacks)


def checkpoint_file(checkpoint_dir, best=False):
    """The project checkpoint inside a reported Ray Train checkpoint directory: the last epoch's
    (``checkpoint.pt``) or, with ``best``, the best validation SSIM so far (``best.pt``)."""
    from pycompgen.distributed import BEST_NAME, CHECKPOINT_NAME

    names = (BEST_NAME, CHECKPOINT_NAME) if best else (CHECKPOINT_NAME,)
    for name in names:
        p = os.path.join(checkpoint_dir, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"no {' or '.join(names)} in the Ray Train checkpoint {checkpoint_dir}")
