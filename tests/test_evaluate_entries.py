"""``pycompgen evaluate --pretrained NAME`` for every kind of zoo entry (pycompgen.evaluation.entries), on a few
synthetic faces: the shipped latent codecs (real files at every rate point), a BEGAN refiner (faces degraded to
16 px), Sketch2face (cycle distances and realism) and a tiny edgediff entry exported into a temporary zoo (every
rate point and --denoise mode); eval.json / eval.md and one-line errors for options of another kind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
FEW = ["eval.max_images=8", "train.progress=false"]
ED = "edgediff-eval-tiny"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_module):
    """One intra-op thread for the module: tiny networks run several times faster on a shared 2-core machine."""


def _eval(tmp_path, name, *args, sub="eval"):
    from pycompgen.cli import main
    out = tmp_path / sub
    assert main(["evaluate", "--pretrained", name, "--out", str(out), *FEW, *args]) == 0
    assert (out / "eval.md").is_file()
    return json.loads((out / "eval.json").read_text())


def _sane_codec_rows(rows):
    assert [r["bpp"] for r in rows] == sorted(r["bpp"] for r in rows)
    for r in rows:
        assert r["n"] == 8 and r["bpp"] > r["bpp_payload"] > 0 and r["header_bytes_mean"] > 0
        assert 0 < r["ssim"] <= 1 and 0 < r["ms_ssim"] <= 1 and 5 < r["psnr"] < 60


def test_latent_codec_every_rate_point_on_real_files(tmp_path, capsys):
    from pycompgen import zoo
    from pycompgen.data import load_faces
    from pycompgen.inference import compress_batch, prepare_codec
    res = _eval(tmp_path, "cvae-64", "--train-subset", "8")
    out = capsys.readouterr().out
    assert "cvae-64 (latent codec, cvae)" in out and "synthetic faces: no --data" in out and "eval.json" in out
    assert res["kind"] == "latent-codec" and res["synthetic_faces"] and res["n_images"] == 8
    assert [r["quality"] for r in res["rate_points"]] == [1]
    _sane_codec_rows(res["rate_points"])
    # the bpp of the files compress writes: whole file, header included
    x = torch.from_numpy(load_faces(None, "val", 64).images[:8]).permute(0, 3, 1, 2).float() / 255
    files = compress_batch(prepare_codec(zoo.load("cvae-64")["train"]), x)
    assert res["rate_points"][0]["bpp"] == pytest.approx(8 * sum(map(len, files)) / (8 * 64 * 64))
    ts = res["train_subset"]
    assert ts["n_images"] == 8 and len(ts["rate_points"]) == 1
    g = ts["gap"][0]
    assert g["ssim"] == pytest.approx(ts["rate_points"][0]["ssim"] - res["rate_points"][0]["ssim"])

    res = _eval(tmp_path, "compgen-ae-64", "--quality", "3,1", "--train-subset", "0", sub="ae")
    assert res["kind"] == "latent-codec" and [r["quality"] for r in res["rate_points"]] == [1, 3]
    assert "train_subset" not in res and not (tmp_path / "ae" / "sweep.json").exists()
    _sane_codec_rows(res["rate_points"])
    assert res["rate_points"][0]["bpp"] < res["rate_points"][1]["bpp"]
    assert res["rate_points"][0]["ssim"] < res["rate_points"][1]["ssim"]
    assert res["rate_points"][1]["rate_weight"] == zoo.rate_point(zoo.entry("compgen-ae-64"), 3)["rate_weight"]


def test_refiner_figures_on_degraded_faces(tmp_path, capsys):
    res = _eval(tmp_path, "began-64-a", "--train-subset", "8")
    assert res["kind"] == "refiner"
    r = res["refiner"]
    assert r["n"] == 8 and r["degrade_px"] == 16
    for k in ("ssim_lowres", "ssim_to_original", "input_ssim_to_original"):
        assert 0 < r[k] <= 1, k
    assert r["sharpness_ratio"] > 0 and r["input_sharpness_ratio"] > 0
    assert set(res["train_subset"]["gap"]) == {"ssim_lowres", "sharpness_ratio", "ssim_to_original"}
    out = capsys.readouterr().out
    assert "ssim_lowres" in out and "degraded to 16 px" in out


def test_sketch2face_cycle_and_realism(tmp_path, capsys):
    res = _eval(tmp_path, "sketch2face-64", "--train-subset", "0")
    assert res["kind"] == "sketch2face" and res["variant"] == "stitched"
    assert res["sketches"]["source"].startswith("synthetic sketches") and res["sketches"]["n"] == 8
    c = res["cycle"]
    assert c["sketch_n"] == c["face_n"] == 8
    for k in ("sketch_cycle_l1", "face_cycle_l1"):
        assert 0 < c[k] < 1
    for k in ("sketch_cycle_ssim", "face_cycle_ssim"):
        assert -1 < c[k] <= 1
    re = res["realism"]
    assert re["fd"] > 0 and "compgen-64" in re["fd_label"] and re["n_sketches"] == re["n_faces"] == 8
    assert "synthetic sketches" in capsys.readouterr().out
    paths = load_tool("demo_pretrained").write_sketches(tmp_path / "sk", n=3)
    res = _eval(tmp_path, "sketch2face-64", "--sketches", str(tmp_path / "sk"), "--train-subset", "0", sub="sk")
    assert res["sketches"]["n"] == len(paths) and "folder" in res["sketches"]["source"]
    assert res["cycle"]["sketch_n"] == 3 and res["cycle"]["face_n"] == 8


@pytest.mark.parametrize("name,args,msg", [
    ("cvae-64", ["--psnrs", "10"], "--psnrs sets Compgen's channel-PSNR sweep"),
    ("cvae-64", ["--denoise", "none"], "--denoise applies to edgediff entries"),
    ("compgen-ae-64", ["--quality", "9"], "--quality 9 is out of range"),
    ("compgen-ae-64", ["--quality", "x"], "--quality: bad value 'x'"),
    ("began-64-a", ["--quality", "1"], "--quality picks rate points of a latent codec"),
    ("began-64-a", ["--sketches", "somewhere"], "--sketches applies to Sketch2face entries"),
    ("compgen-64", ["--denoise", "full"], "is a Compgen edge model"),
])
def test_options_of_another_kind_are_one_line_errors(tmp_path, capsys, name, args, msg):
    from pycompgen.cli import main
    assert main(["evaluate", "--pretrained", name, "--out", str(tmp_path / "e"), *FEW, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e" / "eval.json").exists()


# -- a tiny edgediff entry in a temporary zoo (as tests/test_zoo_new_systems.py exports it) --------------------------
@pytest.fixture(scope="module")
def edgediff_zoo(tmp_path_factory, one_thread_module):
    from pycompgen.config import load_config
    from pycompgen.training.pipeline import run_pipeline
    root = tmp_path_factory.mktemp("evaled")
    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "configs" / "edgediff-tiny.yaml"), ["train.epochs=1", "train.max_steps_per_epoch=1"])
    cfg.out = str(root / "ed")
    run_pipeline(cfg, verbose=False)
    zoo = root / "zoo"
    assert load_tool("zoo_export").main(["--checkpoint", str(root / "ed" / "denoiser" / "best.pt"), "--name", ED,
                                         "--zoo-dir", str(zoo), "--check-images", "2"]) == 0
    return zoo


def test_edgediff_every_rate_point_and_denoise_mode(edgediff_zoo, tmp_path, monkeypatch, capsys):
    from pycompgen import zoo
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(edgediff_zoo))
    res = _eval(tmp_path, ED, "eval.max_images=3")
    assert res["kind"] == "edgediff" and res["image_size"] == 32 and res["n_images"] == 3
    assert res["denoise_modes"] == ["none", "sdc", "full"] and "train_subset_skipped" in res
    rows = res["rate_points"]
    assert len(rows) == 6 and {(r["quality"], r["denoise"]) for r in rows} == {(q, m) for q in (1, 2)
                                                                               for m in ("none", "sdc", "full")}
    assert {(r["quality"], r["bits"]) for r in rows} == {(1, 3), (2, 5)}
    assert [r["bpp"] for r in rows] == sorted(r["bpp"] for r in rows)
    for r in rows:
        assert r["n"] == 3 and r["bpp"] > r["bpp_payload"] > 0 and 0 < r["ssim"] <= 1 and 0 < r["ms_ssim"] <= 1
    by = {(r["quality"], r["denoise"]): r for r in rows}
    assert all(len({by[q, m]["bpp"] for m in ("none", "sdc", "full")}) == 1 for q in (1, 2))  # one file per point
    out = capsys.readouterr().out
    assert "denoise" in out and "sdc" in out and "training subset: not measured for edgediff" in out
    res = _eval(tmp_path, ED, "eval.max_images=2", "--quality", "1", "--denoise", "none,full", sub="one")
    assert [(r["quality"], r["denoise"]) for r in res["rate_points"]] in ([(1, "none"), (1, "full")],
                                                                         [(1, "full"), (1, "none")])
    from pycompgen.cli import main
    assert main(["evaluate", "--pretrained", ED, "--out", str(tmp_path / "bad"), *FEW, "--denoise", "half"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--denoise must be among none, sdc, full" in err and len(err.splitlines()) == 1
    assert zoo.qualities(zoo.entry(ED)) == [1, 2]


def test_train_init_from_a_tiny_edgediff_entry(edgediff_zoo, tmp_path, monkeypatch, capsys):
    from pycompgen.cli import main
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(edgediff_zoo))
    tiny = str(ROOT / "configs" / "edgediff-tiny.yaml")
    assert main(["train", "--config", tiny, "--stage", "vae", "--init", f"zoo:{ED}", "--out", str(tmp_path / "r"),
                 "train.epochs=1", "train.max_steps_per_epoch=1"]) == 0
    assert (tmp_path / "r" / "best.pt").is_file() or (tmp_path / "r" / "last.pt").is_file()
    capsys.readouterr()
    assert main(["train", "--config", tiny, "--stage", "vae", "--init", f"zoo:{ED}", "--out", str(tmp_path / "s"),
                 "data.image_size=64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was trained on 32x32 images" in err and len(err.splitlines()) == 1


def test_train_init_from_the_sketch2face_entry(tmp_path, capsys):
    from pycompgen.cli import main
    few = ["train.epochs=1", "train.max_steps_per_epoch=1", "train.max_val_batches=1", "train.progress=false",
           "data.synthetic_count=16"]
    assert main(["train", "--system", "sketch2face", "--stage", "stitched", "--init", "zoo:sketch2face-64", "--out",
                 str(tmp_path / "st"), *few]) == 2
    err = capsys.readouterr().err.strip()
    assert "also needs trained D_s, D_f" in err and "--stage pretrain or cycle" in err and len(err.splitlines()) == 1
    # the entry's networks were built with other settings than the defaults: the error names the overrides
    assert main(["train", "--system", "sketch2face", "--stage", "cycle", "--init", "zoo:sketch2face-64", "--out",
                 str(tmp_path / "cx"), *few]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "add sketch2face.latent_dim=128" in err, err
    arch = err.split("add ", 1)[1].split()
    assert main(["train", "--system", "sketch2face", "--stage", "cycle", "--init", "zoo:sketch2face-64", "--out",
                 str(tmp_path / "cy"), *few, *arch]) == 0
    assert (tmp_path / "cy" / "last.pt").is_file()
