"""Compgen with a colour hint (issue 17 §2): the hint codec is bit-exact, h refuses a missing or wrong hint, the
edges+hint payload round-trips through .pcg files, a wrong-size hint or a file of another model is refused with a
one-line error, and a tiny model trains with hints drawn at several bit depths."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pycompgen.codec.hint import SCALES, decode_hint, dequantise, encode_hint, quantise, thumbnail

TINY = str(Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml")
HINT = ["model.hint_size=4", "model.hint_bits=[2,3,5]"]


def _faces(n, size=32, seed=0):
    from pycompgen.data import synthetic_faces
    return torch.from_numpy(synthetic_faces(n, size, seed=seed)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("size", [1, 4, 8])
def test_hint_stream_round_trips_bit_exactly(bits, size):
    g = torch.Generator().manual_seed(bits * 10 + size)
    smooth = thumbnail(_faces(3, 64, seed=bits), size)
    for t in (smooth, torch.rand(2, 3, size, size, generator=g), torch.zeros(1, 3, size, size),
              torch.ones(1, 3, size, size)):
        q = quantise(t, bits)
        assert int(q.min()) >= 0 and int(q.max()) <= 2 ** bits - 1
        data, scale = encode_hint(q, bits)
        assert 0 <= scale < len(SCALES) ** 2
        back = decode_hint(data, q.shape[0], size, bits, scale)
        np.testing.assert_array_equal(back, q.numpy())


def test_hint_quantiser_and_rate():
    x = _faces(8, 64)
    t = thumbnail(x, 8)
    assert t.shape == (8, 3, 8, 8)
    torch.testing.assert_close(t[:, :, 0, 0], x[:, :, :8, :8].mean((2, 3)))
    for bits in (2, 4):
        err = (dequantise(quantise(t, bits), bits) - t).abs().max()
        assert float(err) <= 0.5 / (2 ** bits - 1) + 1e-6
    # smooth faces cost less than their raw bits; more bits cost more
    sizes = {b: len(encode_hint(quantise(t[:1], b), b)[0]) for b in (2, 3, 5)}
    assert sizes[2] < sizes[3] < sizes[5] < 192 * 5 / 8
    per = torch.tensor([2, 5])
    q = quantise(t[:2], per)
    assert int(q[0].max()) <= 3 and int(q[1].max()) <= 31
    with pytest.raises(ValueError, match="bits must be in 1..8"):
        encode_hint(quantise(t[:1], 4), 9)
    with pytest.raises(ValueError, match="divisible by 8"):
        thumbnail(torch.rand(1, 3, 60, 60), 8)


def test_elm_takes_exactly_its_hint():
    from pycompgen.systems.compgen.networks import ELM
    h = ELM(32, 16, 1, 64, 8, hint_size=4, hint_bits=3)
    z = torch.rand(2, 1, 32, 32)
    assert h(z, hint=torch.rand(2, 3, 4, 4)).shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match=r"needs a colour hint of shape \(2, 3, 4, 4\)"):
        h(z)
    with pytest.raises(ValueError, match="got"):
        h(z, hint=torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="takes no colour hint"):
        ELM(32, 16, 1, 64, 8)(z, hint=torch.rand(2, 3, 4, 4))
    big = ELM(32, 16, 1, 64, 8, skips=True, g_channels=16, hint_size=8)  # larger than H/8: enters at H/4
    for p in big.hint.parameters():
        torch.nn.init.normal_(p, std=0.1)
    big.eval()
    y, skips = big(z, return_skips=True, hint=torch.rand(2, 3, 8, 8))
    assert y.shape == (2, 8, 4, 4) and skips[0].shape == (2, 16, 8, 8)
    assert not torch.equal(y, big(z, hint=torch.zeros(2, 3, 8, 8)))
    # the hint path starts at zero: with any hint, h equals the same h without its hint path
    plain = ELM(32, 16, 1, 64, 8)
    plain.load_state_dict({k: v for k, v in h.state_dict().items() if not k.startswith("hint.")})
    h.eval(), plain.eval()
    torch.testing.assert_close(h(z, hint=torch.rand(2, 3, 4, 4)), plain(z))


def test_config_checks_hint_settings():
    from pycompgen.config import load_config
    with pytest.raises(ValueError, match="model.hint_size must divide"):
        load_config(TINY, ["model.hint_size=16"])       # tiny images are 32x32: at most 8 (H/4)
    with pytest.raises(ValueError, match="model.hint_bits"):
        load_config(TINY, ["model.hint_size=4", "model.hint_bits=[0]"])


def _checkpoint(path, extra=(), seed=0):
    from pycompgen.config import load_config
    from pycompgen.training import build_system, save_checkpoint
    kv = [f"train.seed={seed}", *extra]
    step1 = build_system(load_config(TINY, kv), "cpu").payload(0, {}, 0.0)
    st = build_system(load_config(TINY, kv + ["train.stage=approach3"]), "cpu", dict(step1["models"]))
    for p in st.models["h"].hint.parameters() if "model.hint_size=4" in extra else ():
        torch.nn.init.normal_(p, std=0.1)                  # a hint that changes the output (trained models')
    save_checkpoint(path, st.payload(0, {}, 0.0))
    return str(path)


def _codec_models(d, specs: dict) -> dict:
    """{name: a tiny approach-3 checkpoint loaded for coding} from {name: (overrides, seed)}, built on one thread."""
    from pycompgen.inference import load_checkpoint_for_codec
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {k: load_checkpoint_for_codec(_checkpoint(d / f"{k}.pt", extra, seed=seed))
                for k, (extra, seed) in specs.items()}
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def hinted(tmp_path_factory):
    return _codec_models(tmp_path_factory.mktemp("hint"), {
        "hint": (HINT, 0), "other": (HINT, 1), "small": (["model.hint_size=2"], 0), "edges": ((), 0)})


def test_edges_hint_file_round_trips(hinted):
    from pycompgen.codec.container import unpack
    from pycompgen.inference import compress_batch, compress_images, decode_payload, decompress_batch, \
        decompress_bytes
    from pycompgen.systems.compgen.system import decode_edges
    ck = hinted["hint"]
    x = _faces(3)
    data = compress_images(ck, x)                          # auto: the model takes a hint
    hdr, _ = unpack(data)
    assert hdr.kind == "edges+hint" and hdr.params["hint_size"] == 4 and hdr.params["hint_bits"] == 5
    _, kind, (z, hint) = decode_payload(ck, data)
    q = quantise(thumbnail(x, 4), 5)
    torch.testing.assert_close(hint, dequantise(q, 5), atol=0, rtol=0)       # bit-exact hint
    from pycompgen.ops import canny
    d = ck.config.data
    torch.testing.assert_close(z, canny(x, d.canny_low, d.canny_high), atol=0, rtol=0)
    x_hat, _ = decompress_bytes(ck, data)
    with torch.no_grad():
        ref = decode_edges(ck.models, z, hint)
        other = decode_edges(ck.models, z, dequantise(quantise(thumbnail(x.flip(0), 4), 5), 5))
    torch.testing.assert_close(x_hat, ref)
    assert float((x_hat - other).abs().max()) > 1e-4       # the decoder uses the hint
    files = compress_batch(ck, x)
    assert [unpack(f)[0].count for f in files] == [1, 1, 1]
    dec = decompress_batch(ck, [(str(i), f) for i, f in enumerate(files)], batch_size=2)
    torch.testing.assert_close(torch.cat([d[0] for d in dec]), x_hat, atol=1e-5, rtol=0)
    ck.models["h"].hint_bits = 2                           # a rate point: fewer bits, a smaller file
    try:
        small = compress_images(ck, x)
        assert unpack(small)[0].params["hint_bits"] == 2 and len(small) < len(data)
        noisy, _ = decompress_bytes(ck, small, psnr=0.0)   # hint and edges through the channel
        assert noisy.shape == x_hat.shape
        assert float((noisy - decompress_bytes(ck, small)[0]).abs().max()) > 1e-3
    finally:
        ck.models["h"].hint_bits = 5


def test_wrong_hints_and_models_are_refused(hinted):
    from pycompgen.codec.container import pack, unpack
    from pycompgen.inference import compress_images, decompress_bytes
    x = _faces(1)
    data = compress_images(hinted["hint"], x)
    with pytest.raises(ValueError, match="was written by model compgen@") as e:
        decompress_bytes(hinted["other"], data)           # a hint from another model's file
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="was written by model compgen@"):
        decompress_bytes(hinted["small"], data)            # another model (its hash; the forged header below
        # checks the size itself)
    with pytest.raises(ValueError, match="this model takes edges only"):
        decompress_bytes(hinted["edges"], data)
    with pytest.raises(ValueError, match="without the colour hint this model needs"):
        decompress_bytes(hinted["hint"], compress_images(hinted["edges"], x))
    with pytest.raises(ValueError, match="use the edges\\+hint payload"):
        compress_images(hinted["hint"], x, payload="edges")
    hdr, payload = unpack(data)
    forged = pack(payload, system=hdr.system, weights_hash=hdr.weights_hash, height=hdr.height, width=hdr.width,
                  count=hdr.count, kind=hdr.kind, params={**hdr.params, "hint_size": 2})
    with pytest.raises(ValueError, match="holds a 2x2 colour hint, but this model takes 4x4"):
        decompress_bytes(hinted["hint"], forged)            # a wrong-size hint
    short = pack(payload[:3], system=hdr.system, weights_hash=hdr.weights_hash, height=hdr.height,
                 width=hdr.width, count=hdr.count, kind=hdr.kind, params=hdr.params)
    with pytest.raises(ValueError, match="truncated|corrupted"):
        decompress_bytes(hinted["hint"], short)


def test_training_draws_hint_bits_per_image_and_validation_uses_the_largest():
    from pycompgen.config import load_config
    from pycompgen.training import build_system
    kv = ["model.hint_size=4", "model.hint_bits=[1,5]", "train.psnr=inf", "data.synthetic_count=16"]
    step1 = build_system(load_config(TINY, kv), "cpu").payload(0, {}, 0.0)
    st = build_system(load_config(TINY, kv + ["train.stage=approach1"]), "cpu", dict(step1["models"]))
    x = (_faces(16) * 255).round().to(torch.uint8)
    t = thumbnail(x.float() / 255, 4)
    for training, want in ((True, {1, 5}), (False, {5})):
        for m in st.models.values():
            m.train(training)
        b = st.prepare_batch(x, torch.Generator().manual_seed(0))
        seen = set()
        for i in range(16):
            errs = {bits: float((b["hint"][i] - dequantise(quantise(t[i:i + 1], bits), bits)).abs().max())
                    for bits in (1, 5)}
            seen.add(min(errs, key=errs.get))
            assert min(errs.values()) < 1e-6
        assert seen == want, (training, seen)


def test_tiny_model_trains_with_hints(tmp_path, one_thread):
    from pycompgen.config import load_config
    from pycompgen.training import run_pipeline
    from pycompgen.models import load_for_eval
    cfg = load_config(TINY, HINT + [f"out={tmp_path}", "data.synthetic_count=32", "train.epochs=1",
                                    "train.max_steps_per_epoch=2", "train.max_val_batches=1", "train.progress=false",
                                    "train.batch_size=8", "train.train_subset=8"])
    run_pipeline(cfg, stages=["step1", "approach1", "approach3"])
    lc = load_for_eval(tmp_path / "approach3" / "best.pt")
    assert lc.models["h"].hint_size == 4 and lc.models["h"].hint_bits == 5
    assert any(k.startswith("hint.") for k in lc.models["h"].state_dict())
    assert lc.metrics.get("val_ssim") is not None


def test_generation_needs_an_edges_only_model(hinted):
    from pycompgen.evaluation.generate import generate_from_edges, generate_unconditional
    with pytest.raises(ValueError, match="needs an edges-only model"):
        generate_from_edges(hinted["hint"].models, torch.zeros(2, 1, 32, 32), image_size=32)
    with pytest.raises(ValueError, match="needs an edges-only model"):
        generate_unconditional(hinted["hint"].models, 2, 32)
    assert generate_unconditional(hinted["edges"].models, 2, 32).shape == (2, 3, 32, 32)


def test_shipped_color_entry_round_trips_and_is_found_from_its_file(tmp_path, monkeypatch, capsys, one_thread):
    """compgen-64-color from the package's zoo: every rate point round-trips a synthetic face through a file,
    more bits give larger files, and decompress without a model finds the entry from the file."""
    monkeypatch.delenv("PYCOMPGEN_ZOO_DIR", raising=False)
    from pycompgen import zoo
    if "compgen-64-color" not in zoo.list():
        pytest.skip("compgen-64-color is not exported into pycompgen/zoo")
    import cv2
    from pycompgen.cli import main
    from pycompgen.cli.common import pretrained_stage
    from pycompgen.codec.container import unpack
    from pycompgen.inference import compress_images, decompress_bytes
    from pycompgen.metrics import ssim
    x = _faces(1, 64, seed=4)
    sizes = []
    for q in zoo.qualities(zoo.entry("compgen-64-color")):
        ck = pretrained_stage("compgen-64-color", quality=q)
        f = compress_images(ck, x)
        assert unpack(f)[0].kind == "edges+hint"
        assert float(ssim(decompress_bytes(ck, f)[0].clamp(0, 1), x)) > 0.3, q
        sizes.append(len(f))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), (x[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype("uint8"))
    assert main(["compress", "--pretrained", "compgen-64-color", "--quality", "1", str(src), "-o",
                 str(tmp_path / "f.pcg")]) == 0
    assert main(["decompress", str(tmp_path / "f.pcg"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "f.png").is_file()
    capsys.readouterr()
    assert main(["generate", "--pretrained", "compgen-64-color", "--unconditional", "2", "--out",
                 str(tmp_path / "gen")]) != 0
    err = capsys.readouterr().err.strip()
    assert "needs an edges-only model" in err and "\n" not in err


def test_mlflow_reconstructor_of_a_hint_model_takes_edges_and_hint(hinted):
    """What MLflow serves for a hint model's approach: (N, 4, H, W) = edge map + hint repeated to H×W."""
    import torch.nn.functional as F
    from pycompgen.systems.compgen.system import decode_edges
    from pycompgen.tracking.artifacts import StageReconstructor
    ck = hinted["hint"]
    m = StageReconstructor("compgen", "approach3", ck.models).eval()
    assert m.hint_size == 4
    z = (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.8).float()
    hint = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = m(torch.cat([z, F.interpolate(hint, size=(32, 32), mode="nearest")], 1))
        torch.testing.assert_close(out, decode_edges(ck.models, z, hint))


# -- YCoCg 4:2:0 hints (model.hint_space=ycocg420) ----------------------------------------------------------------
YCC = ["model.hint_size=4", "model.hint_bits=[2,3,5]", "model.hint_space=ycocg420"]


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("size", [2, 4, 8])
def test_ycocg_hint_planes_round_trip_bit_exactly(bits, size):
    from pycompgen.codec.hint import decode_hint_planes, encode_hint_planes, hint_codes
    g = torch.Generator().manual_seed(bits * 10 + size)
    for x in (_faces(3, 64, seed=bits), torch.rand(2, 3, 64, 64, generator=g), torch.zeros(1, 3, 64, 64),
              torch.ones(1, 3, 64, 64)):
        codes = hint_codes(x, size, bits, "ycocg420")
        assert [tuple(c.shape) for c in codes] == [(x.shape[0], 1, size, size), (x.shape[0], 2, size // 2, size // 2)]
        data, scale = encode_hint_planes(codes, bits, "ycocg420")
        assert 0 <= scale < len(SCALES) ** 2
        back = decode_hint_planes(data, x.shape[0], size, bits, scale, "ycocg420")
        for a, b in zip(back, codes):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_ycocg_hint_values_colours_and_rate():
    from pycompgen.codec.hint import CHROMA_RANGE, encode_hint_planes, hint_codes, quantised_thumbnail
    # flat colours inside the chroma range come back to within half a quantiser step; grey keeps no tint
    flat = torch.tensor([[0.5, 0.5, 0.5], [0.8, 0.6, 0.5], [0.3, 0.35, 0.4], [0.0, 0.0, 0.0]])
    x = flat[:, :, None, None].expand(-1, -1, 64, 64)
    for bits in (3, 5, 8):
        t = quantised_thumbnail(x, 8, bits, "ycocg420")
        assert t.shape == (4, 3, 8, 8)
        step_y, step_c = 0.5 / (2 ** bits - 1), CHROMA_RANGE / (2 ** (max(bits - 1, 1) - 1) - 1) / 2
        assert float((t - x[:, :, :8, :8]).abs().max()) <= step_y + 2 * step_c + 1e-6
        torch.testing.assert_close(t[0], t[0, :1].expand(3, -1, -1), atol=1e-7, rtol=0)  # grey stays grey
    assert float((quantised_thumbnail(x, 8, 1, "ycocg420")[:, 0] - quantised_thumbnail(x, 8, 1, "ycocg420")[:, 2])
                 .abs().max()) == 0.0                       # one chroma bit: no chroma (a grey hint)
    # a 16x16 YCoCg 4:2:0 hint at 4 bits costs less than the RGB one at 3 bits, and more bits cost more
    faces = _faces(4, 64, seed=5)
    ycc = {b: len(encode_hint_planes(hint_codes(faces[:1], 16, b, "ycocg420"), b, "ycocg420")[0]) for b in (3, 4, 5)}
    assert ycc[3] < ycc[4] < ycc[5]
    assert ycc[4] < len(encode_hint(quantise(thumbnail(faces[:1], 16), 3), 3)[0])
    with pytest.raises(ValueError, match="even for ycocg420"):
        encode_hint_planes([torch.zeros(1, 1, 3, 3, dtype=torch.int64), torch.zeros(1, 2, 1, 1, dtype=torch.int64)],
                           4, "ycocg420")
    with pytest.raises(ValueError, match="colour space must be one of"):
        encode_hint_planes([torch.zeros(1, 3, 4, 4, dtype=torch.int64)], 4, "hsv")


def test_config_checks_hint_space():
    from pycompgen.config import load_config
    with pytest.raises(ValueError, match="model.hint_space must be one of"):
        load_config(TINY, ["model.hint_size=4", "model.hint_space=hsv"])
    with pytest.raises(ValueError, match="hint_size must be even"):
        load_config(TINY, ["model.hint_size=1", "model.hint_space=ycocg420"])
    assert load_config(TINY, YCC).model.hint_space == "ycocg420"
    from pycompgen.codec.hint import SPACES
    from pycompgen.config import HINT_SPACES
    assert HINT_SPACES == SPACES


@pytest.fixture(scope="module")
def ycc_model(tmp_path_factory):
    return _codec_models(tmp_path_factory.mktemp("ycc"), {"ycc": (YCC, 0)})["ycc"]


def test_ycocg_file_round_trips_and_a_space_mismatch_is_refused(ycc_model, hinted):
    from pycompgen.codec.container import pack, unpack
    from pycompgen.inference import compress_batch, compress_images, decode_payload, decompress_batch, \
        decompress_bytes
    from pycompgen.codec.hint import quantised_thumbnail
    from pycompgen.systems.compgen.system import decode_edges, make_hint
    ck = ycc_model
    assert ck.models["h"].hint_space == "ycocg420"
    x = _faces(3)
    data = compress_images(ck, x)
    hdr, payload = unpack(data)
    assert hdr.kind == "edges+hint" and hdr.params["hint_space"] == 1 and hdr.params["hint_bits"] == 5
    _, _, (z, hint) = decode_payload(ck, data)
    torch.testing.assert_close(hint, quantised_thumbnail(x, 4, 5, "ycocg420"), atol=0, rtol=0)
    torch.testing.assert_close(hint, make_hint(ck.models, x), atol=0, rtol=0)   # what training gives h
    x_hat, _ = decompress_bytes(ck, data)
    with torch.no_grad():
        torch.testing.assert_close(x_hat, decode_edges(ck.models, z, hint))
    files = compress_batch(ck, x)
    dec = decompress_batch(ck, [(str(i), f) for i, f in enumerate(files)], batch_size=2)
    torch.testing.assert_close(torch.cat([d[0] for d in dec]), x_hat, atol=1e-5, rtol=0)
    _, _, (zn, noisy) = decode_payload(ck, data, psnr=0.0)  # the planes through the channel
    assert noisy.shape == hint.shape and float((noisy - hint).abs().max()) > 1e-2
    assert decompress_bytes(ck, data, psnr=0.0)[0].shape == x_hat.shape
    # an RGB file forged onto this model's hash, and this model's file read as RGB: one-line errors
    rgb = pack(payload, system=hdr.system, weights_hash=hdr.weights_hash, height=hdr.height, width=hdr.width,
               count=hdr.count, kind=hdr.kind, params={k: v for k, v in hdr.params.items() if k != "hint_space"})
    with pytest.raises(ValueError, match="holds a colour hint in space 'rgb', but this model takes ycocg420") as e:
        decompress_bytes(ck, rgb)
    assert "\n" not in str(e.value)
    bad = pack(payload, system=hdr.system, weights_hash=hdr.weights_hash, height=hdr.height, width=hdr.width,
               count=hdr.count, kind=hdr.kind, params={**hdr.params, "hint_space": 7})
    with pytest.raises(ValueError, match="in space 7"):
        decompress_bytes(ck, bad)
    with pytest.raises(ValueError, match="was written by model compgen@"):
        decompress_bytes(hinted["hint"], data)              # another model


def test_ycocg_make_hint_sends_the_planes_through_the_channel(ycc_model):
    from pycompgen.systems.compgen.system import hint_planes, make_hint
    x = _faces(4)
    planes = hint_planes(ycc_model.models, x)
    assert [tuple(p.shape) for p in planes] == [(4, 1, 4, 4), (4, 2, 2, 2)]   # 1.5·s² analog values
    assert all(float(p.min()) >= 0 and float(p.max()) <= 1 for p in planes)  # chroma mapped to [0, 1] too
    grey = hint_planes(ycc_model.models, torch.full((1, 3, 32, 32), 0.4))
    torch.testing.assert_close(grey[1], torch.full((1, 2, 2, 2), 0.5))       # neutral chroma mid-range
    clean = make_hint(ycc_model.models, x)
    torch.testing.assert_close(make_hint(ycc_model.models, x, float("inf"), torch.Generator().manual_seed(0)), clean)
    noisy = make_hint(ycc_model.models, x, 10.0, torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape and float((noisy - clean).abs().max()) > 1e-3
