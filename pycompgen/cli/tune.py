"""``pycompgen tune`` / ``python tune/search.py``: Ray Tune search over a system's hyper-parameters, compared in MLflow.

    python tune/search.py                      # embedded local Ray, synthetic faces, small search
    python tune/search.py --address auto --tracking-uri http://HOST:5000 --num-samples 32 --max-epochs 40

The default search space of each system is tune/spaces/<system>.yaml; the search itself is
``pycompgen.tune.search.run_search``.
"""
from __future__ import annotations

import argparse

from pycompgen.tune.search import SPACES, run_search


def parse_args(argv=None, prog: str = "tune/search.py"):
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Search-space overrides: key=spec, e.g. num_res='choice(1,2,3)' lr='loguniform(1e-4,1e-2)' "
               "psnr='\"0:50\"' model.channels=64 cvae.kl_weight='loguniform(1e-3,1e-1)' (see tune/spaces/).")
    p.add_argument("overrides", nargs="*", metavar="key=spec", help="search-space entries replacing the file's")
    p.add_argument("--system", default=None,
                   help="system to search (pycompgen.systems; default: --config's model.name, else compgen)")
    p.add_argument("--space", default=None, help=f"search-space YAML (default {SPACES}/<system>.yaml)")
    p.add_argument("--config", default=None, help="base training config YAML (pycompgen.config) under the space")
    p.add_argument("--data", default=None, help="face data (CelebA root or face folder); default synthetic faces")
    p.add_argument("--stage", default=None,
                   help="tuned stage (default: the space's 'stage', else the system's last stage; Compgen: "
                        "step1 | approach1 | approach2 | approach3)")
    p.add_argument("--ae-checkpoint", default=None,
                   help="trained step-1 checkpoint to start every trial from (then num_res/num_mult are fixed)")
    p.add_argument("--ae-epochs", type=int, default=6, help="epochs of the step-1 autoencoder each trial trains")
    p.add_argument("--num-samples", type=int, default=6, help="trials to run")
    p.add_argument("--max-epochs", type=int, default=6, help="epochs of the tuned stage (ASHA's max_t)")
    p.add_argument("--time-budget", type=float, default=None, help="stop the search after this many seconds")
    p.add_argument("--search-alg", choices=("optuna", "random"), default="optuna",
                   help="optuna (Ray Tune's OptunaSearch; random search when optuna is missing) or random")
    p.add_argument("--no-asha", action="store_true", help="run every trial to --max-epochs (no early stopping)")
    p.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers of each trial")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="concurrent trials (default: as many as the cluster's CPUs/GPUs hold)")
    p.add_argument("--address", default=None,
                   help="Ray cluster (auto, HOST:6379 or ray://HOST:10001); default: an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray (default: all)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db); "
                        "a tracking server (http://HOST:5000) is required for multi-node clusters")
    p.add_argument("--experiment", default="compgen-tune", help="MLflow experiment name")
    p.add_argument("--storage-path", default="runs/tune",
                   help="where Tune/Train keep results and checkpoints (a shared path or URI on clusters)")
    p.add_argument("--name", default=None, help="search name (folder under --storage-path; default search-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search --name (default: the latest one under --storage-path)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep-images", type=int, default=64, help="images of each trial's PSNR sweep")
    p.add_argument("--no-trial-sweep", action="store_true", help="skip the per-trial PSNR sweep")
    p.add_argument("--best-config", default=None, help="where to write best_config.yaml (default: in the search)")
    p.add_argument("--quiet", action="store_true",
                   help="less Ray output: trials' and workers' output stays in Ray's session logs")
    return p.parse_intermixed_args(argv)


def main(argv=None, prog: str = "tune/search.py") -> int:
    return run_search(parse_args(argv, prog))
