"""The one description of the machine a benchmark ran on: CPU model, cores, threads, torch, load average, device and
GPU, gathered here for every bench (``bench/*.py``).

The benches' result files carry this description under the keys they have always written, so committed results
keep their meaning; each shape below is one view of the same facts:

- ``machine_info(device)``: the op/judge/refiner benches' ``machine`` (date, command, python, torch, cpu_model,
  cpu_cores, torch_threads, load_average_at_start, device; gpu, cuda, driver on a GPU);
- ``runtime_info(device)``: the quality/sketch2face benches' ``machine_info`` (platform, python, torch, cpu_count,
  torch_threads, device, gpu on a GPU, the ops backend);
- ``machine_summary()``: the rd/train_speed benches' ``machine`` (cpu, cores, threads, torch);
- ``machine_name(device)``: the label in result file names (``cpu<N>``, ``gpu-<name>``).
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list | None:
    """The 1, 5 and 15 minute load averages, or None where the system has none."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda") and torch.cuda.is_available()


def gpu_name(device) -> str | None:
    """The GPU's name for a CUDA device (``torch.device`` or string), else None."""
    if not _is_cuda(device):
        return None
    d = torch.device(device)
    return torch.cuda.get_device_name(d if d.index is not None else 0)


def machine_name(device) -> str:
    """The machine label of result file names: ``gpu-<gpu name, lower case, dashes>`` on a GPU, else ``cpu<N>``."""
    name = gpu_name(device)
    if name is not None:
        return "gpu-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"cpu{os.cpu_count()}"


def machine_info(device) -> dict:
    """Date, command, python, torch, CPU model, cores, threads, load average now, device (and GPU, CUDA, driver)."""
    device = str(device)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_average(),
        "device": device,
    }
    if _is_cuda(device):
        info["gpu"] = gpu_name(device)
        info["cuda"] = torch.version.cuda
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def runtime_info(device) -> dict:
    """Platform, python, torch, cores, threads, device (and GPU), and which implementation of the ops runs."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if _is_cuda(device):
        info["gpu"] = gpu_name(device)
    try:
        import pycompgen.ops as ops
        info["ops"] = getattr(ops, "BACKEND", ops.ssim.__module__)
    except Exception as e:  # report, do not fail the benchmark
        info["ops"] = f"unavailable: {e}"
    return info


def machine_summary() -> dict:
    """CPU model, cores, torch threads and torch version."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def bench_header(benchmark: str, machine: str, script: str, load_start) -> dict:
    """The head of a benchmark's results file: its name, the machine (``machine_summary``), the command that ran
    ``script`` (a path relative to the repository) with this process's arguments, the UTC date and the load
    averages at ``load_start`` (``os.getloadavg()`` when it began) and now."""
    import shlex
    import time
    return {"benchmark": benchmark, "machine": machine, **machine_summary(),
            "command": "python " + " ".join(shlex.quote(a) for a in [script] + sys.argv[1:]),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": {"start": [round(x, 2) for x in load_start],
                             "end": [round(x, 2) for x in os.getloadavg()]}}
