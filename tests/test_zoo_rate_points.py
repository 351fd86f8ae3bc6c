"""Zoo entries with several rate points (``--quality 1..K``, 1 = the lowest rate): a tiny Compgen autoencoder with
an entropy bottleneck trained at two rate weights is exported with tools/zoo_export.py's ``export_rate_points``
and used from Python and the codec verbs (quality bounds, the file's hash finding its rate point)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_tool

from pycompgen.config import load_config
from pycompgen.training import train_local

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ae_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("rp")
    ckpts = []
    for lam in (0.0, 3.0):
        cfg = load_config(str(ROOT / "configs" / "tiny.yaml"),
                          ["model.entropy_bottleneck=true", f"train.rate_weight={lam}", "train.epochs=1",
                           "train.max_steps_per_epoch=3", "train.stage=step1", "train.lr=0.01"])
        cfg.out = str(root / f"ae{lam:g}")
        train_local(cfg, verbose=False)
        ckpts.append(root / f"ae{lam:g}" / "last.pt")
    zoo = root / "zoo"
    ent = load_tool("zoo_export").export_rate_points(ckpts, "tiny-ae", "tiny AE codec", zoo_dir=zoo, check_images=6,
                                                 log=lambda *a: None)
    return zoo, ent


@pytest.fixture
def zoo_env(ae_zoo, monkeypatch):
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(ae_zoo[0]))
    return ae_zoo


def test_rate_points_are_ordered_and_load(zoo_env):
    from pycompgen import zoo
    _, ent = zoo_env
    pts = ent["rate_points"]
    assert [p["quality"] for p in pts] == [1, 2] and pts[0]["bpp"] <= pts[1]["bpp"]
    assert {p["rate_weight"] for p in pts} == {0.0, 3.0} and ent["default_quality"] == 1
    assert zoo.qualities(zoo.entry("tiny-ae")) == [1, 2]
    assert zoo.entry_bytes(ent) == sum(p["bytes"] for p in pts)
    for q in (1, 2):
        pre = zoo.load("tiny-ae", quality=q)
        assert "eb" in pre["step1"].parts
        assert pre["step1"].config.train.rate_weight == pts[q - 1]["rate_weight"]
    with pytest.raises(ValueError, match=r"--quality 3 is out of range for pretrained model 'tiny-ae' \(1\.\.2"):
        zoo.load("tiny-ae", quality=3)


def test_compress_decompress_at_each_quality(zoo_env, tmp_path, capsys):
    import cv2
    from pycompgen.cli import main
    from pycompgen.data import synthetic_faces
    (tmp_path / "in").mkdir()
    for i, img in enumerate(synthetic_faces(2, 32, seed=5)):
        assert cv2.imwrite(str(tmp_path / "in" / f"f{i}.png"), img[:, :, ::-1])
    faces = [str(p) for p in sorted((tmp_path / "in").iterdir())]
    outs = {}
    for q in (1, 2):
        assert main(["compress", "--pretrained", "tiny-ae", "--quality", str(q), *faces, "-o",
                     str(tmp_path / f"q{q}")]) == 0
        files = sorted(str(p) for p in (tmp_path / f"q{q}").glob("*.pcg"))
        assert len(files) == 2
        # the file's weights hash finds its rate point among the zoo's entries ...
        assert main(["decompress", *files, "-o", str(tmp_path / f"d{q}")]) == 0
        # ... the same decoder as naming it
        assert main(["decompress", "--pretrained", "tiny-ae", "--quality", str(q), *files, "-o",
                     str(tmp_path / f"e{q}")]) == 0
        a = cv2.imread(str(tmp_path / f"d{q}" / "f0.png"))
        b = cv2.imread(str(tmp_path / f"e{q}" / "f0.png"))
        assert a is not None and (a == b).all()
        outs[q] = a
    assert not (outs[1] == outs[2]).all()  # two different decoders


@pytest.mark.parametrize("args, msg", [
    (["--quality", "0"], "--quality 0 is out of range"),
    (["--quality", "9"], "--quality 9 is out of range for pretrained model 'tiny-ae' (1..2"),
])
def test_quality_out_of_range_is_one_line_and_writes_nothing(zoo_env, tmp_path, capsys, args, msg):
    import cv2
    from pycompgen.cli import main
    from pycompgen.data import synthetic_faces
    face = tmp_path / "f.png"
    assert cv2.imwrite(str(face), synthetic_faces(1, 32, seed=5)[0][:, :, ::-1])
    assert main(["compress", "--pretrained", "tiny-ae", *args, str(face), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_quality_needs_a_pretrained_entry(zoo_env, tmp_path, capsys):
    from pycompgen.cli import main
    assert main(["compress", "--checkpoint", "x.pt", "--quality", "1", "f.png", "-o", str(tmp_path / "o")]) == 2
    assert "--quality picks a rate point of a --pretrained entry" in capsys.readouterr().err


def test_compress_a_folder_and_nothing_partial_on_a_bad_input(zoo_env, tmp_path, capsys):
    import cv2
    from pycompgen.cli import main
    from pycompgen.data import synthetic_faces
    src = tmp_path / "faces"
    src.mkdir()
    for i, img in enumerate(synthetic_faces(3, 48, seed=2)):  # another size: centre-cropped and resized
        assert cv2.imwrite(str(src / f"p{i}.jpg"), img[:, :, ::-1])
    assert main(["compress", "--pretrained", "tiny-ae", str(src), "-o", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["p0.pcg", "p1.pcg", "p2.pcg"]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rc = main(["compress", "--pretrained", "tiny-ae", str(src), str(tmp_path / "bad.png"), "-o",
               str(tmp_path / "part")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot decode image" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "part").exists()
    (tmp_path / "empty").mkdir()
    assert main(["compress", "--pretrained", "tiny-ae", str(tmp_path / "empty"), "-o", str(tmp_path / "e")]) == 2
    assert "holds no images" in capsys.readouterr().err
