"""tune/search.py: search-space validation, and real searches on a two-node Ray cluster (`ray start` on loopback)
tracked by a real `mlflow server` (fixtures in conftest.py).

The cluster tests run `python tune/search.py` as a user would (subprocess, --address, --tracking-uri) with a tiny
model on 32x32 synthetic faces, one epoch per step.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "tune" / "search.py"
TINY = ["data.image_size=32", "data.synthetic_count=64", "train.batch_size=32", "model.channels=8",
        "model.elm_channels=8", "model.elm_hidden=64", "model.latent_channels=4", "--max-epochs", "1",
        "--ae-epochs", "1", "--sweep-images", "16", "--search-alg", "random"]


# -- helpers (the Ray cluster and MLflow server fixtures are in conftest.py) ------------------------------------------
def stop_group(proc: subprocess.Popen, timeout=10) -> None:
    """Stop a search driver started with start_new_session=True and anything it spawned (its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def search_cmd(*args):
    return [sys.executable, str(SEARCH), *map(str, args)]


def run_search(args, cwd, timeout=420):
    r = subprocess.run(search_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    Path(cwd, "search.log").write_text(r.stdout + r.stderr)  # kept for failure analysis
    return r


def started_trials(out: str) -> list[str]:
    return [ln.split("trial ", 1)[1].split(" ", 1)[0] for ln in out.splitlines()
            if ln.startswith("[search] trial ") and " started:" in ln]


def runs_of(uri, experiment):
    from mlflow.tracking import MlflowClient
    cl = MlflowClient(tracking_uri=uri)
    exp = cl.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} not in MLflow"
    runs = cl.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("pycompgen.tune.parent") == "true"]
    return cl, parents, runs


def make_ae_checkpoint(path: Path) -> None:
    """A tiny trained step-1 autoencoder (one epoch, two steps) written as a project checkpoint."""
    from torch.utils.data import DataLoader

    from pycompgen.config import load_config
    from pycompgen.data import load_faces
    from pycompgen.training import fit, save_checkpoint

    cfg = load_config(None, ["data.image_size=32", "data.synthetic_count=64", "train.batch_size=32",
                             "model.channels=8", "model.latent_channels=4", "train.epochs=1", "train.device=cpu",
                             "train.progress=false", "train.max_steps_per_epoch=2"])
    tr = load_faces(None, "train", image_size=32, synthetic_count=64)
    va = load_faces(None, "val", image_size=32, synthetic_count=64)
    fit(cfg, device="cpu", train_loader=DataLoader(tr, batch_size=32), val_loader=DataLoader(va, batch_size=32),
        on_epoch_end=lambda e, m, state: save_checkpoint(path, state))


# -- search-space errors (no Ray) -----------------------------------------------------------------------------------
def _main_error(args, capsys):
    from pycompgen.cli.tune import main
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert e.value.code == 2
    return capsys.readouterr().err


def test_bad_space_file_names_file_and_key(tmp_path, capsys):
    bad = tmp_path / "space.yaml"
    bad.write_text("num_res: {choice: [1, 2]}\nnum_resblocks: 3\n")
    err = _main_error(["--space", bad, "--storage-path", tmp_path / "r"], capsys)
    assert str(bad) in err and "'num_resblocks'" in err and "unknown" in err

    bad.write_text("lr: {loguniform: [0, 1e-2]}\n")
    err = _main_error(["--space", bad, "--storage-path", tmp_path / "r"], capsys)
    assert str(bad) in err and "'lr'" in err and "lo > 0" in err

    bad.write_text("num_res: {choice: [1, 2]\n")  # broken YAML
    err = _main_error(["--space", bad, "--storage-path", tmp_path / "r"], capsys)
    assert str(bad) in err and "not valid YAML" in err

    bad.write_text("model.no_such_key: 3\n")  # dotted keys are checked against the project config
    err = _main_error(["--space", bad, "--storage-path", tmp_path / "r"], capsys)
    assert str(bad) in err and "model.no_such_key" in err

    err = _main_error(["--space", tmp_path / "missing.yaml"], capsys)
    assert "missing.yaml" in err and "does not exist" in err


def test_bad_command_line_overrides(tmp_path, capsys):
    err = _main_error(["foo=choice(1,2)", "--storage-path", tmp_path / "r"], capsys)
    assert "command line" in err and "'foo'" in err and "known keys" in err
    err = _main_error(["num_mult=uniform(1,3)", "--storage-path", tmp_path / "r"], capsys)
    assert "'num_mult'" in err and "integer" in err
    err = _main_error(["psnr=loud", "--storage-path", tmp_path / "r"], capsys)
    assert "'psnr'" in err and "lo:hi" in err
    err = _main_error(["--resume", "--storage-path", tmp_path / "nothing"], capsys)
    assert "--resume" in err and "no search" in err


def test_local_tracking_store_on_multi_node_cluster_warns(capsys):
    import argparse

    from pycompgen.tune.search import warn_local_store

    warn_local_store("sqlite:////tmp/x/mlflow.db", argparse.Namespace(address="10.0.0.1:6379"), nodes=[{}, {}])
    err = capsys.readouterr().err
    assert "WARNING" in err and "required for multi-node" in err and "--tracking-uri" in err
    warn_local_store("http://10.0.0.1:5000", argparse.Namespace(address="10.0.0.1:6379"), nodes=[{}, {}])
    warn_local_store("sqlite:////tmp/x/mlflow.db", argparse.Namespace(address=None), nodes=[{}])
    assert capsys.readouterr().err == ""


def test_space_parsing_and_overrides():
    from pycompgen.tune.space import build_space, config_overrides, parse_override, to_tune

    space = build_space(ROOT / "tune" / "spaces" / "compgen.yaml", ["num_res=choice(1,2)", "lr=1e-3", 'psnr="-5:50"',
                                                       "num_mult=grid(1,2)"])
    assert space["num_res"] == {"choice": [1, 2]} and space["lr"] == 1e-3 and space["psnr"] == "-5:50"
    assert parse_override("w_l1={uniform: [0, 0.5]}") == ("w_l1", {"uniform": [0, 0.5]})
    ts = to_tune({k: v for k, v in space.items() if "." not in k})
    assert ts["num_mult"] == {"grid_search": [1, 2]} and ts["lr"] == 1e-3
    ovs = config_overrides({"num_res": 2, "psnr": "-5:50", "lr": 1e-3, "stage": "approach3"})
    assert "model.num_res=2" in ovs and "train.psnr_range=[-5.0, 50.0]" in ovs and "train.lr=0.001" in ovs
    from pycompgen.config import load_config
    cfg = load_config(None, ovs)
    assert cfg.model.num_res == 2 and cfg.train.psnr_range == [-5.0, 50.0] and cfg.train.lr == 1e-3


def test_stopped_trials_give_their_workers_resources_back(ray_local):
    """A trial stopped by ASHA kills its Ray Train controller; the worker placement group it created must not keep
    its CPUs reserved for the rest of the search (the driver's own placement groups stay)."""
    ray = ray_local
    from ray.util.placement_group import placement_group, placement_group_table

    from pycompgen.tune.resources import release_orphaned_placement_groups

    tune_pg = placement_group([{"CPU": 0.5}])  # like Tune's per-trial reservation, made by the driver
    ray.get(tune_pg.ready())

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self):
            self.pg = placement_group([{"CPU": 1}])
            ray.get(self.pg.ready())
            return self.pg.id.hex()

    c = Controller.remote()
    pg_id = ray.get(c.reserve.remote())
    assert release_orphaned_placement_groups() == 0  # creator alive: untouched
    assert ray.available_resources().get("CPU", 0) == pytest.approx(0.5)
    ray.kill(c)
    deadline = time.time() + 30
    removed = 0
    while time.time() < deadline and not removed:
        removed = release_orphaned_placement_groups()
        time.sleep(0.5)
    assert removed == 1
    table = placement_group_table()
    assert table[pg_id]["state"] == "REMOVED" and table[tune_pg.id.hex()]["state"] == "CREATED"
    deadline = time.time() + 30
    while time.time() < deadline and ray.available_resources().get("CPU", 0) < 1.5:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(1.5)
    from ray.util.placement_group import remove_placement_group
    remove_placement_group(tune_pg)


# -- real cluster + server -----------------------------------------------------------------------------------------
@pytest.mark.cluster
@pytest.mark.timeout(480)
def test_search_on_ray_cluster_tracked_in_mlflow_server(ray_cluster, mlflow_server, tmp_path):
    from pycompgen.config import load_config

    address, uri = ray_cluster["address"], mlflow_server["uri"]
    exp = f"test-tune-{uuid.uuid4().hex[:8]}"
    r = run_search(["--address", address, "--tracking-uri", uri, "--experiment", exp,
                    "--storage-path", tmp_path / "runs", "--name", "s1", "--num-samples", "1",
                    "--max-concurrent", "2", *TINY, "num_res=grid(1,2)", "num_mult=choice(1,2)"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "best trial" in out and "PSNR sweep of the best model" in out

    cl, parents, runs = runs_of(uri, exp)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    pairs = {(c.data.params["num_res"], c.data.params["num_mult"]) for c in children}
    assert len(pairs) == 2 and {p[0] for p in pairs} == {"1", "2"}
    for c in children:
        assert c.info.status == "FINISHED"
        hist = cl.get_metric_history(c.info.run_id, "val_ssim")
        assert [m.step for m in hist] == [1] and 0.0 < hist[0].value < 1.0
        assert cl.get_metric_history(c.info.run_id, "val_psnr")
        assert {"sweep_ssim_50", "sweep_ssim_0", "sweep_ssim_-5"} <= set(c.data.metrics)
        for k in ("w_ssim", "w_l1", "w_mse", "w_latent", "lr", "psnr", "config.train.batch_size"):
            assert k in c.data.params
        assert c.data.params["config.model.channels"] == "8"  # the trial's full config
    assert "best_val_ssim" in parent.data.metrics

    best_file = tmp_path / "runs" / "s1" / "best_config.yaml"
    cfg = load_config(str(best_file), [])
    best_child = max(children, key=lambda c: c.data.metrics["val_ssim"])
    assert cfg.model.num_res == int(best_child.data.params["num_res"])
    assert cfg.model.num_mult == int(best_child.data.params["num_mult"])
    assert cfg.train.stage == "approach3" and cfg.train.init and Path(cfg.train.init).is_file()
    assert (tmp_path / "runs" / "s1" / "best_sweep" / "sweep.json").is_file()


@pytest.mark.cluster
@pytest.mark.timeout(480)
def test_interrupted_search_resumes_without_rerunning_finished_trials(ray_cluster, mlflow_server, tmp_path):
    address, uri = ray_cluster["address"], mlflow_server["uri"]
    ae = tmp_path / "ae.pt"
    make_ae_checkpoint(ae)
    exp = f"test-tune-{uuid.uuid4().hex[:8]}"
    common = ["--address", address, "--tracking-uri", uri, "--storage-path", tmp_path / "runs",
              "--name", "s2"]
    # One trial at a time; interrupt (Ctrl-C) the driver as soon as the first trial has finished.
    proc = subprocess.Popen(search_cmd(*common, "--experiment", exp, "--ae-checkpoint", ae, "--num-samples", "1",
                                       "--max-concurrent", "1", *TINY, "w_l1=grid(0.0,0.1)"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    lines, first = [], None
    try:
        t0 = time.time()
        for line in proc.stdout:
            lines.append(line)
            if first is None and line.startswith("[search] trial ") and " finished" in line:
                first = line.split("trial ", 1)[1].split(" ", 1)[0]
                os.kill(proc.pid, signal.SIGINT)
            assert time.time() - t0 < 300, "first trial did not finish in time:\n" + "".join(lines[-50:])
        rc = proc.wait(timeout=120)
    finally:
        stop_group(proc)
    out1 = "".join(lines)
    assert first is not None, out1[-6000:]
    assert rc == 130 and "interrupted" in out1, out1[-6000:]

    r = run_search([*common, "--resume"], tmp_path)
    out2 = r.stdout + r.stderr
    assert r.returncode == 0, out2[-6000:]
    again = started_trials(out2)
    assert first not in again, f"finished trial {first} was rerun:\n{out2[-4000:]}"
    assert again, out2[-4000:]

    cl, parents, runs = runs_of(uri, exp)
    assert len(parents) == 1  # the resumed search continues the same parent run
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 2
    assert sorted(c.data.params["w_l1"] for c in children) == ["0.0", "0.1"]
    by_trial = {c.data.tags["pycompgen.tune.trial_id"]: c for c in children}
    assert len(cl.get_metric_history(by_trial[first].info.run_id, "val_ssim")) == 1
    assert all(c.info.status == "FINISHED" for c in children)
    assert parents[0].info.status == "FINISHED"
    # Ray Train ran the first trial's tuned stage once: one run folder, never restarted.
    assert len(list((tmp_path / "runs" / "s2" / "train").glob(f"{first}-*"))) == 1


def test_other_systems_have_default_spaces_with_dotted_specs():
    from pycompgen.systems import names
    from pycompgen.tune.space import build_space, config_overrides, parse_override
    for name in names():
        assert (ROOT / "tune" / "spaces" / f"{name}.yaml").is_file(), name
    space = build_space(ROOT / "tune" / "spaces" / "cvae.yaml", ["cvae.channels=randint(8,16)"])
    assert space["cvae.kl_weight"] == {"loguniform": [1e-3, 1e-1]} and space["cvae.channels"] == {"randint": [8, 16]}
    assert config_overrides({"cvae.kl_weight": 0.01, "lr": 1e-3}) == ["cvae.kl_weight=0.01", "train.lr=0.001"]
    from pycompgen.tune.space import SpaceError
    with pytest.raises(SpaceError, match="randint needs integers"):
        parse_override("cvae.channels=randint(1.5,3)")


def test_bad_system_or_stage_is_refused(tmp_path, capsys):
    err = _main_error(["--system", "nope", "--storage-path", tmp_path / "r"], capsys)
    assert "--system nope" in err and "compgen" in err
    err = _main_error(["--system", "cvae", "--stage", "approach3", "--storage-path", tmp_path / "r"], capsys)
    assert "'approach3' is not a stage of system 'cvae'" in err


@pytest.mark.distributed
@pytest.mark.timeout(480)
def test_search_of_another_system_on_local_ray(tmp_path):
    """`tune/search.py --system dcgan`: its default space (dotted specs), trials as Ray Train runs, MLflow."""
    r = run_search(["--system", "dcgan", "--storage-path", tmp_path / "runs", "--name", "g", "--num-samples", "2",
                    "--max-epochs", "1", "--search-alg", "random", "--num-cpus", "2", "data.image_size=32",
                    "data.synthetic_count=64", "dcgan.channels=8", "dcgan.disc_channels=8",
                    "dcgan.latent_channels=4", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "best trial" in out and "no channel-PSNR sweep for system 'dcgan'" in out
    from pycompgen.config import load_config
    cfg = load_config(str(tmp_path / "runs" / "g" / "best_config.yaml"), [])
    assert cfg.model.name == "dcgan" and cfg.train.stage == "train" and cfg.dcgan.channels == 8
    assert 3e-4 <= cfg.dcgan.lr_g <= 3e-3 and cfg.dcgan.recon_weight in (3.0, 10.0, 30.0)


def test_each_system_names_what_tune_optimises(tmp_path):
    """Compgen-like systems maximise val_ssim; the BEGAN refiner minimises its convergence measure M_global."""
    from pycompgen.cli.tune import parse_args
    from pycompgen.tune.search import new_settings
    from pycompgen.tune.space import build_space
    got = {}
    for system in ("compgen", "began"):
        args = parse_args(["--system", system, "--storage-path", str(tmp_path / "r")])
        src = str(ROOT / "tune" / "spaces" / f"{system}.yaml")
        s = new_settings(args, build_space(src, []), src, str(tmp_path / "r"), f"s-{system}")
        got[system] = (s["metric"], s["mode"])
    assert got == {"compgen": ("val_ssim", "max"), "began": ("val_m_global", "min")}
