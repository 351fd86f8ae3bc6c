"""Bitstreams (pycompgen.codec): the .pcg container, lossless edge-map coding, the entropy bottleneck, and
``pycompgen compress`` / ``pycompgen decompress``."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pycompgen.codec import container as C
from pycompgen.codec.edges import (TEMPLATES, coder_params, decode_edges, edge_baselines, encode_edges,
                                   params_from_header)
from pycompgen.codec.entropy import EntropyBottleneck, _quantise_pmf

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def _faces_edges(n=4, size=64, seed=3):
    from pycompgen.data import synthetic_faces
    from pycompgen.ops import canny
    x = torch.from_numpy(synthetic_faces(n, size, seed=seed)).permute(0, 3, 1, 2).float() / 255
    return canny(x, 0.30, 0.60)


# ==== container ===============================================================================================
def _packed(payload=b"\x01\x02\x03payload", **kw):
    args = dict(system="compgen", weights_hash=bytes(range(16)), height=64, width=48, count=2, kind="edges",
                params={"canny_low": 0.3, "canny_high": 0.6, "latent_shape": [16, 8, 8], "template": "jbig3",
                        "blur_sigma": None, "flag": True, "neg": -300, "odd": 0.1234567891, "delta": 16})
    args.update(kw)
    return C.pack(payload, **args), args


def test_container_round_trip_and_header_size():
    data, args = _packed()
    hdr, payload = C.unpack(data, expect_system="compgen", expect_hash=bytes(range(16)))
    assert payload == b"\x01\x02\x03payload"
    assert (hdr.system, hdr.weights_hash, hdr.height, hdr.width, hdr.count, hdr.kind, hdr.version) == \
        ("compgen", bytes(range(16)), 64, 48, 2, "edges", C.FORMAT_VERSION)
    assert hdr.params == args["params"]                       # every value type survives exactly
    assert hdr.nbytes == len(data) - len(payload) == C.header_size(data)
    assert data[:4] == C.MAGIC and hdr.model_id == "compgen@" + bytes(range(16)).hex()[:12]
    # an empty payload is fine; parameters are compact (a float that float32 prints back costs 4 bytes)
    d2, _ = _packed(payload=b"", params={"canny_low": 0.3, "canny_high": 0.6})
    assert C.unpack(d2)[1] == b"" and C.header_size(d2) == 4 + 1 + 1 + 1 + 7 + 16 + 6 + 1 + 2 * 6 + 4


@pytest.mark.parametrize("kw,msg", [
    (dict(kind="pixels"), "payload kind"), (dict(system=""), "system name"),
    (dict(weights_hash=b"short"), "weights_hash"), (dict(height=0), "height"), (dict(count=70000), "count"),
    (dict(params={"x": object()}), "unsupported value"), (dict(params={"x": float("nan")}), "not finite"),
])
def test_container_pack_rejects_bad_fields(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _packed(**kw)


def test_container_detects_truncation_and_every_flipped_byte():
    data, _ = _packed()
    for n in (0, 2, 10, 30, len(data) - 5, len(data) - 1):
        with pytest.raises(ValueError, match="truncated|corrupted"):
            C.unpack(data[:n], name="x.pcg")
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(ValueError) as e:
            C.unpack(bytes(bad), name="x.pcg")
        assert "x.pcg" in str(e.value) and "\n" not in str(e.value)


def test_container_wrong_magic_version_system_and_weights():
    data, _ = _packed()
    with pytest.raises(ValueError, match="not a pycompgen compressed file"):
        C.unpack(b"\x89PNG" + data[4:])
    body = bytearray(data[:-4])
    body[4] = C.FORMAT_VERSION + 1                             # a future version with a valid CRC
    with pytest.raises(ValueError, match="format version 2"):
        C.unpack(bytes(body) + struct.pack(">I", zlib.crc32(bytes(body))))
    with pytest.raises(ValueError, match="written by system 'compgen', but this model is 'cvae'"):
        C.unpack(data, expect_system="cvae", name="f.pcg")
    other = bytes(16)
    with pytest.raises(ValueError, match=r"f.pcg was written by model compgen@000102030405, but this model is "
                                         r"compgen@000000000000: use the same checkpoint"):
        C.unpack(data, expect_system="compgen", expect_hash=other, name="f.pcg")


def test_weights_hash_is_deterministic_and_sensitive():
    def nets(seed):
        torch.manual_seed(seed)
        return {"g": nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)), "h": nn.Linear(4, 2)}
    a, b = nets(0), nets(0)
    h = C.weights_hash(a)
    assert len(h) == 16 and h == C.weights_hash(b) == C.weights_hash({"h": b["h"], "g": b["g"]})
    assert h != C.weights_hash(nets(1))
    with torch.no_grad():
        b["h"].weight[0, 0] += 1e-7
    assert C.weights_hash(b) != h
    c = nets(0)
    c["g"][1].running_mean += 1.0                              # buffers count too
    assert C.weights_hash(c) != h


def test_params_encoding_rejects_garbage():
    enc = C.encode_params({"template": "jbig2", "alpha": 64})
    assert C.decode_params(enc) == {"template": "jbig2", "alpha": 64}
    with pytest.raises(ValueError):
        C.decode_params(b"\x7f\x00")
    with pytest.raises(ValueError):
        C.decode_params(enc[:-1])


# ==== edge maps ===============================================================================================
@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_edges_round_trip_random_sizes_densities(template):
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 64, 64), (3, 1, 17, 23), (1, 1, 1, 1), (2, 1, 5, 1), (1, 1, 1, 9), (1, 1, 33, 31)]:
        for density in (0.0, 0.03, 0.2, 0.5, 1.0):
            z = (rng.random(shape) < density).astype(np.uint8)
            data = encode_edges(z, template=template)
            out = decode_edges(data, shape[0], shape[2], shape[3], template=template)
            assert out.dtype == np.uint8 and out.shape == shape
            np.testing.assert_array_equal(out, z, err_msg=f"{shape} density {density}")


def test_edges_round_trip_faces_inputs_and_parameters():
    z = _faces_edges(4, 64)                                    # float {0,1} N x 1 x H x W from the Canny op
    data = encode_edges(z)
    np.testing.assert_array_equal(decode_edges(data, 4, 64, 64), z.numpy().astype(np.uint8))
    # bool / (H, W) inputs give the same stream as uint8 / (1,1,H,W)
    z0 = z[0, 0].numpy()
    assert encode_edges(z0.astype(bool)) == encode_edges(z[:1]) == encode_edges(z0.astype(np.float32))
    # other coder parameters, through the header helpers
    p = coder_params(template="small7", delta=8, alpha=32)
    assert p == {"template": "small7", "delta": 8, "alpha": 32} and coder_params() == {}
    d2 = encode_edges(z, **p)
    np.testing.assert_array_equal(decode_edges(d2, 4, 64, 64, **params_from_header(p)), z.numpy())
    with pytest.raises(ValueError, match="unsupported edge coder"):
        params_from_header({"prob_bits": 12})


def test_edges_vectorised_probabilities_match_a_sequential_count():
    """The encoder's sorted-cumsum counts equal plain per-pixel counting with the documented formulas."""
    from pycompgen.codec import edges as E
    rng = np.random.default_rng(2)
    z = (rng.random((2, 9, 7)) < 0.3).astype(np.uint8)
    bits, p = E._adaptive_probs(z, "jbig3", 16, 96)
    left, above, coarse = E.TEMPLATES["jbig3"]
    n, n1, nc, n1c = {}, {}, {}, {}
    i = 0
    for img in z:
        pad = np.zeros((img.shape[0] + 2, img.shape[1] + 4), np.int64)
        pad[2:, 2:-2] = img
        for r in range(img.shape[0]):
            for c in range(img.shape[1]):
                nb = [pad[2 + r, 2 + c - 1 - j] for j in range(left)] + [pad[2 + r + dy, 2 + c + dx]
                                                                          for dy, dx in above]
                ctx = sum(int(v) << k for k, v in enumerate(nb))
                cc = sum(int(nb[b]) << k for k, b in enumerate(coarse))
                qc = min(max(((16 * n1c.get(cc, 0) + 16) << 16) // (16 * nc.get(cc, 0) + 32), 1), 65535)
                q = min(max((((16 * n1.get(ctx, 0)) << 16) + 96 * qc) // (16 * n.get(ctx, 0) + 96), 1), 65535)
                assert p[i] == q / 65536 and bits[i] == img[r, c]
                for d, key in ((n, ctx), (nc, cc)):
                    d[key] = d.get(key, 0) + 1
                for d, key in ((n1, ctx), (n1c, cc)):
                    d[key] = d.get(key, 0) + int(img[r, c])
                i += 1
    assert i == bits.size


def test_edges_empty_and_full_maps_are_tiny():
    for v in (0, 1):
        z = np.full((1, 1, 64, 64), v, np.uint8)
        data = encode_edges(z)
        assert len(data) <= 8, len(data)
        np.testing.assert_array_equal(decode_edges(data, 1, 64, 64), z)


def test_edges_beat_the_bilevel_baselines_on_faces():
    z = _faces_edges(8, 64)
    ours = len(encode_edges(z))
    base = edge_baselines(z)                                   # check=True: every baseline round-trips exactly
    assert base["raw_1bit"] == 8 * 64 * 64 // 8
    assert {"png_1bit", "ccitt_g3", "ccitt_g4", "tiff_g4", "webp_lossless", "jpegxl_lossless"} <= set(base)
    assert base["tiff_g4"] > base["ccitt_g4"] > 0
    for name, nbytes in base.items():
        assert ours < nbytes, (name, nbytes, ours)


def test_edges_decode_speed():
    z = _faces_edges(1, 64)
    data = encode_edges(z)
    decode_edges(data, 1, 64, 64)
    t0 = time.perf_counter()
    decode_edges(data, 1, 64, 64)
    dt = time.perf_counter() - t0
    assert dt < 0.25, f"64x64 edge map decoded in {dt * 1e3:.1f} ms"   # ~3 ms on an idle core


@pytest.mark.parametrize("z,msg", [
    (np.full((1, 1, 4, 4), 0.5), "only 0 and 1"), (np.full((4, 4), 2), "only 0 and 1"),
    (np.full((4, 4), np.nan), "only 0 and 1"), (np.zeros((1, 3, 4, 4)), "shape"), (np.zeros(5), "shape"),
    (np.zeros((0, 4, 4)), "empty"), (np.array([["a"]]), "dtype"),
])
def test_edges_bad_input(z, msg):
    with pytest.raises(ValueError, match=msg):
        encode_edges(z)


def test_edges_bad_parameters_and_garbage_streams():
    with pytest.raises(ValueError, match="unknown template"):
        encode_edges(np.zeros((4, 4)), template="jbig9")
    with pytest.raises(ValueError, match="delta"):
        decode_edges(b"", 1, 4, 4, delta=0)
    with pytest.raises(ValueError, match="n, h, w"):
        decode_edges(b"", 0, 4, 4)
    rng = np.random.default_rng(1)
    for _ in range(5):                   # no CRC at this level: garbage decodes to *some* map or a ValueError
        try:
            out = decode_edges(rng.bytes(40), 1, 16, 16)
        except ValueError as e:
            assert "corrupted" in str(e)
        else:
            assert out.shape == (1, 1, 16, 16) and set(np.unique(out)) <= {0, 1}


# ==== entropy bottleneck ======================================================================================
def _latents(n, gen):
    """Channels: Laplace(0, 0.5), Gaussian(0.3, 1.5), Laplace(-2, 4), Gaussian(5, 2)."""
    scale = torch.tensor([0.5, 1.5, 4.0, 2.0]).view(1, 4, 1, 1)
    loc = torch.tensor([0.0, 0.3, -2.0, 5.0]).view(1, 4, 1, 1)
    u = torch.rand(n, 4, 8, 8, generator=gen).clamp(1e-6, 1 - 1e-6) - 0.5
    lap = -torch.sign(u) * torch.log1p(-2 * u.abs())
    g = torch.randn(n, 4, 8, 8, generator=gen)
    return torch.where(torch.arange(4).view(1, 4, 1, 1) % 2 == 0, lap, g) * scale + loc


@pytest.fixture(scope="module")
def trained_eb():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        eb = EntropyBottleneck(4)
        y_val = _latents(64, gen)
        eb.eval()
        with torch.no_grad():
            bits0 = eb.rate_bits(eb(y_val)[1]).item()
        eb.train()
        density = [p for n, p in eb.named_parameters() if n != "quantiles"]
        opt = torch.optim.Adam([{"params": density, "lr": 1e-2}, {"params": [eb.quantiles], "lr": 5e-2}])
        for _ in range(300):
            y = _latents(32, gen)
            _, lik = eb(y)
            loss = eb.rate_bits(lik) / y.numel() + eb.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        eb.eval()
        eb.update()
        yield eb, y_val, bits0
    finally:
        torch.set_num_threads(n)


def test_bottleneck_training_lowers_rate_and_real_size_matches_estimate(trained_eb, one_thread):
    eb, y, bits0 = trained_eb
    with torch.no_grad():
        y_hat, lik = eb(y)
    bits = eb.rate_bits(lik).item()
    assert bits < 0.8 * bits0, (bits0, bits)
    data = eb.compress(y)
    assert abs(8 * len(data) - bits) / bits < 0.02, (8 * len(data), bits)
    out = eb.decompress(data, y.shape)
    assert out.dtype == torch.float32 and torch.equal(out, y_hat)     # exactly forward's eval output
    # medians: rounding happens around them, and they moved toward the channels' centres
    assert torch.allclose(eb.medians, torch.tensor([0.0, 0.3, -2.0, 5.0]), atol=1.0)


def test_bottleneck_unbatched_escapes_and_state_dict(trained_eb, one_thread):
    eb, y, _ = trained_eb
    y1 = y[0]
    np.testing.assert_array_equal(eb.decompress(eb.compress(y1), y1.shape), eb(y1[None])[0][0])
    far = y[:2].clone()
    far[0, 0, 0, 0] = 1e6                                       # far outside every code table
    far[1, 2, 3, 4] = -12345.6
    far[0, 3, 1, 1] = eb.medians[3] + int(eb.cdf_lengths[3]) + 0.2
    out = eb.decompress(eb.compress(far), far.shape)
    assert torch.equal(out, eb(far)[0])
    # a fresh bottleneck loading the state_dict gets the same tables (buffers of checkpoint-dependent shape)
    eb2 = EntropyBottleneck(4)
    eb2.load_state_dict(eb.state_dict())
    eb2.eval()
    assert C.weights_hash({"eb": eb2}) == C.weights_hash({"eb": eb})
    assert eb2.compress(y) == eb.compress(y) and torch.equal(eb2.decompress(eb.compress(y), y.shape), eb(y)[0])


def test_bottleneck_errors(trained_eb, one_thread):
    eb, y, _ = trained_eb
    data = eb.compress(y)
    with pytest.raises(ValueError, match=r"holds 16384 values, but shape \(4, 4, 8, 8\) has 1024"):
        eb.decompress(data, (4, 4, 8, 8))
    with pytest.raises(ValueError, match=r"holds 16384 values, but shape \(64, 4, 8, 4\) has 8192"):
        eb.decompress(data, (64, 4, 8, 4))
    with pytest.raises(ValueError, match=r"shape must be \(N, 4, h, w\)"):
        eb.decompress(data, (64, 3, 8, 8))
    with pytest.raises(ValueError, match=r"shape must be \(N, 4, h, w\)"):
        eb.decompress(data, (4, 8))
    with pytest.raises(ValueError, match=r"\(N, 4, \.\.\.\)"):
        eb(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        eb.compress(torch.full((1, 4, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"\(N, C, h, w\) or \(C, h, w\)"):
        eb.compress(torch.zeros(4, 4))
    with pytest.raises(RuntimeError, match="call update"):
        EntropyBottleneck(4).compress(y)
    stale = EntropyBottleneck(4)
    stale.load_state_dict(eb.state_dict())
    with torch.no_grad():
        stale.quantiles[0, 0, 1] += 0.25
    with pytest.raises(RuntimeError, match="out of date"):
        stale.compress(y)
    with pytest.raises(ValueError, match="channels"):
        EntropyBottleneck(0)


def test_bottleneck_noise_in_training_and_gradients(one_thread):
    torch.manual_seed(0)
    eb = EntropyBottleneck(3)
    y = torch.randn(2, 3, 4, 4, requires_grad=True)
    y_tilde, lik = eb(y)
    d = (y_tilde - y).detach()
    assert d.abs().max() <= 0.5 and d.abs().min() > 0 and lik.shape == y.shape and (lik > 0).all()
    (eb.rate_bits(lik) + eb.loss()).backward()
    assert y.grad is not None and all(p.grad is not None for p in eb.parameters())
    # loss() trains the quantiles only (the density network is detached there)
    eb.zero_grad()
    eb.loss().backward()
    assert eb.quantiles.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for n, p in eb.named_parameters() if n != "quantiles")
    eb.eval()
    y_hat, _ = eb(y.detach())
    m = eb.medians.view(1, 3, 1, 1)
    assert torch.equal(y_hat - m, torch.round(y.detach() - m))


def test_quantised_tables():
    for p in (np.array([0.5, 0.5, 0.0]), np.array([1e-12, 1.0, 1e-30, 0.0]), np.array([np.nan, 1.0]),
              np.full(300, 1 / 300)):
        f = _quantise_pmf(p, 1 << 16)
        assert f.sum() == 1 << 16 and f.min() >= 1 and f.dtype == np.int64
    np.testing.assert_array_equal(_quantise_pmf(np.array([0.25, 0.75]), 1 << 16), [16384, 49152])


def test_bottleneck_under_ddp(tmp_path, one_thread):
    import torch.distributed as dist
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0, world_size=1)
    try:
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.f = nn.Conv2d(3, 4, 3, padding=1)
                self.eb = EntropyBottleneck(4)

            def forward(self, x):
                return self.eb(self.f(x))
        torch.manual_seed(0)
        net = Net()
        ddp = nn.parallel.DistributedDataParallel(net)
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-2)
        for _ in range(3):                  # find_unused_parameters=False: every parameter needs a gradient
            y_tilde, lik = ddp(torch.rand(2, 3, 8, 8))
            loss = net.eb.rate_bits(lik) / lik.numel() + y_tilde.pow(2).mean() + net.eb.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert all(p.grad is not None for p in net.parameters())
    finally:
        dist.destroy_process_group()


# ==== compress / decompress ===================================================================================
def _checkpoint(path, stage="approach3", seed=0):
    from pycompgen.config import load_config
    from pycompgen.training import build_system, save_checkpoint
    seed_kv = [f"train.seed={seed}"]                              # the system seeds its networks from it
    step1 = build_system(load_config(TINY, seed_kv), "cpu").payload(0, {}, 0.0)
    if stage == "step1":
        save_checkpoint(path, step1)
        return str(path)
    st = build_system(load_config(TINY, seed_kv + [f"train.stage={stage}"]), "cpu",
                      dict(step1["models"])).payload(0, {}, 0.0)
    save_checkpoint(path, st)
    return str(path)


@pytest.fixture(scope="module")
def codec_env(tmp_path_factory):
    """Untrained tiny checkpoints (0 training steps: decoding is about bits, not quality) and synthetic faces."""
    import cv2
    from pycompgen.data import synthetic_faces
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("codec")
    faces = synthetic_faces(3, 48, seed=5)                      # 48x48: resized to the model's 32x32 on reading
    paths = []
    for i, img in enumerate(faces):
        p = d / f"face{i}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        paths.append(str(p))
    env = {"dir": d, "faces": paths, "a3": _checkpoint(d / "a3.pt"), "other": _checkpoint(d / "other.pt", seed=1),
           "step1": _checkpoint(d / "s1.pt", "step1")}
    yield env
    torch.set_num_threads(n)


def _reference(ckpt_path, image_paths, psnr=None):
    """x̂ = g(h(canny(x))) computed directly, as uint8 HWC images."""
    from pycompgen.inference import load_checkpoint_for_codec, read_images
    from pycompgen.ops import canny
    ck = load_checkpoint_for_codec(ckpt_path)
    x = read_images(image_paths, ck.image_size)
    d = ck.config.data
    z = canny(x, d.canny_low, d.canny_high, blur_sigma=d.blur_sigma)
    with torch.no_grad():
        x_hat = ck.models["g"](ck.models["h"](z))
    return (x_hat.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_cli_round_trip(codec_env, tmp_path, capsys):
    import cv2
    from pycompgen import cli
    out = tmp_path / "pcg"
    assert cli.main(["compress", *codec_env["faces"], "-o", str(out), "--checkpoint", codec_env["a3"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("bpp with header" in ln and "without" in ln for ln in lines)
    files = sorted(out.glob("*.pcg"))
    assert [f.name for f in files] == ["face0.pcg", "face1.pcg", "face2.pcg"]
    hdr, payload = C.unpack(files[0].read_bytes())
    assert (hdr.system, hdr.kind, hdr.height, hdr.width, hdr.count) == ("compgen", "edges", 32, 32, 1)
    assert hdr.params == {"canny_low": 0.3, "canny_high": 0.6} and hdr.nbytes < 64
    assert f"{files[0].stat().st_size} bytes ({hdr.nbytes} header + {len(payload)} payload)" in lines[0]
    dec = tmp_path / "png"
    assert cli.main(["decompress", *map(str, files), "-o", str(dec), "--checkpoint", codec_env["a3"]]) == 0
    ref = _reference(codec_env["a3"], codec_env["faces"])
    for i in range(3):
        img = cv2.imread(str(dec / f"face{i}.png"))[:, :, ::-1]
        np.testing.assert_array_equal(img, ref[i])            # the decoder saw exactly the encoder's edge map
    # one input -> one file; through the noisy channel the output changes but decoding still works
    one = tmp_path / "one.pcg"
    assert cli.main(["compress", codec_env["faces"][1], "-o", str(one), "--checkpoint", codec_env["a3"]]) == 0
    assert one.read_bytes() == files[1].read_bytes()
    assert cli.main(["decompress", str(one), "-o", str(tmp_path / "noisy"), "--checkpoint", codec_env["a3"],
                     "--psnr", "0"]) == 0
    noisy = cv2.imread(str(tmp_path / "noisy" / "one.png"))[:, :, ::-1]
    assert noisy.shape == ref[1].shape and not np.array_equal(noisy, ref[1])


def test_cli_flip_average_decodes_the_mirror_average(codec_env, tmp_path, capsys):
    """decompress --flip-average writes (x̂ + mirror(decode(mirror(z)))) / 2 of the file's edge map; a latent file
    is refused in one line."""
    import cv2
    from pycompgen import cli
    from pycompgen.inference import load_checkpoint_for_codec, read_images
    from pycompgen.ops import canny
    from pycompgen.systems.compgen.system import decode_edges
    one = tmp_path / "one.pcg"
    assert cli.main(["compress", codec_env["faces"][0], "-o", str(one), "--checkpoint", codec_env["a3"]]) == 0
    assert cli.main(["decompress", str(one), "-o", str(tmp_path / "avg"), "--checkpoint", codec_env["a3"],
                     "--flip-average"]) == 0
    ck = load_checkpoint_for_codec(codec_env["a3"])
    x = read_images([codec_env["faces"][0]], ck.image_size)
    d = ck.config.data
    z = canny(x, d.canny_low, d.canny_high, blur_sigma=d.blur_sigma)
    with torch.no_grad():
        a = decode_edges(ck.models, z)
        b = decode_edges(ck.models, z.flip(-1)).flip(-1)
    want = (((a + b) / 2).clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = cv2.imread(str(tmp_path / "avg" / "one.png"))[:, :, ::-1]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    plain = (a.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert not np.array_equal(got, plain)
    from types import SimpleNamespace
    from pycompgen.inference.codec import decompress_batch
    for name in ("cvae", "edgediff"):
        with pytest.raises(ValueError, match="--flip-average applies to Compgen edge files only"):
            decompress_batch(SimpleNamespace(model_name=name), [("f.pcg", one.read_bytes())], flip_average=True)


def _err(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_cli_damaged_and_foreign_files(codec_env, tmp_path, capsys):
    from pycompgen import cli
    good = tmp_path / "f.pcg"
    assert cli.main(["compress", codec_env["faces"][0], "-o", str(good), "--checkpoint", codec_env["a3"]]) == 0
    capsys.readouterr()
    data = good.read_bytes()
    cases = {"trunc.pcg": data[:len(data) // 2], "short.pcg": data[:3], "flip.pcg": None, "png.pcg": b"\x89PNG\r\n"}
    flipped = bytearray(data)
    flipped[len(data) - 8] ^= 0x01                            # one bit inside the payload
    cases["flip.pcg"] = bytes(flipped)
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        out = tmp_path / ("png_" + name)
        assert cli.main(["decompress", str(p), "-o", str(out), "--checkpoint", codec_env["a3"]]) == 2
        err = _err(capsys)
        assert err.startswith("pycompgen decompress: error:") and name in err
        assert any(w in err for w in ("truncated", "corrupted", "not a pycompgen")), err
        assert not out.exists()                               # nothing written for a bad file
    # a file from another model (same system, other weights)
    assert cli.main(["decompress", str(good), "-o", str(tmp_path / "x"), "--checkpoint", codec_env["other"]]) == 2
    err = _err(capsys)
    assert "was written by model compgen@" in err and "use the same checkpoint" in err
    # a step-1 checkpoint has no trained ELM: it can neither write nor read edge files
    assert cli.main(["compress", codec_env["faces"][0], "-o", str(tmp_path / "s.pcg"), "--checkpoint",
                     codec_env["step1"]]) == 2
    assert "no trained ELM" in _err(capsys)
    assert cli.main(["decompress", str(good), "-o", str(tmp_path / "y"), "--checkpoint", codec_env["step1"]]) == 2
    assert "without trained h: use the same checkpoint" in _err(capsys)


def test_cli_bad_inputs(codec_env, tmp_path, capsys):
    from pycompgen import cli
    ck = ["--checkpoint", codec_env["a3"]]
    assert cli.main(["compress", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), *ck]) == 2
    assert "image not found" in _err(capsys)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert cli.main(["compress", str(bad), "-o", str(tmp_path / "o"), *ck]) == 2
    assert "cannot decode image" in _err(capsys)
    assert cli.main(["compress", codec_env["faces"][0], "-o", str(tmp_path / "o"), "--checkpoint",
                     str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in _err(capsys)
    assert cli.main(["compress", codec_env["faces"][0], "-o", str(tmp_path / "o"), *ck, "--payload", "latent"]) == 2
    assert "no entropy bottleneck" in _err(capsys)
    assert cli.main(["decompress", str(tmp_path / "missing.pcg"), "-o", str(tmp_path / "d"), *ck]) == 2
    assert "compressed file not found" in _err(capsys)
    with pytest.raises(SystemExit) as e:
        cli.main(["compress", "--help"])
    assert e.value.code == 0


def test_latent_payload_with_a_bottleneck(codec_env, one_thread):
    """Systems with an entropy bottleneck ("eb"): compress_latent / decompress_latent and the file path."""
    from pycompgen.inference import (compress_images, compress_latent, decompress_bytes, decompress_latent,
                                     load_checkpoint_for_codec, read_images)
    base = load_checkpoint_for_codec(codec_env["a3"])
    c = base.config.model.latent_channels
    torch.manual_seed(0)
    eb = EntropyBottleneck(c).eval()
    eb.update()
    models = dict(base.models, eb=eb)
    x = read_images(codec_env["faces"], base.image_size)
    data, shape = compress_latent(models, eb, x)
    assert shape == (3, c, base.image_size // 8, base.image_size // 8)
    with torch.no_grad():
        ref = models["g"](eb(models["f"](x))[0])
    assert torch.equal(decompress_latent(models, eb, data, shape), ref)
    # whole files, with the system/weights check (decoder parts: g and eb)
    import dataclasses
    ck = dataclasses.replace(base, models=models, parts=tuple(sorted(set(base.parts) | {"eb"})))
    blob = compress_images(ck, x)                               # auto -> latent
    x_hat, hdr = decompress_bytes(ck, blob, name="lat.pcg")
    assert hdr.kind == "latent" and hdr.params == {"latent_shape": list(shape[1:])} and hdr.count == 3
    assert torch.equal(x_hat, ref)
    eb2 = EntropyBottleneck(c).eval()                           # other bottleneck weights -> clear error
    eb2.update()
    ck2 = dataclasses.replace(ck, models=dict(models, eb=eb2))
    with pytest.raises(ValueError, match="lat.pcg was written by model compgen@.*use the same checkpoint"):
        decompress_bytes(ck2, blob, name="lat.pcg")
    with pytest.raises(ValueError, match="edge-map payloads only"):
        decompress_bytes(ck, blob, name="lat.pcg", psnr=10.0)
