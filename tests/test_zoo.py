"""The pretrained model zoo (pycompgen.zoo, tools/zoo_export.py, --pretrained): a tiny run trained for one step
per stage is exported into a temporary zoo ($PYCOMPGEN_ZOO_DIR) and used from Python and from the CLI."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
STAGES = ("step1", "approach1", "approach2", "approach3")


def _tool(name):
    return load_tool(name)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from pycompgen.cli import main
    out = tmp_path_factory.mktemp("zoo_run") / "run"
    rc = main(["train", "--stage", "pipeline", "--config", TINY, "--out", str(out), "train.epochs=1",
               "train.max_steps_per_epoch=1", "train.progress=false"])
    assert rc == 0
    for s in STAGES:
        assert (out / s / "best.pt").is_file()
    return out


@pytest.fixture(scope="module")
def zoo_root(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    results = {"machine": "test-cpu", "command": "pytest", "date_utc": "2026-01-01T00:00:00Z",
               "data": {"path": None, "train_images": 64, "val_images": 16},
               "stages": {s: {"wall_s": 1.0, "epochs": 1} for s in STAGES},
               "sweep": {"n_images": 16, "split": "val", "psnrs": [50.0, 0.0],
                         "ae": {"ssim": 0.5, "ms_ssim": 0.6, "psnr": 15.0, "edge_f1": 0.1},
                         "approaches": {"approach3": {"50": {"ssim": 0.3, "ms_ssim": 0.4, "psnr": 12.0,
                                                             "edge_f1": 0.05},
                                                      "0": {"ssim": 0.2, "ms_ssim": 0.3, "psnr": 11.0,
                                                            "edge_f1": 0.04}}}}}
    rpath = root.parent / "results.json"
    rpath.write_text(json.dumps(results))
    _tool("zoo_export").export(tiny_run, "tiny", str(rpath), "tiny test model", zoo_dir=root, check_images=8,
                               psnrs=(50.0, -5.0), log=lambda *a: None)
    return root


@pytest.fixture
def zoo_env(zoo_root, monkeypatch):
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(zoo_root))
    return zoo_root


def test_export_writes_manifest_card_and_hashes(zoo_env):
    from pycompgen import zoo
    assert zoo.list() == ["tiny"]
    e = zoo.info("tiny")
    assert list(e["stages"]) == list(STAGES)
    for s, info in e["stages"].items():
        p = zoo_env / info["file"]
        assert p == zoo_env / "weights" / "tiny" / f"{s}.pt"
        assert hashlib.sha256(p.read_bytes()).hexdigest() == info["sha256"]
        assert info["dtype"] == "float16" and info["ssim_change"] < 0.002
    assert e["training"]["psnr"] == 50.0
    card = (zoo_env / e["card"]).read_text()
    for needle in ("non-commercial", "fixed channel PSNR 50 dB", "SSIM", "MS-SSIM", "edge-F1", "test-cpu",
                   "4×4×4", "approach3 | 50 |"):
        assert needle in card, needle


def test_files_load_weights_only_as_fp16(zoo_env):
    from pycompgen import zoo
    for s, info in zoo.info("tiny")["stages"].items():
        pl = torch.load(zoo_env / info["file"], weights_only=True)
        assert pl["format"] == "pycompgen-zoo/1" and pl["stage"] == s
        floats = [t for sd in pl["models"].values() for t in sd.values() if t.is_floating_point()]
        assert floats and all(t.dtype == torch.float16 for t in floats)
        if s != "step1":
            assert "f" not in pl["models"] and pl["shared"]["f"] == "step1"  # stored once, in step1.pt
        if s == "approach2":
            assert pl["shared"]["h"] == "approach1"  # approach 2 trains g only: its h is approach 1's


def test_load_gives_float32_networks_close_to_the_checkpoints(zoo_env, tiny_run):
    from pycompgen import zoo
    from pycompgen.models import LoadedCheckpoint, load_for_eval
    from pycompgen.ops import awgn, ssim
    from pycompgen.systems.compgen.system import decode_edges
    pre = zoo.load("tiny")
    assert list(pre) == list(STAGES) and pre.image_size == 32 and "non-commercial" in pre.card
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    z = (torch.rand(8, 1, 32, 32) > 0.8).float()
    zn = awgn(z, 50.0, generator=torch.Generator().manual_seed(0))
    for s in STAGES:
        lc = pre[s]
        assert isinstance(lc, LoadedCheckpoint) and set(lc.parts) >= {"f", "g"}
        assert all(p.dtype == torch.float32 for m in lc.models.values() for p in m.parameters())
        ref = load_for_eval(tiny_run / s / "best.pt", label=s)
        with torch.no_grad():
            if s == "step1":
                a, b = ref.models["g"](ref.models["f"](x)), lc.models["g"](lc.models["f"](x))
            else:
                assert lc.has_elm
                a, b = decode_edges(ref.models, zn), decode_edges(lc.models, zn)
        assert (a - b).abs().max() < 1e-2
        assert abs(float(ssim(a, x)) - float(ssim(b, x))) < 0.002


def test_generate_pretrained_sketches_and_unconditional(zoo_env, tmp_path):
    from pycompgen.cli import main
    demo = _tool("demo_pretrained")
    demo.write_sketches(tmp_path / "sk", n=3)
    out = tmp_path / "gen"
    assert main(["generate", "--pretrained", "tiny", "--sketches", str(tmp_path / "sk"), "--unconditional", "4",
                 "--out", str(out)]) == 0
    assert (out / "sketches_p000.png").is_file() and (out / "unconditional.png").is_file()
    summary = json.loads((out / "generate.json").read_text())
    assert summary["checkpoints"]["approach3"]["pretrained"] == "tiny"
    assert summary["outputs"]["approach3"]["sketches"]["n"] == 3


def test_evaluate_pretrained_writes_sweep_json(zoo_env, tmp_path):
    from pycompgen.cli import main
    out = tmp_path / "eval"
    assert main(["evaluate", "--pretrained", "tiny", "--split", "val", "--psnrs", "50,-5", "--out", str(out),
                 "eval.max_images=8"]) == 0
    sw = json.loads((out / "sweep.json").read_text())
    assert sw["format"] == "pycompgen-sweep/1" and sw["psnrs"] == [50.0, -5.0]
    assert set(sw["approaches"]) == {"approach1", "approach2", "approach3"} and sw["ae"] is not None


def test_checksum_mismatch_is_a_one_line_error(zoo_root, tmp_path, monkeypatch):
    from pycompgen import zoo
    bad = tmp_path / "zoo"
    shutil.copytree(zoo_root, bad)
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(bad))
    f = bad / "weights" / "tiny" / "approach3.pt"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    expected = zoo.info("tiny")["stages"]["approach3"]["sha256"]
    with pytest.raises(ValueError) as ei:
        zoo.load("tiny")
    msg = str(ei.value)
    assert "\n" not in msg and str(f) in msg and expected in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg


def test_missing_entry_names_the_available_ones(zoo_env, capsys):
    from pycompgen import zoo
    from pycompgen.cli import main
    with pytest.raises(ValueError, match=r"no pretrained model 'nope'.*available: tiny"):
        zoo.load("nope")
    assert main(["generate", "--pretrained", "nope", "--unconditional", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "available: tiny" in err and "\n" not in err


def test_pretrained_and_checkpoint_are_exclusive(zoo_env, tiny_run, capsys):
    from pycompgen.cli import main
    assert main(["evaluate", "--pretrained", "tiny", "--checkpoint", str(tiny_run)]) == 2
    assert "mutually exclusive" in capsys.readouterr().err


def test_zoo_list_and_info_cli(zoo_env, capsys):
    from pycompgen import zoo
    from pycompgen.cli import main
    assert main(["zoo", "list"]) == 0
    head, rule, row = capsys.readouterr().out.splitlines()[:3]
    assert head.split()[:3] == ["name", "system", "size"] and set(rule.replace(" ", "")) == {"-"}
    mb = f"{zoo.entry_bytes(zoo.entry('tiny')) / 1e6:.1f} MB"
    assert row.startswith("tiny") and "compgen" in row and mb in row and "fixed channel PSNR 50 dB" in row
    assert main(["zoo", "info", "tiny"]) == 0
    assert capsys.readouterr().out.strip() == zoo.card_text("tiny").strip() != ""
    assert main(["zoo", "info", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"]["approach3"]["sha256"]
    assert main(["zoo", "info", "nope"]) == 2
    assert "available: tiny" in capsys.readouterr().err


def _face_pngs(folder, n=2, size=32):
    import cv2
    from pycompgen.data import synthetic_faces
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(synthetic_faces(n, size, seed=7)):
        p = folder / f"face{i}.png"
        assert cv2.imwrite(str(p), img[:, :, ::-1])
        paths.append(str(p))
    return paths


def test_compress_decompress_with_a_pretrained_entry(zoo_env, tmp_path, capsys):
    """compress --pretrained, then decompress with --pretrained and with no model named (found by its hash)."""
    import cv2
    from pycompgen.cli import main
    faces = _face_pngs(tmp_path / "in")
    assert main(["compress", "--pretrained", "tiny", *faces, "-o", str(tmp_path / "pcg")]) == 0
    pcgs = sorted(str(p) for p in (tmp_path / "pcg").glob("*.pcg"))
    assert [Path(p).stem for p in pcgs] == ["face0", "face1"]
    assert main(["decompress", "--pretrained", "tiny", *pcgs, "-o", str(tmp_path / "a")]) == 0
    assert main(["decompress", *pcgs, "-o", str(tmp_path / "b")]) == 0          # model found by weights hash
    for n in ("face0", "face1"):
        a, b = cv2.imread(str(tmp_path / "a" / f"{n}.png")), cv2.imread(str(tmp_path / "b" / f"{n}.png"))
        assert a is not None and a.shape == (32, 32, 3) and (a == b).all()
    capsys.readouterr()
    assert main(["compress", *faces, "-o", str(tmp_path / "x")]) == 2
    assert "needs a model: --pretrained NAME" in capsys.readouterr().err
    assert main(["compress", "--pretrained", "tiny", "--checkpoint", "x.pt", *faces, "-o", str(tmp_path / "x")]) == 2
    assert "mutually exclusive" in capsys.readouterr().err


def test_decompress_of_a_file_from_an_unknown_model_names_it(zoo_env, tiny_run, tmp_path, capsys):
    """A .pcg whose decoder is in no zoo entry: one line naming the model id, nothing written."""
    from pycompgen.cli import main
    from pycompgen.codec.container import unpack
    from pycompgen.inference import compress_images, load_checkpoint_for_codec, read_images
    from pycompgen.models import load_for_eval
    import torch
    ck = load_checkpoint_for_codec(tiny_run / "approach3" / "best.pt")
    with torch.no_grad():                          # another decoder: same system, other weights
        for p in ck.models["g"].parameters():
            p.add_(0.01)
    data = compress_images(ck, read_images(_face_pngs(tmp_path / "in", 1), ck.image_size))
    f = tmp_path / "other.pcg"
    f.write_bytes(data)
    hdr, _ = unpack(data)
    assert main(["decompress", str(f), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert hdr.model_id in err and "not in the zoo" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
    assert load_for_eval(tiny_run / "approach3" / "best.pt").models  # the checkpoint itself is untouched


def test_fp16_failure_keeps_fp32_or_refuses(tiny_run, tmp_path):
    exp = _tool("zoo_export")
    with pytest.raises(ValueError, match="refusing"):
        exp.export(tiny_run, "t", None, zoo_dir=tmp_path / "z1", check_images=4, tolerance=-1.0, strict=True,
                   psnrs=(50.0,), log=lambda *a: None)
    e = exp.export(tiny_run, "t", None, zoo_dir=tmp_path / "z2", check_images=4, tolerance=-1.0,
                   psnrs=(50.0,), log=lambda *a: None)
    assert all(info["dtype"] == "float32" for info in e["stages"].values())
    from pycompgen.zoo import load
    pre = load("t", root=tmp_path / "z2")
    assert pre["approach3"].has_elm


def test_demo_without_entry_prints_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(tmp_path))
    assert _tool("demo_pretrained").main(["--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out.strip()
    assert "compgen-64" in out and "not in the zoo" in out and "\n" not in out


def test_shipped_entries_load_and_match_their_hashes(monkeypatch):
    monkeypatch.delenv("PYCOMPGEN_ZOO_DIR", raising=False)
    from pycompgen import zoo
    if "compgen-64" not in zoo.list():
        pytest.skip("compgen-64 is not exported into pycompgen/zoo yet")
    from pycompgen.data import synthetic_faces
    from pycompgen.inference import compress_images, decompress_bytes
    from pycompgen.metrics import ssim
    from pycompgen.cli.common import pretrained_stage
    for name in zoo.list():
        e = zoo.entry(name)
        pre = zoo.load(name)  # checks every file's sha256
        assert "non-commercial" in pre.card, name
        lc = pre[next(iter(pre))]
        x = torch.from_numpy(synthetic_faces(2, lc.image_size, seed=11)).permute(0, 3, 1, 2).float() / 255
        if lc.model_name == "began":  # a refiner: a crude face in, a face out that keeps the input's layout
            from pycompgen.evaluation.refiner import degrade, ssim_lowres
            from pycompgen.systems.began import refine
            crude = degrade(x, 16)
            out = refine(lc.models, crude)
            assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
            assert ssim_lowres(out, crude, 16) > 0.5 and float((out - crude).abs().mean()) > 1e-3, name
            continue
        if lc.model_name == "sketch2face":  # a translator (one variant): synthetic sketches in, faces out
            from pycompgen.data.unpaired import synthetic_sketch_images
            from pycompgen.systems.sketch2face import Sketch2Face
            sk = torch.from_numpy(synthetic_sketch_images(2, lc.image_size, seed=11))[:, None].float() / 255 * 2 - 1
            with torch.no_grad():
                out = Sketch2Face.sketch_to_face(lc.models, sk)
            assert out.shape == (2, 3, lc.image_size, lc.image_size) and float(out.abs().max()) <= 1, name
            assert e["variant"] == lc.stage and float(out.std()) > 1e-3, name
            continue
        sizes = []
        for q in zoo.qualities(e) or [None]:  # every rate point of a latent codec (edgediff: bit depth) round-trips
            ck = pretrained_stage(name, quality=q)
            f = compress_images(ck, x[:1])
            x_hat, _ = decompress_bytes(ck, f)
            assert float(ssim(x_hat.clamp(0, 1), x[:1]).mean()) > 0.15, (name, q)  # compgen-64 (edges): 0.25 on this face
            sizes.append(len(f))
        assert sizes == sorted(sizes), name  # quality 1 = the lowest rate
        if lc.model_name == "compgen" and "eb" not in lc.parts:
            assert "approach3" in pre and pre["approach3"].has_elm


def test_train_init_from_a_pretrained_entry(zoo_env, tmp_path, capsys):
    """train --init zoo:NAME fine-tunes from an entry (every stage's networks, later stages winning);
    zoo:NAME/STAGE takes one stage; another system's entry is a one-line error."""
    from pycompgen import zoo
    from pycompgen.cli import main
    from pycompgen.config import load_config
    from pycompgen.training import init_weights
    pre = zoo.load("tiny")
    cfg = load_config(TINY, ["train.stage=approach3"])
    w = init_weights("zoo:tiny", cfg)
    assert set(w) == {"f", "g", "h"}
    for k in ("g", "h"):  # approach 3's g and h (the last stage wins), step 1's f
        for n, v in pre["approach3"].models[k].state_dict().items():
            torch.testing.assert_close(w[k][n], v)
    one = init_weights("zoo:tiny/step1", cfg)
    assert set(one) == {"f", "g"}
    for n, v in pre["step1"].models["g"].state_dict().items():
        torch.testing.assert_close(one["g"][n], v)
    assert main(["train", "--config", TINY, "--stage", "approach3", "--init", "zoo:tiny", "--out",
                 str(tmp_path / "ft"), "train.epochs=1", "train.max_steps_per_epoch=1", "train.progress=false"]) == 0
    assert (tmp_path / "ft" / "last.pt").is_file()
    rc = main(["train", "--config", str(ROOT / "configs" / "began-tiny.yaml"), "--init", "zoo:tiny", "--out",
               str(tmp_path / "b"), "train.epochs=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "entry 'tiny' is a 'compgen' model, not 'began'" in err and len(err.splitlines()) == 1


def test_judge_pretrained_entry(zoo_env, capsys):
    from pycompgen.cli import main
    assert main(["judge", "--pretrained", "tiny", "--features", "zoo:tiny", "--n", "16", "--image-size", "32",
                 "--bootstraps", "5"]) == 0
    out = capsys.readouterr().out
    assert "zoo:tiny step1" in out and "zoo:tiny approach3" in out
