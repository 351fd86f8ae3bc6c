"""Config loading/overrides and the command line (python -m pycompgen)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pycompgen import cli
from pycompgen.config import Config, load_config, set_value
from pycompgen.training import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def test_defaults_follow_the_paper():
    cfg = load_config(None)
    t = cfg.train
    assert (t.lr, t.batch_size, t.w_ssim, t.w_l1, t.w_mse, t.w_latent) == (1e-3, 100, 1.0, 0.0, 0.0, 0.0)
    assert cfg.epochs_for("step1") == 50 and cfg.epochs_for("approach1") == 40 and cfg.epochs_for("approach3") == 40
    assert cfg.eval.psnrs == [50, 25, 10, 0, -2, -5]
    assert cfg.model.name == "compgen"


def test_overrides_types_and_round_trip(tmp_path):
    cfg = load_config(TINY, ["model.num_res=3", "train.psnr_range=[0,50]", "train.lr=5e-4", "train.epochs=7",
                             "data.path=/some/where", "train.max_steps_per_epoch=null", "train.psnr=.inf"])
    assert cfg.model.num_res == 3 and cfg.train.psnr_range == [0.0, 50.0] and cfg.train.lr == 5e-4
    assert cfg.epochs_for() == 7 and cfg.data.path == "/some/where" and cfg.train.max_steps_per_epoch is None
    assert cfg.train.psnr == float("inf") and isinstance(cfg.train.psnr_range[0], float)
    flat = cfg.flatten()
    assert flat["model.num_res"] == 3 and flat["train.psnr_range"] == [0.0, 50.0] and flat["out"] == "runs/tiny"
    assert Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    import yaml
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(str(p)).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("item,msg", [
    ("model.num_rez=3", "unknown config key 'model.num_rez'"),
    ("bogus=1", "unknown config key 'bogus'"),
    ("model.num_res=three", "'model.num_res' expects an integer"),
    ("model.num_res=2.5", "'model.num_res' expects an integer"),
    ("train.lr=fast", "'train.lr' expects a number"),
    ("train.psnr_range=5", "'train.psnr_range' expects a list"),
    ("train.progress=maybe", "'train.progress' expects true/false"),
    ("train.stage=step7", "train.stage must be one of"),
    ("train.psnr_range=[50,0]", "lo <= hi"),
    ("data.image_size=30", "multiple of 8"),
    ("model.num_res", "key=value"),
    ("model=3", "must be a mapping"),
])
def test_bad_overrides_name_the_problem(item, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("(", r"\(")):
        load_config(None, [item])


def test_unknown_key_in_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ValueError, match="unknown config key 'train.epochz'"):
        load_config(str(p))
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ValueError, match="unknown config key 'eval.nope'"):
        set_value(Config(), "eval.nope", 1)


def test_help():
    r = subprocess.run([sys.executable, "-m", "pycompgen", "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0 and "train" in r.stdout and "evaluate" in r.stdout and "generate" in r.stdout
    for sub, opts in [("train", ["--resume", "--stage", "--workers", "--gpu", "--address", "--tracking-uri"]),
                      ("evaluate", ["--checkpoint", "--config"]),
                      ("generate", ["--sketches", "--unconditional"])]:
        with pytest.raises(SystemExit) as e:
            cli.main([sub, "--help"])
        assert e.value.code == 0


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for opt in ("--config", "--data", "--out", "--resume", "--stage", "--workers", "--gpu", "--address",
                "--tracking-uri", "key=value"):
        assert opt in out, opt


def test_two_iteration_train_through_the_cli(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "pycompgen", "train", "--config", TINY, "--out", str(out),
                        "train.epochs=1", "train.max_steps_per_epoch=2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    st = load_checkpoint(out / "last.pt", expect_model="compgen")
    assert st["epoch"] == 1 and st["stage"] == "step1" and st["metrics"]["train_steps"] == 2
    assert (out / "best.pt").is_file() and (out / "config.yaml").is_file()
    assert "step1: 1/1 epochs" in r.stdout and "val SSIM" in r.stdout and "img/s" in r.stdout


def test_clear_cli_errors(tmp_path, capsys):
    assert cli.main(["train", "--config", TINY, "--data", str(tmp_path / "missing")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert cli.main(["train", "--config", TINY, "model.num_rez=1"]) == 2
    assert "unknown config key 'model.num_rez'" in capsys.readouterr().err
    # a checkpoint written by another model
    from pycompgen.training import build_system
    st = build_system(load_config(TINY), "cpu").payload(1, {}, 0.0)
    st["model"] = "dcgan"
    save_checkpoint(tmp_path / "dcgan.pt", st)
    assert cli.main(["train", "--config", TINY, "--stage", "approach1", "--init", str(tmp_path / "dcgan.pt"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "model 'dcgan'" in capsys.readouterr().err
    # a checkpoint trained on another image size (the ELM's FC layers depend on it)
    st = build_system(load_config(TINY, ["train.stage=approach3"]), "cpu",
                     {k: v for k, v in st["models"].items()}).payload(1, {}, 0.0)
    save_checkpoint(tmp_path / "a32.pt", st)
    assert cli.main(["train", "--config", TINY, "--stage", "approach2", "--init", str(tmp_path / "a32.pt"),
                     "--out", str(tmp_path / "o2"), "data.image_size=64"]) == 2
    assert "trained on 32x32 images but data.image_size=64" in capsys.readouterr().err


def test_every_verb_is_one_module_of_the_cli_package(capsys):
    import importlib
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for verb in cli.VERBS:
        assert verb in out
        mod = importlib.import_module(f"pycompgen.cli.{verb}")
        assert hasattr(mod, "main" if verb == "tune" else "run")
    with pytest.raises(SystemExit) as e:  # the tune verb has tune/search.py's own options
        cli.main(["tune", "--help"])
    assert e.value.code == 0 and "--num-samples" in capsys.readouterr().out
