"""Python side of the compiled ops: input validation, autograd and fake (meta) kernels for torch.ops.compgen."""
import os

import torch

# Debug switch: eager NaN/Inf (and other data-dependent) checks on accelerators, where each costs a device sync.
CHECK_FINITE_ENV = "PYCOMPGEN_CHECK_FINITE"


def eager_checks(device: torch.device) -> bool:
    """Whether data-dependent checks (NaN/Inf, an all-zero image, ...) run eagerly for tensors on ``device``.

    On the CPU they are free (no device to synchronise with), so always on. On CUDA each one reads a value back to
    the host, a synchronisation of the training hot path, so only with ``PYCOMPGEN_CHECK_FINITE=1``; without it the
    kernels propagate NaN into their outputs instead (docs/ops.md "Ops"). Never while torch.compile traces.
    """
    if torch.compiler.is_compiling():
        return False
    return device.type == "cpu" or os.environ.get(CHECK_FINITE_ENV, "0") == "1"
