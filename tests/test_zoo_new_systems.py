"""Zoo entries of Sketch2face and the edge-guided diffusion compressor: tiny runs on synthetic data (Sketch2face
pretrain + latent, edgediff vae -> een -> denoiser, one or two steps each) exported with tools/zoo_export.py into a
temporary zoo and used from Python and the CLI (generate from sketches; compress / decompress at every --quality
and --denoise, the file's hash finding the entry; one-line errors)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from conftest import load_tool

from pycompgen.config import load_config
from pycompgen.training.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
S2F, ED = "sketch2face-tiny", "edgediff-tiny"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_module):
    """One intra-op thread for the module: tiny networks run several times faster on a shared 2-core machine."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _one_thread):
    root = tmp_path_factory.mktemp("newsys")
    torch.manual_seed(0)
    cfg = load_config(str(ROOT / "configs" / "sketch2face-tiny.yaml"), ["train.amp=off"])
    cfg.out = str(root / "s2f")
    run_pipeline(cfg, ["pretrain", "latent"], verbose=False)
    cfg = load_config(str(ROOT / "configs" / "edgediff-tiny.yaml"), ["train.epochs=1", "train.max_steps_per_epoch=1"])
    cfg.out = str(root / "ed")
    run_pipeline(cfg, verbose=False)
    exp, zoo = load_tool("zoo_export"), root / "zoo"
    exp.export_sketch2face(root / "s2f", "latent", S2F, zoo_dir=zoo, check_images=8, log=lambda *a: None)
    assert exp.main(["--checkpoint", str(root / "ed" / "denoiser" / "best.pt"), "--name", ED, "--zoo-dir", str(zoo),
                     "--check-images", "4"]) == 0
    return root, zoo


@pytest.fixture
def zoo_env(runs, monkeypatch):
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(runs[1]))
    return runs


def _faces(folder, n=2, size=32):
    from pycompgen.data import synthetic_faces
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(synthetic_faces(n, size, seed=3)):
        assert cv2.imwrite(str(folder / f"face{i}.png"), img[:, :, ::-1])
    return sorted(str(p) for p in folder.iterdir())


def _png(path):
    img = cv2.imread(str(path))
    assert img is not None, path
    return img[:, :, ::-1]


def _u8(x):  # (1,3,H,W) in [0,1] -> HxWx3 uint8, as the verbs write PNGs
    return (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_sketch2face_entry_holds_one_variant_without_critics(zoo_env):
    from pycompgen import zoo
    from pycompgen.models import load_for_eval
    from pycompgen.systems.sketch2face import Sketch2Face
    root, zdir = zoo_env
    e = zoo.entry(S2F)
    assert e["model"] == "sketch2face" and e["variant"] == "latent" and list(e["stages"]) == ["latent"]
    st = e["stages"]["latent"]
    assert st["parts"] == ["E_f", "E_s", "G_f", "G_s", "T_fs", "T_sf"] and st["dtype"] == "float16"
    pl = torch.load(zdir / st["file"], weights_only=True)
    assert all(t.dtype == torch.float16 for sd in pl["models"].values() for t in sd.values() if t.is_floating_point())
    card = zoo.card_text(S2F)
    assert "variant" in card and "latent" in card and "non-commercial" in card and "--sketches" in card
    lc = zoo.load(S2F)["latent"]
    ref = load_for_eval(root / "s2f" / "latent" / "best.pt", expect_model="sketch2face")
    sk = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = Sketch2Face.sketch_to_face(ref.models, sk), Sketch2Face.sketch_to_face(lc.models, sk)
    assert a.shape == (2, 3, 32, 32) and (a - b).abs().max() < 1e-2


def test_sketch2face_export_cli_picks_the_variant(runs, tmp_path, capsys):
    exp = load_tool("zoo_export")
    assert exp.main(["--run-dir", str(runs[0] / "s2f"), "--variant", "pretrain", "--name", "p", "--zoo-dir",
                     str(tmp_path), "--check-images", "4"]) == 0
    e = json.loads((tmp_path / "manifest.json").read_text())["entries"]["p"]
    assert e["variant"] == "pretrain" and e["stages"]["pretrain"]["parts"] == ["E_f", "E_s", "G_f", "G_s"]
    assert exp.main(["--run-dir", str(runs[0] / "s2f"), "--variant", "cycle", "--name", "c", "--zoo-dir",
                     str(tmp_path)]) == 2
    assert "no checkpoint of variant 'cycle'" in capsys.readouterr().err


def test_generate_writes_one_png_per_sketch_from_grayscale_sketches(zoo_env, tmp_path, capsys):
    from pycompgen import zoo
    from pycompgen.cli import main
    from pycompgen.data.unpaired import read_sketches
    from pycompgen.systems.sketch2face import Sketch2Face
    paths = load_tool("demo_pretrained").write_sketches(tmp_path / "sk", n=3)   # 200x200, dark strokes on white
    out = tmp_path / "gen"
    assert main(["generate", "--pretrained", S2F, "--sketches", str(tmp_path / "sk"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("sketch_*.png")) == [p.stem + ".png" for p in paths]
    assert (out / "sketches_p000.png").is_file()
    assert json.loads((out / "generate.json").read_text())["variant"] == "latent"
    # the training data's preprocessing (grayscale, centre crop and resize, [-1, 1]), latent means: deterministic
    sk, files = read_sketches(tmp_path / "sk", 32)
    x = torch.from_numpy(sk)[:, None].float() / 255 * 2 - 1
    with torch.no_grad():
        want = (Sketch2Face.sketch_to_face(zoo.load(S2F)["latent"].models, x) + 1) / 2
    for i, f in enumerate(files):
        assert (_png(out / f"{f.stem}.png") == _u8(want[i:i + 1])).all()
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    for args, msg in ((["--sketches", str(tmp_path / "empty")], "no sketch images in"),
                      (["--sketches", str(tmp_path / "sk"), "--unconditional", "4"], "--unconditional is not "
                                                                                          "supported by")):
        assert main(["generate", "--pretrained", S2F, *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_edgediff_entry_one_weights_file_for_every_rate_point(zoo_env):
    from pycompgen import zoo
    e = zoo.entry(ED)
    pts = e["rate_points"]
    assert [(p["quality"], p["bits"]) for p in pts] == [(1, 3), (2, 5)] and all(p["bpp"] > 0 for p in pts)
    assert len({p["file"] for p in pts}) == 1 and e["default_quality"] == 2 == zoo.qualities(e)[-1]  # eval_bits 5
    assert zoo.entry_bytes(e) == pts[0]["bytes"] and set(pts[0]["parts"]) == {"vae", "eb", "een", "unet",
                                                                               "control", "null"}
    assert all(0 <= p[k] <= 1 for p in pts for k in ("ssim", "ssim_wo", "ssim_sdc"))
    assert zoo.load(ED)["denoiser"].bits == 5 and zoo.load(ED, quality=1)["denoiser"].bits == 3
    assert "--denoise" in zoo.card_text(ED) and "non-commercial" in zoo.card_text(ED)


def test_edgediff_roundtrip_at_every_quality_and_denoise_mode(zoo_env, tmp_path):
    from pycompgen import zoo
    from pycompgen.cli import main
    from pycompgen.codec.container import unpack
    from pycompgen.inference import find_decoder
    from pycompgen.systems.edgediff import receiver as R
    faces = _faces(tmp_path / "in")
    for q, bits in ((1, 3), (2, 5)):
        assert main(["compress", "--pretrained", ED, "--quality", str(q), *faces, "-o", str(tmp_path / f"q{q}")]) == 0
        files = sorted((tmp_path / f"q{q}").glob("*.pcg"))
        assert [p.stem for p in files] == ["face0", "face1"]
        data = files[0].read_bytes()
        assert unpack(data)[0].params["precision"] == bits
        lc = find_decoder(data)                                  # the zoo entry from the file's system + hash
        assert lc.model_name == "edgediff" and lc.path.endswith("denoiser.pt")
        m = zoo.load(ED, quality=q)["denoiser"].models
        c = m["eb"].receiver_config()
        y_hat, b = R.decompress(m, c, data, "f")
        assert b == bits
        for mode, want in (("none", R.decode(m, y_hat)), ("full", R.receive(m, c, y_hat, bits, "full"))):
            out = tmp_path / f"d{q}{mode}"
            assert main(["decompress", *map(str, files), "-o", str(out), "--denoise", mode]) == 0
            assert (_png(out / "face0.png") == _u8(want)).all(), (q, mode)
        assert main(["decompress", "--pretrained", ED, "--quality", str(q), *map(str, files), "-o",
                     str(tmp_path / f"e{q}")]) == 0                      # default: full
        assert (_png(tmp_path / f"e{q}" / "face0.png") == _png(tmp_path / f"d{q}full" / "face0.png")).all()
        assert main(["decompress", str(files[0]), "-o", str(tmp_path / f"s{q}"), "--denoise", "sdc"]) == 0


def test_edgediff_quality_out_of_range_and_denoise_elsewhere_are_one_line(zoo_env, tmp_path, capsys):
    from pycompgen.cli import main
    from pycompgen.config import load_config
    from pycompgen.inference import compress_images, load_checkpoint_for_codec
    from pycompgen.models import save_checkpoint
    from pycompgen.systems import build_networks
    faces = _faces(tmp_path / "in", 1)
    assert main(["compress", "--pretrained", ED, "--quality", "3", *faces, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--quality 3 is out of range for pretrained model 'edgediff-tiny' (1..2" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    # a latent file of another system: --denoise other than the default is refused, nothing written
    cfg = load_config(str(ROOT / "configs" / "tiny.yaml"), ["model.entropy_bottleneck=true", "train.stage=step1"])
    nets = build_networks(cfg)
    nets["eb"].update()
    ck = save_checkpoint(tmp_path / "ae.pt", {"model": "compgen", "stage": "step1", "epoch": 0,
                                              "config": cfg.to_dict(),
                                              "models": {k: nets[k].state_dict() for k in ("f", "g", "eb")}})
    lc = load_checkpoint_for_codec(ck)
    (tmp_path / "ae.pcg").write_bytes(compress_images(lc, torch.rand(1, 3, 32, 32)))
    assert main(["decompress", "--checkpoint", str(ck), str(tmp_path / "ae.pcg"), "-o", str(tmp_path / "d"),
                 "--denoise", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--denoise none applies to edgediff files only" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()
    assert main(["decompress", "--checkpoint", str(ck), str(tmp_path / "ae.pcg"), "-o", str(tmp_path / "d"),
                 "--denoise", "full"]) == 0


def test_edgediff_with_a_checkpoint_path(zoo_env, tmp_path, capsys):
    from pycompgen.cli import main
    run = zoo_env[0] / "ed"
    faces = _faces(tmp_path / "in", 1)
    ck = str(run / "denoiser" / "best.pt")
    assert main(["compress", "--checkpoint", ck, *faces, "-o", str(tmp_path / "f.pcg")]) == 0
    assert main(["decompress", "--checkpoint", ck, str(tmp_path / "f.pcg"), "-o", str(tmp_path / "d"),
                 "--denoise", "none"]) == 0
    assert _png(tmp_path / "d" / "f.png").shape == (32, 32, 3)
    capsys.readouterr()
    assert main(["compress", "--checkpoint", str(run / "vae" / "best.pt"), *faces, "-o", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks trained een, unet, control, null" in err and len(err.splitlines()) == 1


def test_checksum_mismatch_names_the_file(runs, tmp_path, monkeypatch):
    from pycompgen import zoo
    bad = tmp_path / "zoo"
    shutil.copytree(runs[1], bad)
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(bad))
    for name in (S2F, ED):
        info = next(iter(zoo.entry(name)["stages"].values()))
        f = bad / info["file"]
        data = bytearray(f.read_bytes())
        data[-100] ^= 0xFF
        f.write_bytes(bytes(data))
        with pytest.raises(ValueError) as ei:
            zoo.load(name)
        msg = str(ei.value)
        assert "\n" not in msg and str(f) in msg and info["sha256"] in msg and "checksum mismatch" in msg


def test_zoo_list_and_info_show_the_new_systems(zoo_env, capsys):
    from pycompgen.cli import main
    assert main(["zoo", "list"]) == 0
    rows = {r.split()[0]: r for r in capsys.readouterr().out.splitlines()[2:]}
    assert "sketch2face" in rows[S2F] and "edgediff" in rows[ED] and " 2 " in rows[ED]
    for name in (S2F, ED):
        assert main(["zoo", "info", name]) == 0
        assert f"# Model card: `{name}`" in capsys.readouterr().out
