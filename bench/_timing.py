"""Timing helpers shared by the op benchmarks: median wall time over repeats after warm-up. The machine description
is ``pycompgen.evaluation.machine``'s."""
import statistics
import time

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_ms(fn, device: str = "cpu", repeats: int = 10, warmup: int = 2, min_time_s: float = 0.0) -> float:
    """Median milliseconds of fn() over `repeats` timed calls (at least min_time_s in total) after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start) < min_time_s:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def interleaved_median_ms(fns: dict, device: str = "cpu", repeats: int = 10, warmup: int = 2) -> dict:
    """Median milliseconds of each fn in fns, timed round-robin (one call of each per round) so that every
    implementation sees the same machine load when the machine is shared."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def run_module_main(run) -> None:
    """Command line of a bench/_bench_*.py module: print the rows of ``run(device, quick)``."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for r in run(a.device, a.quick):
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
