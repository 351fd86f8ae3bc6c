"""Compgen's generalisation levers (issue 17 §1): augmentation that keeps face and edge map aligned, h's dropout,
decoupled weight decay, the fixed training subset validated beside val, and the train/val sweep."""
import json
from pathlib import Path

import pytest
import torch

from pycompgen.config import load_config
from pycompgen.data.augment import Augment
from pycompgen.ops import canny
from pycompgen.systems import build_system
from pycompgen.training import make_loaders, train_local, train_subset_indices, train_subset_loader

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
AUG = ["data.augment_flip=true", "data.augment_shift=0.1", "data.augment_scale=0.1", "data.augment_rotate=10",
       "data.augment_jitter=0.2"]


def _cfg(tmp_path, *extra):
    return load_config(TINY, ["train.amp=off", f"out={tmp_path}", *extra])


def test_flips_alone_move_pixels_exactly_and_inactive_augment_is_the_identity():
    x = torch.rand(8, 3, 16, 16)
    y = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(8)]
    assert all(f or torch.equal(y[i], x[i]) for i, f in enumerate(flipped))
    assert 0 < sum(flipped) < 8
    assert Augment()(x, torch.Generator()) is x


def test_geometry_and_jitter_change_faces_within_range_and_are_seeded():
    x = torch.rand(6, 3, 32, 32)
    a = Augment(flip=True, shift=0.1, scale=0.1, rotate=10, jitter=0.2)
    y1, y2 = a(x, torch.Generator().manual_seed(3)), a(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2) and y1.shape == x.shape
    assert 0 <= float(y1.min()) and float(y1.max()) <= 1
    assert not torch.allclose(y1, x, atol=1e-3)
    # a small shift of a smooth image moves its content: correlation with the input stays high
    ramp = torch.linspace(0, 1, 32).expand(1, 3, 32, 32).contiguous()
    z = Augment(shift=0.03)(ramp, torch.Generator().manual_seed(0))
    assert float((z - ramp).abs().mean()) < 0.05


@pytest.mark.parametrize("key,value", [("augment_shift", 0.9), ("augment_rotate", -1), ("augment_jitter", 2)])
def test_bad_augment_values_are_refused_naming_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=f"data.{key}"):
        _cfg(tmp_path, f"data.{key}={value}")


@pytest.mark.parametrize("stage", ["approach1", "approach3"])
def test_augmentation_keeps_face_and_edge_map_aligned_and_is_off_in_validation(tmp_path, stage, one_thread):
    """The edge map of an augmented batch is the Canny map of the augmented face (not of the original)."""
    cfg = _cfg(tmp_path, f"train.stage={stage}", "train.psnr=inf", *AUG)
    from pycompgen.systems.compgen.networks import build_compgen
    nets = build_compgen(cfg.model, cfg.data.image_size)
    system = build_system(cfg, "cpu", {k: v.state_dict() for k, v in nets.items()})
    loader, _ = make_loaders(cfg)
    batch = next(iter(loader))
    x0 = batch.float() / 255
    b = system.prepare_batch(batch, torch.Generator().manual_seed(0))
    assert not torch.allclose(b["x"], x0, atol=1e-3)  # augmented
    edges = canny(b["x"], cfg.data.canny_low, cfg.data.canny_high, blur_sigma=cfg.data.blur_sigma)
    assert torch.equal(b["z"], edges)
    assert torch.equal(b["z_noisy"], b["z"])  # infinite PSNR: the channel passes the aligned map through
    system.eval_mode()
    v = system.prepare_batch(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(v["x"], x0)  # no augmentation in validation


def test_elm_dropout_is_random_in_training_only(one_thread):
    from pycompgen.systems.compgen.networks import build_compgen
    cfg = load_config(TINY, ["model.elm_dropout=0.5"])
    h = build_compgen(cfg.model, cfg.data.image_size)["h"]
    z = (torch.rand(4, 1, 32, 32) > 0.8).float()
    h.train()
    assert not torch.equal(h(z), h(z))
    h.eval()
    assert torch.equal(h(z), h(z))
    assert isinstance(build_compgen(load_config(TINY).model, 32)["h"].drop, torch.nn.Identity)


def test_elm_group_norm_normalises_each_image_alone(one_thread):
    """model.elm_norm=group: an image's h output in training does not depend on the other images of its batch
    (BatchNorm's does); a bad value is refused naming the key."""
    from pycompgen.systems.compgen.networks import build_compgen
    z = (torch.rand(4, 1, 32, 32) > 0.8).float()
    z[1:] = z[1:] * 5 + torch.randn(3, 1, 32, 32)  # the rest of the batch at another noise level
    for norm, alone in (("group", True), ("batch", False)):
        h = build_compgen(load_config(TINY, [f"model.elm_norm={norm}"]).model, 32)["h"].train()
        assert any(isinstance(m, torch.nn.GroupNorm) for m in h.modules()) == (norm == "group")
        assert torch.allclose(h(z)[:1], h(z[:1]), atol=1e-5) == alone
    with pytest.raises(ValueError, match="model.elm_norm"):
        load_config(TINY, ["model.elm_norm=layer"])


def test_flip_average_decodes_mirror_equivariantly(one_thread):
    """decode_edges(flip_average=True) is the mean of the decoding and the mirrored decoding of the mirrored input,
    so mirroring the edge map mirrors the output; without it, outputs are unchanged."""
    from pycompgen.systems.compgen.networks import build_compgen
    from pycompgen.systems.compgen.system import decode_edges
    torch.manual_seed(0)
    nets = build_compgen(load_config(TINY, ["model.elm_skips=true"]).model, 32)
    for m in nets.values():
        m.eval()
    z = (torch.rand(3, 1, 32, 32) > 0.8).float()
    with torch.no_grad():
        a, b = decode_edges(nets, z), decode_edges(nets, z.flip(-1)).flip(-1)
        avg = decode_edges(nets, z, flip_average=True)
        assert not torch.allclose(a, b, atol=1e-4)  # the networks themselves are not mirror-equivariant
        assert torch.allclose(avg, (a + b) / 2, atol=1e-6)
        assert torch.allclose(decode_edges(nets, z.flip(-1), flip_average=True), avg.flip(-1), atol=1e-6)


def test_ensemble_bench_scores_each_model_their_mean_and_its_mirror_average(one_thread):
    """bench/flip_average.py --ensemble: every model decodes the same noisy edge maps; the ensemble's figure is the
    SSIM of the mean decoding (so two copies of one model score as that model), the last of its mirror average."""
    import copy
    import importlib.util
    from types import SimpleNamespace
    from pycompgen.data import EdgeChannel
    from pycompgen.ops import ssim
    from pycompgen.systems.compgen.networks import build_compgen
    from pycompgen.systems.compgen.system import decode_edges
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_bench_flip", root / "bench" / "flip_average.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    nets = build_compgen(load_config(TINY, ["model.elm_skips=true"]).model, 32)
    other = build_compgen(load_config(TINY, ["model.elm_skips=true"]).model, 32)
    for m in [*nets.values(), *other.values()]:
        m.eval()
    faces = torch.rand(5, 3, 32, 32)
    ch = EdgeChannel(psnr=float("inf"))
    one, two = SimpleNamespace(models=nets), SimpleNamespace(models=copy.deepcopy(nets))
    r = mod.ensemble_ssim([one, two], ch, faces, 50.0, seed=3, batch=2)
    assert r["single"][0] == pytest.approx(r["single"][1]) and r["ensemble"] == pytest.approx(r["single"][0])
    r2 = mod.ensemble_ssim([one, SimpleNamespace(models=other)], ch, faces, 50.0, seed=3, batch=8)
    assert r2["single"][1] != pytest.approx(r2["single"][0])
    from pycompgen.ops import awgn
    z = awgn(ch.edges(faces), 50.0, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean = (decode_edges(nets, z).clamp(0, 1) + decode_edges(other, z).clamp(0, 1)) / 2
        flip = (decode_edges(nets, z, flip_average=True).clamp(0, 1)
                + decode_edges(other, z, flip_average=True).clamp(0, 1)) / 2
    assert r2["ensemble"] == pytest.approx(float(ssim(mean, faces, reduction="none").mean()), abs=1e-5)
    assert r2["ensemble_flip_average"] == pytest.approx(float(ssim(flip, faces, reduction="none").mean()), abs=1e-5)


def test_weight_decay_uses_adamw_on_weights_not_on_biases(tmp_path, one_thread):
    cfg = _cfg(tmp_path, "train.weight_decay=0.05")
    system = build_system(cfg, "cpu", None)
    opt = system.optimizers["main"]
    assert isinstance(opt, torch.optim.AdamW)
    decays = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert all(p.dim() >= 2 for p in decays[0.05]) and all(p.dim() < 2 for p in decays[0.0])
    assert isinstance(build_system(_cfg(tmp_path), "cpu", None).optimizers["main"], torch.optim.Adam)


def test_train_subset_indices_are_fixed_and_capped():
    a = train_subset_indices(500, 64, 1000, seed=0)
    assert a == train_subset_indices(500, 64, 1000, seed=0) and len(a) == 64 == len(set(a))
    assert a != train_subset_indices(500, 64, 1000, seed=1)
    assert len(train_subset_indices(500, 2000, 100)) == 100 and train_subset_indices(500, 64, 0) == []


def test_runs_report_the_training_subset_beside_validation(tmp_path, one_thread):
    cfg = _cfg(tmp_path, "train.stage=step1", "train.epochs=2")
    train_local(cfg, verbose=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["trainsub_images"] == r["val_images"]
        assert r["gap_ssim"] == pytest.approx(r["trainsub_ssim"] - r["val_ssim"])
    off = _cfg(tmp_path / "off", "train.stage=step1", "train.epochs=1", "train.train_subset=0")
    train_local(off, verbose=False)
    row = json.loads((tmp_path / "off" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "trainsub_ssim" not in row and "gap_ssim" not in row
    loader, val = make_loaders(cfg)
    sub = train_subset_loader(cfg, loader.dataset, len(val.dataset))
    assert len(sub.dataset) == min(cfg.train.train_subset, len(val.dataset))


def test_zoo_stage_as_checkpoint_and_the_train_val_sweep(tmp_path, one_thread):
    """A zoo entry's step 1 written as a training checkpoint loads with the same weights; the train/val sweep
    reports both splits and their gap, and the levers table shows it."""
    from pycompgen import zoo
    from pycompgen.data import synthetic_faces
    from pycompgen.data.dataset import FaceArray
    from pycompgen.evaluation.generalise import levers_table, train_subset, train_val_sweep
    from pycompgen.models import load_for_eval
    pre = zoo.load("compgen-64-plus")
    path = pre.to_checkpoint("step1", tmp_path / "step1" / "best.pt")
    lc = load_for_eval(path, label="step1")
    for k in ("f", "g"):
        for a, b in zip(lc.models[k].state_dict().values(), pre["step1"].models[k].state_dict().values()):
            assert torch.equal(a, b)
    faces = FaceArray(synthetic_faces(24, 64, seed=0))
    sub = train_subset(faces, 8, seed=0)
    assert len(sub) == 8
    with pytest.raises(ValueError, match="train_subset"):
        train_subset(faces, 0)
    res = train_val_sweep(pre.config, {"step1": lc, "approach3": pre["approach3"]}, sub, faces, [50.0, 0.0],
                          tmp_path / "sweep", max_val=8)
    assert res["train"]["n_images"] == 8 and res["val"]["n_images"] == 8
    g = res["gap"]["approach3"]["50"]["ssim"]
    assert g == pytest.approx(res["train"]["approaches"]["approach3"]["50"]["ssim"]
                              - res["val"]["approaches"]["approach3"]["50"]["ssim"])
    table = levers_table({"base": res}, [50.0, 0.0])
    assert table[2].startswith("| base |") and f"{g:.3f}" in table[2]


def test_model_card_shows_training_faces_beside_validation():
    from pycompgen.zoo.card import gap_table
    val = {"ae": {"ssim": 0.94}, "approaches": {"approach3": {"50": {"ssim": 0.55}, "0": {"ssim": 0.42}}}}
    train = {"ae": {"ssim": 0.95}, "approaches": {"approach3": {"50": {"ssim": 0.70}, "0": {"ssim": 0.50}}}}
    lines = gap_table(train, val).splitlines()
    assert lines[2] == "| AE (step 1, g(f(x))) | – | 0.9500 | 0.9400 | 0.0100 |"
    assert lines[3] == "| approach3 | 50 | 0.7000 | 0.5500 | 0.1500 |"
    assert len(lines) == 5


@pytest.mark.parametrize("stage,averaged", [("step1", {"g"}), ("approach1", {"h"}), ("approach3", {"h", "g"})])
def test_compgen_ema_averages_the_trainable_decoder_side(tmp_path, stage, averaged, one_thread):
    """train.ema_decay > 0 (a lever of bench/generalise.py): Compgen averages h and g where the stage trains them;
    off by default."""
    from pycompgen.systems.compgen.networks import build_compgen
    cfg = _cfg(tmp_path, f"train.stage={stage}", "train.ema_decay=0.9", "train.psnr=inf")
    init = {k: v.state_dict() for k, v in build_compgen(cfg.model, cfg.data.image_size).items()}
    assert build_system(_cfg(tmp_path, f"train.stage={stage}", "train.psnr=inf"), "cpu", init).ema == {}
    system = build_system(cfg, "cpu", init)
    assert set(system.ema) == averaged
    loader, _ = make_loaders(cfg)
    system.train_step(system.prepare_batch(next(iter(loader)), torch.Generator().manual_seed(0)))
    system.update_ema()
    for k in averaged:
        live = dict(system.models[k].named_parameters())
        assert any(not torch.equal(p, live[n]) for n, p in system.ema[k].named_parameters())


def test_datasize_bench_fits_log_linear_validation_ssim_and_solves_for_the_goal(tmp_path):
    """bench/generalise_datasize.py: points sorted by the faces each result trained on (a result without
    data.train_limit counts as the whole split), a least-squares line per channel PSNR in log2(N), and the N where
    the 50 dB line meets the goal; one line when a result is missing."""
    import importlib.util
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_bench_datasize", root / "bench" / "generalise_datasize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def write(name, n, val50, limit=True):
        ss = lambda v: {"approach3": {"50": {"ssim": v}, "0": {"ssim": 0.44}}}  # noqa: E731
        faces = {"train_split": 16000, **({"trained_on": {"lever": n}} if limit else {})}
        (tmp_path / f"generalise-{name}.json").write_text(json.dumps(
            {"faces": faces, "levers": {"lever": {"train": ss(val50 + 0.1), "val": ss(val50)}}}))

    write("a", 4000, 0.56)
    write("b", 2000, 0.54)
    write("c", 16000, 0.60, limit=False)   # the whole split
    assert mod.main(["--results", "a,b,c", "--name", "t", "--goal", "0.64", "--dir", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "generalise-datasize-t.json").read_text())
    assert [p["n"] for p in doc["points"]] == [2000, 4000, 16000]
    assert doc["fit_val"]["50"]["b_per_doubling"] == pytest.approx(0.02)
    assert doc["fit_val"]["0"]["b_per_doubling"] == pytest.approx(0.0, abs=1e-12)
    assert doc["faces_for_goal_estimate"] == pytest.approx(64000, rel=1e-6)
    assert "| 16,000 | 0.700 | 0.600 |" in (tmp_path / "generalise-datasize-t.md").read_text()
    assert (tmp_path / "generalise-datasize-t.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no .*generalise-missing.json"):
        mod.main(["--results", "a,missing", "--dir", str(tmp_path)])
