"""What the benches measure, as library functions (pycompgen.evaluation: rd, curves, machine, edgediff), on tiny
synthetic faces and untrained tiny checkpoints: no data set, no training, seconds."""
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pycompgen import metrics as M
from pycompgen.evaluation import curves, machine, rd
from pycompgen.evaluation import edgediff as ED

from conftest import synthetic_face_batch
from test_evaluation import tiny_cfg, write_ckpt

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    p = Path(path)
    return p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def faces():
    torch.manual_seed(0)
    return synthetic_face_batch(4, 32).float() / 255


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Untrained tiny Compgen checkpoints (test_evaluation's): two approach 3, one step 1 with an entropy bottleneck."""
    d = tmp_path_factory.mktemp("rd")
    cfg = tiny_cfg()
    return {"compgen": str(write_ckpt(d / "a3.pt", cfg, "approach3", seed=0)),
            "approach3 @ 10 dB": str(write_ckpt(d / "a3-10.pt", cfg, "approach3", seed=1)),
            "eb": str(write_ckpt(d / "eb.pt", tiny_cfg("model.entropy_bottleneck=true"), "step1", seed=2))}


@pytest.fixture(scope="module")
def edge_pts(ckpts, faces):
    lines = []
    pts = rd.edge_points(ckpts["compgen"], faces, log=lines.append)
    return pts, lines


# -- points ----------------------------------------------------------------------------------------------------------
def test_metrics_and_point_on_a_known_pair():
    x = torch.full((2, 3, 32, 32), 0.5)
    m = rd.metrics(x, x)
    assert m["psnr"] == M.PSNR_CAP and m["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    x_hat = x + 0.1                                                    # MSE 0.01: PSNR exactly 20 dB
    p = rd.point("toy", [100, 200], 20, x_hat, x, quality=7)
    assert p["codec"] == "toy" and p["n"] == 2 and p["quality"] == 7 and p["header_bytes"] == 20
    assert p["bytes_mean"] == 150.0
    assert p["bpp"] == pytest.approx(8 * 150 / 1024) and p["bpp_payload"] == pytest.approx(8 * 130 / 1024)
    assert p["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert p["ssim"] < 1.0
    assert rd.point("clamped", [1], 0, x + 2.0, x)["psnr"] == pytest.approx(rd.metrics(torch.ones_like(x), x)["psnr"])


def test_edge_points_and_latent_point_on_real_files(ckpts, faces, edge_pts):
    from pycompgen.systems.compgen.networks import compgen_latent_shape
    pts, lines = edge_pts[0], list(edge_pts[1])
    assert [p["canny"] for p in pts] == [list(t) for t in rd.THRESHOLDS] and len(lines) == len(rd.THRESHOLDS)
    for p in pts:
        assert p["n"] == 4 and p["header_bytes"] > 0 and 0 < p["bpp_payload"] < p["bpp"]
        assert p["bpp"] == pytest.approx(8 * p["bytes_mean"] / (32 * 32))
        assert -1 <= p["ssim"] <= 1 and p["ms_encode"] > 0 and p["ms_decode"] > 0
    bpp = [p["bpp_payload"] for p in pts]
    assert bpp == sorted(bpp, reverse=True) and bpp[0] > bpp[-1]     # higher thresholds: fewer edges, fewer bits
    lp = rd.latent_point("AE", ckpts["eb"], faces, log=lines.append)
    cfg = tiny_cfg()
    assert lp["codec"] == "AE" and lp["n"] == 4 and 0 < lp["bpp_payload"] < lp["bpp"]
    assert lp["latent_values"] == math.prod(compgen_latent_shape(cfg.model, 32))
    assert lines[-1].startswith("AE: ")


def test_equal_bytes_and_markdown(faces, edge_pts):
    from pycompgen.codec.baselines import sweep
    u8 = np.ascontiguousarray((faces * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    points = {"Compgen (edge map, approach 3)": edge_pts[0],
              "jpeg": sweep(u8, "jpeg", [1, 50, 95])}
    eq = rd.equal_bytes(points, ["jpeg"])
    ref = next(p for p in points["Compgen (edge map, approach 3)"] if p["canny"] == [0.30, 0.60])
    assert eq["bpp"] == ref["bpp"] and eq["compgen"]["ssim"] == ref["ssim"]
    assert set(eq["codecs"]) == {"jpeg"} and eq["codecs"]["jpeg"]["target_bpp"] == ref["bpp"]
    grid = {"ssim": {"range -5:50 dB": {"50": 0.5, "0": 0.25}}, "test_psnr_db": [50.0, 0.0], "edge_density": 0.1,
            "avg_power_snr_db": {"50": 40.0, "0": -10.0}}
    md = rd.rd_markdown(points, eq, grid, 4, "python bench/rd.py", "2026-01-01",
                        {"cpu": "toy cpu", "threads": 2})
    assert md[0].startswith("# Rate–distortion on 4 CelebA") and "toy cpu, 2 threads" in md[1]
    n_rows = sum(len(v) for v in points.values())
    rows = [line for line in md if line.startswith("| Compgen (edge map") or line.startswith("| jpeg |")]
    assert len(rows) == n_rows + 1                                     # every point, and jpeg at equal bytes
    assert md[-1] == "| range -5:50 dB | 0.5000 | 0.2500 |"
    t1 = {"CVAE": {"1-ssim": 0.3, "1-ms_ssim": 0.1, "l1": 0.2, "l2": 0.05},
          "Compgen AE+Mask": {"1-ssim": 0.1, "1-ms_ssim": 0.05, "l1": 0.1, "l2": 0.01}}
    tmd = rd.table1_markdown(t1)
    assert tmd[2] == "| CVAE | 0.300 | 0.100 | 0.2000 | 0.0500 | 0.307, 0.067, 0.439, 0.475 |"
    assert tmd[3].endswith(" | — |")                                   # no study figure for "+Mask" alone


def test_channel_grid_and_its_plot(ckpts, faces, tmp_path):
    lines = []
    g = rd.channel_grid({"compgen": ckpts["compgen"], "approach3 @ 10 dB": ckpts["approach3 @ 10 dB"],
                         "eb": "ignored"}, faces, log=lines.append)
    assert list(g["ssim"]) == ["range -5:50 dB", "10 dB"] and len(lines) == 2
    assert g["test_psnr_db"] == rd.GRID_TEST
    for row in g["ssim"].values():
        assert list(row) == [f"{p:g}" for p in rd.GRID_TEST] and all(-1 <= v <= 1 for v in row.values())
    assert 0 < g["edge_density"] < 1
    assert g["avg_power_snr_db"]["10"] == pytest.approx(10 + 10 * math.log10(g["edge_density"]))
    assert g["ssim"]["range -5:50 dB"] != g["ssim"]["10 dB"]              # two different networks
    assert _is_png(rd.plot_grid(g, tmp_path / "grid.png"))


def test_table1_on_untrained_tiny_models(tmp_path, faces):
    """bench/judge.py's smoke run dir (untrained tiny Compgen, CVAE, DCGAN) gives every row with and without the mask."""
    spec = importlib.util.spec_from_file_location("_bench_judge", ROOT / "bench" / "judge.py")
    judge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(judge)
    d = judge._smoke_run_dir(tmp_path)
    ck = {"CVAE": d / "cvae" / "best.pt", "DCGAN": d / "dcgan" / "best.pt",
          "compgen-ae": d / "compgen" / "step1" / "best.pt", "compgen": d / "compgen" / "approach3" / "best.pt"}
    t1 = rd.table1(ck, faces)
    labels = ["CVAE", "DCGAN", "Compgen AE", "Compgen approach 3 (edges)", "JPEG q85"]
    assert list(t1) == [k for label in labels for k in (label, label + "+Mask")]
    for v in t1.values():
        assert set(v) >= {"1-ssim", "1-ms_ssim", "l1", "l2"}
    assert t1["JPEG q85"]["1-ssim"] < 0.1 < t1["CVAE"]["1-ssim"]       # JPEG at q85 is close, untrained nets are not
    assert t1["JPEG q85+Mask"] != t1["JPEG q85"]


def test_rd_plot_writes_three_pngs(tmp_path):
    pts = {"a": [{"bpp": 0.5, "ssim": 0.6, "ms_ssim": 0.7, "psnr": 20.0},
                 {"bpp": 0.2, "ssim": 0.4, "ms_ssim": 0.5, "psnr": 18.0}],
           "b": [{"bpp": 0.3, "ssim": 0.5, "ms_ssim": 0.6, "psnr": 19.0}]}
    files = rd.plot(pts, tmp_path / "rd")
    assert [Path(f).name for f in files] == ["rd_ssim.png", "rd_ms_ssim.png", "rd_psnr.png"]
    assert all(_is_png(f) for f in files)


# -- curves ----------------------------------------------------------------------------------------------------------
def test_read_curves_keeps_the_last_record_of_an_epoch_and_plots(tmp_path):
    s = tmp_path / "step1"
    s.mkdir()
    recs = [{"epoch": 1, "val_ssim": 0.1, "train_loss": 1.0}, {"epoch": 2, "val_ssim": 0.2},
            {"epoch": 2, "val_ssim": 0.3, "epoch_time_s": 4.0}, {"epoch": 3, "val_ssim": None},
            {"epoch": 4, "val_ssim": 0.4, "trainsub_ssim": 0.5, "gap_ssim": 0.1}]
    (s / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    c = curves.read_curves(tmp_path, ["step1", "approach3"])
    assert list(c) == ["step1"]                                        # a stage without metrics.jsonl is left out
    assert [r["epoch"] for r in c["step1"]] == [1, 2, 3, 4]
    assert c["step1"][1] == {"epoch": 2, "val_ssim": 0.3, "val_loss": None, "train_loss": None,
                             "epoch_time_s": 4.0, "images_per_s": None, "trainsub_ssim": None, "gap_ssim": None}
    assert c["step1"][3]["trainsub_ssim"] == 0.5 and c["step1"][3]["gap_ssim"] == 0.1  # the training subset
    out = curves.plot_curves(c, tmp_path / "figs" / "curves.png", title="t")
    assert out == str(tmp_path / "figs" / "curves.png") and _is_png(out)


# -- machine ---------------------------------------------------------------------------------------------------------
def test_machine_description():
    info = machine.machine_info("cpu")
    assert {"date", "command", "python", "torch", "cpu_model", "cpu_cores", "torch_threads",
            "load_average_at_start", "device"} <= set(info) and "gpu" not in info
    assert info["cpu_cores"] == os.cpu_count() and info["torch"] == torch.__version__ and info["device"] == "cpu"
    la = machine.load_average()
    assert len(la) == 3 and all(isinstance(v, float) and v >= 0 for v in la)
    assert len(info["load_average_at_start"]) == 3
    assert machine.machine_name("cpu") == machine.machine_name(torch.device("cpu")) == f"cpu{os.cpu_count()}"
    rt = machine.runtime_info(torch.device("cpu"))
    assert list(rt) == ["platform", "python", "torch", "cpu_count", "torch_threads", "device", "ops"]
    assert rt["device"] == "cpu" and rt["cpu_count"] == os.cpu_count() and rt["ops"]
    s = machine.machine_summary()
    assert list(s) == ["cpu", "cores", "threads", "torch"] and s["cpu"] == machine.cpu_model() != ""


# -- edge-guided diffusion: reporting --------------------------------------------------------------------------------
def _edgediff_res():
    ab = [{"bits": b, "mode": m, "bpp": 0.1 * b + (0.01 if m == "SDC" else 0), "bpp_payload": 0.1 * b - 0.05,
           "steps": 2, "psnr": 20.0 + b, "ssim": 0.5, "ms_ssim": 0.6, "face_psnr": 21.0, "face_ssim": 0.55,
           "face_ms_ssim": 0.65} for b in (2, 4) for m in ("W/O", "SDC", "full")]
    comp = [{"max_frac": f, "regions": r, "share_lost": f * r, "strategy": s, "psnr": 20 - f, "ssim": 0.5,
             "ms_ssim": 0.6, **({"lost_psnr": 12.5} if r else {})} for f, r in ((0.0, 0), (0.125, 2)) for s in
            ("zeros", "complete_no_edges", "complete_edges", "pixel_inpaint")]   # older results: no lost_psnr
    return {"ablation": ab, "completion": comp, "edge_f1": [{"bits": 2, "bpp": 0.2, "edge_f1": 0.4}],
            "timing": {"encode_s": 0.01, "decode_wo_s": 0.02, "steps": 2, "complete_steps": 3}}


def test_edgediff_plots_markdown_and_rd_overlay(tmp_path):
    res = _edgediff_res()
    figs = ED.plot(res, tmp_path / "plots")
    assert [p.name for p in figs] == ["ablation_psnr.png", "ablation_ssim.png", "ablation_ms_ssim.png",
                                      "completion_psnr.png"] and all(_is_png(p) for p in figs)
    doc = {"machine": {"name": "toy"}, "budget": {"vae": 1}, "n_val": 8, "command": "cmd", "results": res}
    md = ED.markdown(doc).splitlines()
    assert md[0] == "# Edge-guided diffusion compression on toy"
    assert sum(line.startswith("| 2 | ") or line.startswith("| 4 | ") for line in md) == 6 + 1   # ablation + F1
    assert "| 0.1250 | 2 | 0.250 | zeros | 19.88 | 0.5000 | 0.6000 | 12.50 | 0.000 |" in md  # lost pixels, extra bpp
    assert "| 0.0000 | 0 | 0.000 | zeros | 20.00 | 0.5000 | 0.6000 |  | 0.000 |" in md
    assert md[-1] == "Wall time per image (s): encode_s 0.010, decode_wo_s 0.020, steps 2, complete_steps 3"
    notes = []
    assert ED.rd_overlay(res, 8, tmp_path / "missing.json", tmp_path, note=notes.append) == [] and "no " in notes[0]
    src = tmp_path / "rd-toy.json"
    src.write_text(json.dumps({"val_images": 4, "points": {"jpeg": [{"bpp": 1.0, "ssim": 0.9, "ms_ssim": 0.9,
                                                                      "psnr": 30.0}]}}))
    assert ED.rd_overlay(res, 8, src, tmp_path, note=notes.append) == [] and "measured 4 faces" in notes[1]
    files = ED.rd_overlay(res, 4, src, tmp_path, note=notes.append)
    assert len(notes) == 2 and [Path(f).parent for f in files] == [tmp_path / "rd"] * 3
    assert all(_is_png(f) for f in files)


def test_edgediff_metrics_on_a_known_pair():
    from pycompgen.evaluation.masks import face_ellipse_mask
    x = torch.full((2, 3, 32, 32), 0.5)
    m = ED.metrics(x, x + 0.1, face_ellipse_mask(32))
    assert m["psnr"] == pytest.approx(20.0, abs=1e-3) and m["face_psnr"] == pytest.approx(20.0, abs=1e-3)
    assert set(m) == {"psnr", "ssim", "ms_ssim", "face_psnr", "face_ssim", "face_ms_ssim"}
    same = ED.metrics(x, x, face_ellipse_mask(32))
    assert same["ssim"] == pytest.approx(1.0, abs=1e-5) and same["face_ssim"] == pytest.approx(1.0, abs=1e-5)
