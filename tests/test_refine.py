"""``pycompgen refine`` and BEGAN entries in the zoo: a tiny refiner trained for a few steps is exported with
tools/zoo_export.py's ``export_system`` into a temporary zoo and used from the CLI (files, folders, greyscale and
RGBA inputs of any size; one PNG per input named by its stem; bad input: one-line errors, nothing written)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import load_tool

from pycompgen.config import load_config
from pycompgen.data import synthetic_faces
from pycompgen.training import train_local

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def refiner_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    cfg = load_config(str(ROOT / "configs" / "began-tiny.yaml"), ["train.epochs=1"])
    cfg.out = str(root / "run")
    train_local(cfg, verbose=False)
    zoo = root / "zoo"
    ent = load_tool("zoo_export").export_system(root / "run" / "best.pt", "tiny-began", "tiny test refiner",
                                            facts={"data": "synthetic"}, metrics={"summary": "test"},
                                            metrics_md="| x |", use=["pycompgen refine --pretrained tiny-began"],
                                            zoo_dir=zoo, check_images=8, log=lambda *a: None)
    return root, zoo, ent


@pytest.fixture
def zoo_env(refiner_zoo, monkeypatch):
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(refiner_zoo[1]))
    return refiner_zoo


def _inputs(folder: Path) -> list:
    """A 32x32 RGB face, a 50x70 greyscale one, a 40x40 RGBA one (PNG and JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    faces = synthetic_faces(3, 64, seed=3)
    rgb = cv2.resize(faces[0], (32, 32), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    grey = cv2.cvtColor(cv2.resize(faces[1], (70, 50)), cv2.COLOR_RGB2GRAY)
    rgba = np.concatenate([cv2.resize(faces[2], (40, 40))[:, :, ::-1], np.full((40, 40, 1), 255, np.uint8)], -1)
    paths = [folder / "a.png", folder / "b.jpg", folder / "c.png"]
    for p, img in zip(paths, (rgb, grey, rgba)):
        assert cv2.imwrite(str(p), img)
    return paths


def test_export_system_entry_card_and_load(zoo_env):
    from pycompgen import zoo
    root, zdir, ent = zoo_env
    assert ent["model"] == "began" and set(ent["stages"]) == {"train"}
    st = ent["stages"]["train"]
    assert st["dtype"] == "float16" and st["parts"] == ["D", "g"] and st["ssim_change"] < 0.002
    pre = zoo.load("tiny-began")
    assert list(pre) == ["train"] and pre.image_size == 32
    card = zoo.card_text("tiny-began")
    assert "pycompgen refine --pretrained tiny-began" in card and "non-commercial" in card
    # the EMA of g is what the entry holds (what validation measured)
    ck = torch.load(root / "run" / "best.pt", weights_only=True)
    w = pre["train"].models["g"].state_dict()["dec.blocks.0.0.weight"]
    d_ema = float((w - ck["ema"]["models"]["g"]["dec.blocks.0.0.weight"]).abs().max())
    d_raw = float((w - ck["models"]["g"]["dec.blocks.0.0.weight"]).abs().max())
    assert d_ema < 1e-4 < d_raw  # float16 rounding (~3e-5) vs the EMA's distance from the raw weights (~3e-4)


def test_refine_files_and_a_folder(zoo_env, tmp_path, capsys):
    from pycompgen.cli import main
    paths = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["refine", "--pretrained", "tiny-began", str(paths[0]), str(tmp_path / "in" / "b.jpg"),
                 "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    out2 = tmp_path / "out2"
    assert main(["refine", "--pretrained", "tiny-began", str(tmp_path / "in"), "-o", str(out2),
                 "--batch-size", "2"]) == 0
    names = sorted(p.name for p in out2.iterdir())
    assert names == ["a.png", "b.png", "c.png"]
    img = cv2.imread(str(out2 / "c.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (32, 32, 3)
    # batching does not change the result
    torch.testing.assert_close(torch.from_numpy(cv2.imread(str(out / "a.png"))),
                               torch.from_numpy(cv2.imread(str(out2 / "a.png"))), atol=1, rtol=0)
    assert "refined 2/3" in capsys.readouterr().out


def test_refine_with_a_checkpoint(zoo_env, tmp_path):
    from pycompgen.cli import main
    root = zoo_env[0]
    paths = _inputs(tmp_path / "in")
    assert main(["refine", "--checkpoint", str(root / "run" / "best.pt"), str(paths[0]), "-o",
                 str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "a.png").is_file()


@pytest.mark.parametrize("case, msg", [
    ("empty", "holds no images"),
    ("missing", "image not found"),
    ("corrupt", "cannot decode image"),
    ("same-stem", "would both write"),
    ("no-model", "refine needs a model"),
    ("compgen", "is not a refiner"),
])
def test_bad_input_is_one_line_and_writes_nothing(zoo_env, tmp_path, capsys, case, msg):
    from pycompgen.cli import main
    paths = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    model = ["--pretrained", "tiny-began"]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args = [str(tmp_path / "empty")]
    elif case == "missing":
        args = [str(paths[0]), str(tmp_path / "nope.png")]
    elif case == "corrupt":
        (tmp_path / "bad.png").write_bytes(b"not an image")
        args = [str(paths[0]), str(tmp_path / "bad.png")]
    elif case == "same-stem":
        (tmp_path / "x").mkdir()
        assert cv2.imwrite(str(tmp_path / "x" / "a.jpg"), cv2.imread(str(paths[0])))
        args = [str(paths[0]), str(tmp_path / "x" / "a.jpg")]
    elif case == "no-model":
        args, model = [str(paths[0])], []
    else:
        from pycompgen.models import save_checkpoint
        cfg = load_config(str(ROOT / "configs" / "tiny.yaml"), [])
        from pycompgen.systems import build_networks
        nets = build_networks(cfg)
        save_checkpoint(tmp_path / "cg.pt", {"model": "compgen", "stage": "step1", "epoch": 1,
                                             "config": cfg.to_dict(),
                                             "models": {k: nets[k].state_dict() for k in ("f", "g")}})
        args, model = [str(paths[0])], ["--checkpoint", str(tmp_path / "cg.pt")]
    assert main(["refine", *model, *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err
    assert not out.exists()
