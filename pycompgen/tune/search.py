"""The search behind ``pycompgen tune`` / ``python tune/search.py`` (arguments: ``pycompgen.cli.tune``): Ray Tune search over num_res, num_mult, loss weights, lr and training PSNR.

Each trial is a Ray Train run of the project's fit() (pycompgen.distributed), ASHA stops weak trials on val SSIM,
Optuna (or random search) proposes configs, MLflow holds a parent run with one child run per trial.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from .space import SEARCH_KEYS, SpaceError, build_space, flat_params, is_searched

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"  # default space of each system: <name>.yaml
DEFAULT_SPACE = SPACES / "compgen.yaml"
SETTINGS_FILE = "search_settings.json"
PARENT_FILE = "mlflow_parent.json"
SUMMARY_KEYS = ("num_res", "num_mult", "w_ssim", "w_l1", "w_mse", "w_latent", "lr", "psnr")


def fail(msg, code=2):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# -- settings -----------------------------------------------------------------------------------------------------
def base_config(args, space, space_src):
    """The config every trial starts from: defaults, --config, --data, the space's fixed dotted keys."""
    from pycompgen.config import load_config

    ovs = [f"model.name={args.system}", "train.stage=null", "train.progress=false"]
    if args.data:
        data = args.data if args.data == "synthetic" or "://" in args.data else os.path.abspath(args.data)
        if data != "synthetic" and not os.path.exists(data):
            fail(f"--data {args.data}: no such folder")
        ovs.append(f"data.path={json.dumps(data)}")
    dotted = [(k, v) for k, v in space.items() if "." in k and not is_searched(v)]
    import yaml
    for k, v in dotted:
        ovs.append(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
    try:
        cfg = load_config(args.config, ovs)
    except (ValueError, FileNotFoundError) as e:
        keys = [k for k, _ in dotted if k in str(e)]
        where = f"{space_src}: key {keys[0]!r}: " if keys else ""
        fail(f"{where}{e}")
    return cfg


def new_settings(args, space, space_src, storage, name):
    from .trial import stage_chain, trial_config

    if args.num_samples < 1 or args.max_epochs < 1 or args.workers_per_trial < 1 or args.ae_epochs < 1:
        fail("--num-samples, --max-epochs, --ae-epochs and --workers-per-trial must be >= 1")
    cfg = base_config(args, space, space_src)
    from pycompgen.systems import get_system
    system = get_system(cfg.model.name)
    stage = args.stage or space.get("stage", system.pipeline()[-1])
    if is_searched(stage):
        fail(f"{space_src}: key 'stage': the tuned stage is fixed per search (use --stage)")
    if stage not in system.stages:
        fail(f"stage {stage!r} is not a stage of system {cfg.model.name!r} ({', '.join(system.stages)})")
    space["stage"] = stage
    if args.ae_checkpoint and "step1" not in system.stages:
        fail(f"--ae-checkpoint is a trained step-1 autoencoder of Compgen; system {cfg.model.name!r} has none")
    if args.ae_checkpoint:
        from pycompgen.models.checkpoint import load_checkpoint
        try:
            ck = load_checkpoint(args.ae_checkpoint, expect_model=cfg.model.name)
        except (ValueError, FileNotFoundError) as e:
            fail(f"--ae-checkpoint: {e}")
        if stage == "step1":
            fail("--ae-checkpoint makes no sense when tuning step1 itself")
        m = ck["config"]["model"]
        for k in ("num_res", "num_mult"):
            if is_searched(space.get(k)):
                print(f"[search] note: --ae-checkpoint fixes {k}={m[k]}; its search range is ignored", flush=True)
            space[k] = m[k]
        for k in ("channels", "latent_channels", "norm"):
            setattr(cfg.model, k, m[k])
        cfg.data.image_size = ck["config"]["data"]["image_size"]
    resources = {"CPU": args.cpus_per_worker}
    if args.gpus_per_worker:
        resources["GPU"] = args.gpus_per_worker
    settings = {
        "name": name, "storage_path": storage, "experiment_dir": os.path.join(storage, name), "stage": stage,
        "space": space, "base_config": cfg.to_dict(), "max_epochs": args.max_epochs, "ae_epochs": args.ae_epochs,
        "ae_checkpoint": os.path.abspath(args.ae_checkpoint) if args.ae_checkpoint else None,
        "workers_per_trial": args.workers_per_trial, "gpus_per_worker": args.gpus_per_worker,
        "resources_per_worker": resources, "num_samples": args.num_samples, "time_budget": args.time_budget,
        "search_alg": args.search_alg, "asha": not args.no_asha, "seed": args.seed, "psnrs": list(cfg.eval.psnrs),
        "sweep_images": args.sweep_images, "trial_sweep": not args.no_trial_sweep,
        "max_concurrent": args.max_concurrent, "experiment": args.experiment,
    }
    sel = cfg.copy()
    sel.train.stage = stage
    settings["metric"], settings["mode"] = system.selection(sel)  # what "best" means: the stage's best.pt metric
    # Validate the space against the config now (a bad value fails here, not inside a trial).
    sample = {k: (v if not is_searched(v) else _first(v)) for k, v in space.items()
              if "." not in k or is_searched(v)}
    try:
        trial_config(settings, sample)
    except ValueError as e:
        fail(f"{space_src}: {e}")
    chain = stage_chain(cfg, stage)
    settings["chain"] = [s for s in chain if s != "step1"] if args.ae_checkpoint else chain
    return settings


def _first(spec):
    (kind, a), = spec.items()
    if kind in ("choice", "grid"):
        return a[0]
    if kind == "randint":
        return a[0]
    return a[0] if kind != "loguniform" else math.sqrt(a[0] * a[1])


def saved_unfinished(exp_dir):
    """Trials Tune's saved experiment state still lists as running/pending (a search stopped by Ctrl-C)."""
    files = sorted(Path(exp_dir).glob("experiment_state-*.json")) if "://" not in exp_dir else []
    if not files:
        return []
    with open(files[-1]) as fh:
        state = json.load(fh)
    out = []
    for data in state.get("trial_data", []):
        t = json.loads(data[0]) if isinstance(data[0], str) else data[0]
        if t.get("status") in ("RUNNING", "PENDING", "PAUSED"):
            out.append(t.get("trial_id"))
    return out


def latest_search(storage):
    root = Path(storage)
    found = sorted((p for p in root.glob(f"*/{SETTINGS_FILE}")), key=lambda p: p.stat().st_mtime)
    return found[-1].parent.name if found else None


def write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
    os.replace(tmp, path)


# -- Ray / MLflow -------------------------------------------------------------------------------------------------
def init_ray(args):
    """Join --address or start an embedded local Ray (pycompgen.distributed.connect)."""
    from pycompgen.distributed import connect

    # Trials start two Train runs each: skip Train's per-run preemption-watcher actor and metrics exporter
    # (inherited by the embedded Ray's workers).
    for k in ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED"):
        os.environ.setdefault(k, "0")
    try:
        connect(args.address, num_cpus=args.num_cpus or os.cpu_count(), log_to_driver=not args.quiet)
    except RuntimeError as e:
        fail(str(e))
    import ray
    if args.quiet:
        logging.getLogger("ray").setLevel(logging.ERROR)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = ray.cluster_resources()
    print(f"[search] Ray: {'cluster ' + args.address if args.address else 'embedded local Ray'}, "
          f"{len(nodes)} node(s), {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU", flush=True)
    return nodes, res


def tracking_uri(args):
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the training runs' embedded store (runs/mlflow.db); checked
    before Ray starts (an unreachable server fails here, not after the first trial)."""
    from pycompgen.tracking import TrackingUnavailableError, preflight, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri, "runs")
    try:
        return preflight(uri)
    except TrackingUnavailableError as e:
        fail(str(e))


def warn_local_store(uri, args, nodes):
    from .tracking import is_local_store

    remote = bool(args.address) and (len(nodes) > 1 or args.address.startswith("ray://"))
    if remote and is_local_store(uri):
        bar = "!" * 100
        print(f"{bar}\nWARNING: MLflow store {uri} is a local file but the Ray cluster is multi-node/remote.\n"
              f"  A tracking server is required for multi-node runs: start `mlflow server --host 0.0.0.0 --port "
              f"5000 --backend-store-uri sqlite:///mlflow.db`\n  and pass --tracking-uri http://<host>:5000.\n{bar}",
              file=sys.stderr, flush=True)


def parent_run(settings, uri, resume):
    from . import tracking

    path = os.path.join(settings["experiment_dir"], PARENT_FILE)
    cl = tracking.client(uri)
    if resume and os.path.isfile(path):
        with open(path) as fh:
            saved = json.load(fh)
        if saved["tracking_uri"] == uri:
            cl.update_run(saved["run_id"], status="RUNNING")
            tracking.experiment_id(cl, settings["experiment"], uri)  # tags an experiment made before the kind tag
            return saved["experiment_id"], saved["run_id"]
        print(f"[search] note: resuming with another tracking store ({uri}); a new parent run is created",
              flush=True)
    exp_id = tracking.experiment_id(cl, settings["experiment"], uri)
    run = cl.create_run(exp_id, run_name=settings["name"],
                        tags={tracking.SEARCH_TAG: settings["name"], "pycompgen.tune.parent": "true"})
    rid = run.info.run_id
    params = {"search.stage": settings["stage"], "search.num_samples": settings["num_samples"],
              "search.max_epochs": settings["max_epochs"], "search.ae_epochs": settings["ae_epochs"],
              "search.search_alg": settings["search_alg"], "search.asha": settings["asha"],
              "search.workers_per_trial": settings["workers_per_trial"],
              "search.gpus_per_worker": settings["gpus_per_worker"], "search.storage": settings["experiment_dir"],
              "search.ae_checkpoint": settings["ae_checkpoint"], "search.chain": "->".join(settings["chain"])}
    params.update({f"space.{k}": json.dumps(v) for k, v in settings["space"].items()})
    tracking.log_params(cl, rid, params)
    write_json(path, {"tracking_uri": uri, "experiment_id": exp_id, "run_id": rid})
    return exp_id, rid


def search_algorithm(settings, n_conc):
    from .space import has_grid

    name = settings["search_alg"]
    if name == "optuna" and has_grid(settings["space"]):
        print("[search] note: the space has grid entries, which Optuna cannot take: using random search",
              flush=True)
        name = "random"
    if name == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
            import optuna  # noqa: F401
            return (OptunaSearch(metric=settings["metric"], mode=settings["mode"], seed=settings["seed"]),
                    "optuna (TPE)")
        except ImportError as e:
            print(f"[search] optuna is not importable ({e}); falling back to random search", flush=True)
    from ray.tune.search import BasicVariantGenerator
    return BasicVariantGenerator(random_state=settings["seed"], max_concurrent=n_conc), "random"


def concurrency(settings, res):
    if settings.get("max_concurrent"):
        return settings["max_concurrent"]
    w = settings["workers_per_trial"]
    n = int(res.get("CPU", 1) // max(w * settings["resources_per_worker"]["CPU"], 1e-9))
    if settings["gpus_per_worker"]:
        n = min(n, int(res.get("GPU", 0) // (w * settings["gpus_per_worker"])))
    if n < 1:
        fail(f"one trial needs {w} worker(s) x {settings['resources_per_worker']} but the cluster has "
             f"{res.get('CPU', 0):g} CPU / {res.get('GPU', 0):g} GPU")
    return n


def make_trainable(settings):
    from ray import tune
    from .trial import run_trial

    # The trial function only drives Ray Train runs (whose controller takes no CPU); the Train workers hold the
    # CPUs/GPUs. Tune needs a non-empty bundle, hence a token 1 MiB of memory instead of a whole CPU.
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings), {"cpu": 0, "memory": 1 << 20})


# -- reporting ----------------------------------------------------------------------------------------------------
def _fmt(v, digits=4):
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return "-" if v is None else str(v)


def table(headers, rows):
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def summarize(grid, settings):
    keys = [k for k in SUMMARY_KEYS if k in settings["space"]] + \
        [k for k, v in settings["space"].items() if "." in k and is_searched(v)]
    rows = []
    for r in grid:
        m = r.metrics or {}
        status = "error" if r.error else ("done" if "checkpoint" in m else "early-stopped")
        rows.append([m.get("trial_id", "?"), status] + [flat_params(r.config).get(k) for k in keys]
                    + [m.get("epoch"), m.get("val_ssim"), m.get("val_psnr"), m.get("sweep_ssim_0")])
    rows.sort(key=lambda row: -(row[-3] if isinstance(row[-3], float) else -1))
    return table(["trial", "status"] + keys + ["epochs", "val_ssim", "val_psnr", "ssim@0dB"], rows)


def best_config(settings, best):
    from .trial import trial_config

    cfg = trial_config(settings, flat_params(best.config))
    cfg.train.epochs = settings["max_epochs"]
    chain = settings["chain"]
    trial_dir = Path(settings["experiment_dir"]) / "trials" / best.metrics["trial_id"]
    prev = chain[chain.index(cfg.train.stage) - 1] if chain.index(cfg.train.stage) > 0 else None
    if prev and (trial_dir / f"{prev}.pt").is_file():
        cfg.train.init = str(trial_dir / f"{prev}.pt")  # the weights this trial's tuned stage started from
    elif prev is None and settings["ae_checkpoint"]:
        cfg.train.init = settings["ae_checkpoint"]
    return cfg


def run_search(args):
    """Run (or resume) the search described by the parsed ``pycompgen tune`` arguments; returns the exit code."""
    t0 = time.time()
    storage = args.storage_path if "://" in args.storage_path else os.path.abspath(args.storage_path)

    if args.resume:
        name = args.name or latest_search(storage)
        if not name:
            fail(f"--resume: no search found under {storage} (give --name)")
        sfile = os.path.join(storage, name, SETTINGS_FILE)
        if not os.path.isfile(sfile):
            fail(f"--resume: {sfile} does not exist (no search {name!r} under {storage})")
        with open(sfile) as fh:
            settings = json.load(fh)
        settings.setdefault("metric", "val_ssim")  # searches saved before systems named their metric
        settings.setdefault("mode", "max")
        print(f"[search] resuming {name} (search settings from {sfile}; search options on the command line "
              f"are ignored)", flush=True)
    else:
        name = args.name or "search-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        if args.system is None:  # the base config's system
            from pycompgen.config import load_config
            try:
                args.system = load_config(args.config).model.name if args.config else "compgen"
            except (ValueError, FileNotFoundError) as e:
                fail(f"--config: {e}")
        space_src = args.space or str(SPACES / f"{args.system}.yaml")
        if not args.space and not os.path.isfile(space_src):
            from pycompgen.systems import names
            fail(f"--system {args.system}: no default search space {space_src} (systems: {', '.join(names())}; "
                 f"or pass --space FILE)")
        try:
            space = build_space(space_src, args.overrides)
        except SpaceError as e:
            fail(str(e))
        settings = new_settings(args, space, space_src, storage, name)
        exp_dir = Path(settings["experiment_dir"])
        if (exp_dir / SETTINGS_FILE).exists():
            fail(f"search {name!r} already exists under {storage}: continue it with --resume or pick a new --name")
        exp_dir.mkdir(parents=True, exist_ok=True)
        write_json(exp_dir / SETTINGS_FILE, settings)

    uri = tracking_uri(args)
    from . import tracking

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    nodes, res = init_ray(args)
    warn_local_store(uri, args, nodes)
    print(f"[search] {name}: tuning {settings['stage']}; each trial = Ray Train runs of "
          f"{' -> '.join(settings['chain'])}"
          f"{' (from ' + settings['ae_checkpoint'] + ')' if settings['ae_checkpoint'] else ''}", flush=True)
    exp_id, parent_id = parent_run(settings, uri, args.resume)
    print(f"[search] MLflow: {uri}, experiment {settings['experiment']!r}, parent run {parent_id}", flush=True)

    from .resources import ReleaseStoppedTrialResources
    callbacks = [tracking.MlflowTrialCallback(uri, exp_id, parent_id, name, settings), ReleaseStoppedTrialResources()]
    trainable = make_trainable(settings)
    path = settings["experiment_dir"]
    if args.resume:
        if not tune.Tuner.can_restore(path):
            fail(f"--resume: {path} holds no Tune experiment state to restore (the search never started?)")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        n_conc = concurrency(settings, res)
        alg, alg_name = search_algorithm(settings, n_conc)
        asha = settings["asha"] and settings["max_epochs"] > 1
        # Rungs at epochs 1, 2, 4, ... below the last epoch: a trial that reaches the last epoch always finishes
        # (and gets its PSNR sweep); stop_last_trials=False keeps ASHA from stopping it at max_t.
        sched = (ASHAScheduler(time_attr="training_iteration", metric=settings["metric"], mode=settings["mode"],
                               max_t=settings["max_epochs"] - 1, grace_period=1, reduction_factor=2,
                               stop_last_trials=False) if asha else FIFOScheduler())
        print(f"[search] {settings['num_samples']} trials, search {alg_name}, "
              f"{'ASHA on ' + settings['metric'] if asha else 'no early stopping'}, up to {n_conc} at a time, "
              f"{settings['workers_per_trial']} worker(s) per trial", flush=True)
        from .space import to_tune
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune({k: v for k, v in settings["space"].items() if "." not in k or is_searched(v)}),
            tune_config=tune.TuneConfig(search_alg=alg, scheduler=sched, num_samples=settings["num_samples"],
                                        max_concurrent_trials=None if alg_name == "random" else n_conc,
                                        time_budget_s=settings["time_budget"]),
            run_config=tune.RunConfig(name=name, storage_path=settings["storage_path"], callbacks=callbacks,
                                      verbose=0),
        )
    grid = tuner.fit()

    cl = tracking.client(uri)
    unfinished = saved_unfinished(settings["experiment_dir"]) if not tracking.INTERRUPTED else ["?"]
    if unfinished:
        cl.set_terminated(parent_id, status="KILLED")
        print(f"\n[search] interrupted; finished trials are kept. Continue with:\n    python tune/search.py --resume --name {name} "
              f"--storage-path {storage}" + (f" --address {args.address}" if args.address else "")
              + (f" --tracking-uri {uri}" if args.tracking_uri else ""), flush=True)
        ray.shutdown()
        return 130
    print(f"\n[search] all trials ({len(grid)}):\n" + summarize(grid, settings), flush=True)
    metric, sign = settings["metric"], (1.0 if settings["mode"] == "max" else -1.0)
    done = [r for r in grid if r.error is None and r.metrics and metric in r.metrics]
    if not done:
        cl.set_terminated(parent_id, status="FAILED")
        errs = [str(r.error).splitlines()[0] for r in grid if r.error is not None]
        fail(f"no trial produced {metric} ({len(errs)} failed; first error: {errs[0] if errs else 'none'})", 1)
    # The best trial among those that ran all epochs (their final report names the model); ASHA-stopped trials
    # only compete when no trial finished.
    full = [r for r in done if "checkpoint" in r.metrics and math.isfinite(r.metrics[metric])] or done
    best = max(full, key=lambda r: sign * r.metrics[metric])
    cfg = best_config(settings, best)
    out = args.best_config or os.path.join(settings["experiment_dir"], "best_config.yaml")
    import yaml
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"# best trial {best.metrics['trial_id']} of search {name}: {metric} {best.metrics[metric]:.4f} "
                 f"({settings['mode']})\n")
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
    os.replace(tmp, out)

    keys = [k for k, v in settings["space"].items() if "." not in k or is_searched(v)]
    rows = [[k, flat_params(best.config)[k]] for k in keys] + [[k, best.metrics[k]] for k in
                                                 dict.fromkeys((metric, "val_ssim", "val_psnr", "epoch"))
                                                 if k in best.metrics]
    print(f"\n[search] best trial {best.metrics['trial_id']}:\n" + table(["", "value"], rows), flush=True)
    tracking.log_metrics(cl, parent_id, {f"best_{k}": best.metrics[k] for k in (metric, "val_ssim", "val_psnr")
                                         if k in best.metrics})
    cl.set_tag(parent_id, "pycompgen.tune.best_trial", best.metrics["trial_id"])
    cl.log_artifact(parent_id, out)

    # Best model: the project's PSNR sweep (AE row + the tuned stage over the channel PSNRs).
    trial_dir = Path(settings["experiment_dir"]) / "trials" / best.metrics["trial_id"]
    ckpts = {}
    if settings["stage"] != "step1" and cfg.train.init and "step1" in settings["chain"]:
        ckpts["ae"] = str(trial_dir / "step1.pt") if (trial_dir / "step1.pt").is_file() else None
    if (trial_dir / f"{settings['stage']}.pt").is_file():
        ckpts[settings["stage"]] = str(trial_dir / f"{settings['stage']}.pt")
    if settings["ae_checkpoint"]:
        ckpts["ae"] = settings["ae_checkpoint"]
    ckpts = {k: v for k, v in ckpts.items() if v}
    from pycompgen.systems import get_system
    if not get_system(cfg.model.name).psnr_sweep:
        print(f"[search] no channel-PSNR sweep for system {cfg.model.name!r}: the best model is "
              f"{ckpts.get(settings['stage'], '?')}", flush=True)
    else:
        try:
            from pycompgen.evaluation.sweep import format_pivot, sweep
            sweep_dir = os.path.join(settings["experiment_dir"], "best_sweep")
            sres = sweep(cfg, ckpts, psnrs=settings["psnrs"], out_dir=sweep_dir, split="val",
                         device="cpu" if not settings["gpus_per_worker"] else None)
            print(f"\n[search] PSNR sweep of the best model (val split, {sres['n_images']} images) -> {sweep_dir}\n"
                  + format_pivot(sres, "ssim", markdown=False), flush=True)
            from .trial import sweep_metrics
            tracking.log_metrics(cl, parent_id, {f"best_{k}": v for k, v in
                                                 sweep_metrics(sres, settings["stage"]).items()})
            cl.log_artifacts(parent_id, sweep_dir, artifact_path="best_sweep")
        except ImportError as e:
            print(f"[search] PSNR sweep skipped: pycompgen.evaluation is not available ({e})", flush=True)
    cl.set_terminated(parent_id, status="FINISHED")

    from .tracking import ui_lines
    print(f"\n[search] best config: {out}\n[search] results and checkpoints: {settings['experiment_dir']}\n"
          f"[search] MLflow: experiment {settings['experiment']!r}, parent run {parent_id} "
          f"({len(grid)} child runs)\n" + "".join(f"[search] {line}\n" for line in ui_lines(uri, exp_id))
          + f"[search] done in {time.time() - t0:.0f} s", flush=True)
    ray.shutdown()
    return 0
