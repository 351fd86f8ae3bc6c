"""Data layer: CelebA / face-folder readers and their cache, synthetic faces, edge channel, sketches."""
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from pycompgen import data as D  # noqa: E402
from pycompgen.data import cache as C  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _write_jpeg(path, img_rgb):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img_rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    Path(path).write_bytes(buf.tobytes())


@pytest.fixture
def mini_celeba(tmp_path):
    """Official layout, 178x218 JPEGs: 8 train, 3 val, 2 test listed; one listed train file missing and one
    corrupt val JPEG. Each image has a distinct solid-colour 178x178 centre and a red border band (the rows the
    centre crop removes)."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    lines = []
    colours = {}
    for i in range(1, 14):
        name = f"{i:06d}.jpg"
        part = 0 if i <= 8 else (1 if i <= 11 else 2)
        lines.append(f"{name} {part}")
        if i == 3:
            continue  # listed but missing
        if i == 10:
            (root / "img_align_celeba" / name).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
            continue
        img = np.zeros((218, 178, 3), np.uint8)
        img[:] = (255, 0, 0)
        col = (15 * i, 255 - 15 * i, 100 + 10 * i)
        img[20:198] = col
        colours[name] = col
        _write_jpeg(root / "img_align_celeba" / name, img)
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root, colours


def test_celeba_reader_counts_skips_and_cache(mini_celeba, tmp_path, caplog, monkeypatch):
    root, colours = mini_celeba
    cache = tmp_path / "cache"
    calls = []
    real = C.decode_image
    monkeypatch.setattr(C, "decode_image", lambda p, s: calls.append(p) or real(p, s))
    with caplog.at_level(logging.INFO, logger="pycompgen.data"):
        tr = D.load_faces(str(root), "train", image_size=32, cache_dir=str(cache))
    assert len(tr) == 7 and tr.image_size == 32 and "celeba" in tr.source
    warns = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warns) == 1 and "1 missing" in warns[0].getMessage() and "000003.jpg" in warns[0].getMessage()
    assert tr.meta["missing"] == 1 and tr.meta["corrupt"] == 0 and tr.meta["kept"] == 7
    item = tr[0]
    assert item.dtype == torch.uint8 and item.shape == (3, 32, 32)
    # RGB order and the centre crop: the red band is cropped away, the colour of 000001.jpg survives
    assert np.abs(item.float().mean((1, 2)).numpy() - np.array(colours["000001.jpg"])).max() < 6
    assert len(calls) == 8  # 8 listed train names decoded once

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pycompgen.data"):
        va = D.load_faces(str(root), "val", image_size=32, cache_dir=str(cache))
    assert len(va) == 2 and va.meta["corrupt"] == 1 and va.meta["missing"] == 0
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    te = D.load_faces(str(root), "test", image_size=32, cache_dir=str(cache))
    assert len(te) == 2

    # second load: memory-mapped cache, no decoding, no new warning
    calls.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pycompgen.data"):
        tr2 = D.load_faces(str(root), "train", image_size=32, cache_dir=str(cache))
    assert calls == [] and not caplog.records
    assert isinstance(tr2.images, np.memmap) and not tr2.images.flags.writeable
    assert np.array_equal(np.asarray(tr2.images), np.asarray(tr.images))
    side = json.loads(next(cache.glob("celeba-train-32px-*.json")).read_text())
    assert side["missing"] == 1 and side["kept"] == 7 and side["image_size"] == 32

    # a new image size is a new cache entry (decoded again); so is a changed file list
    tr48 = D.load_faces(str(root), "train", image_size=48, cache_dir=str(cache))
    assert len(calls) == 8 and tr48.images.shape == (7, 48, 48, 3)
    (root / "list_eval_partition.txt").write_text(
        (root / "list_eval_partition.txt").read_text().replace("000008.jpg 0", "000008.jpg 1"))
    calls.clear()
    assert len(D.load_faces(str(root), "train", image_size=32, cache_dir=str(cache))) == 6
    assert len(calls) == 7
    assert not list(cache.glob(".tmp-*"))  # no temporary left behind

    # DataLoader default collate stacks uint8 batches; pickling a memmapped dataset does not copy the pixels
    batch = next(iter(torch.utils.data.DataLoader(tr2, batch_size=4, shuffle=True)))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.uint8
    blob = pickle.dumps(tr2)
    assert len(blob) < 2000 and np.array_equal(pickle.loads(blob).images, tr2.images)


def test_concurrent_loads_decode_once(mini_celeba, tmp_path, monkeypatch):
    import threading
    root, _ = mini_celeba
    calls = []
    real = C.decode_image
    monkeypatch.setattr(C, "decode_image", lambda p, s: calls.append(p) or real(p, s))
    res = []
    ts = [threading.Thread(target=lambda: res.append(D.load_faces(str(root), "train", 24, str(tmp_path / "c"))))
          for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(res) == 3 and all(len(r) == 7 for r in res) and len(calls) == 8


def test_face_array_views_and_bad_input(mini_celeba, tmp_path):
    root, _ = mini_celeba
    tr = D.load_faces(str(root), "train", 16, str(tmp_path))
    view = D.FaceArray(tr.images[2:5], source="view")
    back = pickle.loads(pickle.dumps(view))  # a view of a memmap pickles its own pixels, not the whole file
    assert len(back) == 3 and np.array_equal(back.images, tr.images[2:5])
    with pytest.raises(ValueError, match="uint8"):
        D.FaceArray(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="image_size"):
        D.load_faces(None, image_size=4)


def test_default_cache_dir_next_to_dataset(mini_celeba, tmp_path, monkeypatch):
    root, _ = mini_celeba
    d = D.load_faces(str(root), "test", image_size=16)
    assert Path(d.images.filename).parent == root / ".pycompgen_cache"
    # a read-only dataset folder is left alone: the cache goes to the user cache dir
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "a.png").write_bytes(cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ro.chmod(0o555)
    try:
        assert D.default_cache_dir(ro) == tmp_path / "xdg" / "pycompgen"
        assert not (ro / ".pycompgen_cache").exists()
    finally:
        ro.chmod(0o755)


def test_face_folder_reader(tmp_path):
    root = tmp_path / "faces"
    (root / "sub").mkdir(parents=True)
    faces = D.synthetic_faces(30, 80, seed=1)
    for i, f in enumerate(faces):
        img = np.zeros((100, 80, 3), np.uint8)  # portrait: centre square crop drops 10 rows top and bottom
        img[10:90] = f
        _write_jpeg(root / ("sub" if i % 2 else ".") / f"face{i:03d}.jpg", img)
    (root / "notes.txt").write_text("not an image")
    tr = D.load_faces(str(root), "train", image_size=40, cache_dir=str(tmp_path / "c"))
    va = D.load_faces(str(root), "val", image_size=40, cache_dir=str(tmp_path / "c"))
    assert len(tr) + len(va) == 30 and len(tr) > len(va) and tr.images.shape[1:] == (40, 40, 3)
    names_tr = {n for n in D.list_images(root) if D.folder.hash_split(n) == "train"}
    assert len(names_tr) == len(tr)
    # the decoded faces match the source downscaled (JPEG tolerance)
    src = cv2.resize(faces[0], (40, 40), interpolation=cv2.INTER_AREA).astype(float)
    first = tr if D.folder.hash_split("face000.jpg") == "train" else va
    assert np.abs(first.images[0].astype(float) - src).mean() < 8
    # an explicit split file wins
    (root / "splits.txt").write_text("face000.jpg 0\nsub/face001.jpg val\nface002.jpg 2\n")
    assert len(D.load_faces(str(root), "train", image_size=40, cache_dir=str(tmp_path / "c"))) == 1
    assert len(D.load_faces(str(root), "val", image_size=40, cache_dir=str(tmp_path / "c"))) == 1


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        D.load_faces(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        D.load_faces(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="nothere"):
        D.load_sketches(tmp_path / "nothere")
    with pytest.raises(ValueError, match="split"):
        D.load_faces(None, split="dev")


def test_synthetic_faces_deterministic_and_varied():
    a = D.synthetic_faces(64, 64, seed=0)
    assert a.shape == (64, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, D.synthetic_faces(64, 64, seed=0))
    assert np.array_equal(a[:10], D.synthetic_faces(10, 64, seed=0))
    assert not np.array_equal(a, D.synthetic_faces(64, 64, seed=1))
    flat = a.reshape(64, -1).astype(np.float64)
    sq = (flat ** 2).sum(1)
    rms = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0) / flat.shape[1])
    assert rms[~np.eye(64, dtype=bool)].min() > 10  # every pair of faces differs
    assert a.std() > 30
    tr, va = D.load_faces(None, "train", synthetic_count=64), D.load_faces("synthetic", "val", synthetic_count=64)
    assert len(tr) == 64 and len(va) == 16 and not np.array_equal(tr.images[:16], va.images)
    assert tr[3].shape == (3, 64, 64) and tr[3].dtype == torch.uint8


def test_to_float01_from_arrays_memmaps_lists_and_face_arrays(tmp_path):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1], equal from an array, a read-only memmap, a list of
    arrays and a FaceArray; the source is not modified; anything else is refused in one line."""
    imgs = D.synthetic_faces(3, 16, seed=1)
    want = torch.from_numpy(imgs.astype(np.float32) / 255).permute(0, 3, 1, 2)
    path = tmp_path / "faces.u8"
    imgs.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=imgs.shape)
    for src in (imgs, mm, list(imgs), D.FaceArray(mm)):
        x = D.to_float01(src)
        assert x.dtype == torch.float32 and x.shape == (3, 3, 16, 16)
        torch.testing.assert_close(x, want, rtol=0, atol=1e-7)
        x.mul_(0)  # a copy: the source keeps its pixels
    assert np.array_equal(mm, imgs)
    for bad in (imgs[0], imgs.astype(np.float32), imgs[..., :1]):
        with pytest.raises(ValueError, match="to_float01: expected uint8 \\(N, H, W, 3\\)"):
            D.to_float01(bad)


def test_limit_faces_nested_fixed_subsets_and_the_training_split(tmp_path):
    """data.train_limit: the first N of one fixed permutation (nested, in the split's order, independent of the
    run's seed), applied by the harness to the training split only; 0 keeps every face; bad N is one line."""
    from pycompgen.config import Config, apply_overrides
    from pycompgen.registry import get_system
    faces = D.FaceArray(D.synthetic_faces(40, 16, seed=2))
    small, large = D.limit_faces(faces, 10), D.limit_faces(faces, 25)
    assert len(small) == 10 and len(large) == 25 and small.meta["train_limit"] == 10
    rows = lambda f: {f.images[i].tobytes() for i in range(len(f))}  # noqa: E731
    assert rows(small) < rows(large) < rows(faces)                   # nested
    assert np.array_equal(D.limit_faces(faces, 10).images, small.images)
    pos = [next(j for j in range(40) if np.array_equal(faces.images[j], small.images[i])) for i in range(10)]
    assert pos == sorted(pos) and pos != list(range(10))             # a spread subset, in the split's order
    assert D.limit_faces(faces, 0) is faces and D.limit_faces(faces, 40) is faces
    for bad in (-1, 41):
        with pytest.raises(ValueError, match=f"data.train_limit={bad}: expected 0 \\(all\\) to the split's 40"):
            D.limit_faces(faces, bad)
    cfg = Config()
    apply_overrides(cfg, ["data.synthetic_count=48", "data.image_size=16", "data.train_limit=12"])
    system = get_system("compgen")
    assert len(system.datasets(cfg, "train")) == 12
    assert len(system.datasets(cfg, "val")) == len(D.load_faces(None, "val", image_size=16, synthetic_count=48))
    with pytest.raises(ValueError, match="data.train_limit must be >= 0"):
        apply_overrides(Config(), ["data.train_limit=-3"])


def test_edge_channel_shapes_density_and_psnr():
    faces = torch.from_numpy(D.synthetic_faces(256, 64, seed=5)).permute(0, 3, 1, 2).contiguous()
    ch = D.EdgeChannel(psnr=(-5.0, 50.0))
    g = torch.Generator().manual_seed(0)
    out = ch(faces, "cpu", generator=g)
    assert out["x"].dtype == torch.float32 and out["x"].shape == (256, 3, 64, 64)
    assert 0 <= float(out["x"].min()) and float(out["x"].max()) <= 1
    assert torch.equal(out["x"], faces.float() / 255)
    z = out["z"]
    assert z.shape == (256, 1, 64, 64) and set(torch.unique(z).tolist()) <= {0.0, 1.0}
    dens = z.mean().item()
    assert 0.08 <= dens <= 0.16, dens  # documented: ~10.6 % on synthetic faces at the defaults
    p = out["psnr"]
    assert p.shape == (256,) and p.min() >= -5 and p.max() <= 50 and p.max() - p.min() > 40
    # noise level follows the per-image PSNR: sigma = 10^(-psnr/20), normalised by max(1, sigma)
    sig = 10 ** (-p.double() / 20)
    resid = (out["z_noisy"].double() * sig.clamp(min=1).view(-1, 1, 1, 1) - z.double()).flatten(1).std(1)
    assert torch.allclose(resid, sig, rtol=0.15)
    # same seed, same draw; fixed and infinite PSNR
    out2 = ch(faces, "cpu", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out2["z_noisy"], out["z_noisy"])
    assert torch.equal(D.EdgeChannel(psnr=float("inf"))(faces[:4])["z_noisy"], out["z"][:4])
    zn = ch.noisy(z[:64], 10.0, generator=torch.Generator().manual_seed(1))
    assert abs((zn - z[:64]).std().item() - 10 ** -0.5) < 0.02
    with pytest.raises(ValueError, match="psnr"):
        D.EdgeChannel(psnr=(10, 0))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ch(faces[:, :1])


def test_sketch_preprocessing(tmp_path):
    sketches, masks = D.synthetic_sketches(4, 200, seed=3, return_masks=True)
    sketch, mask = sketches[0], masks[0]
    assert np.array_equal(sketches, D.synthetic_sketches(4, 200, seed=3))
    e = D.sketch_to_edges(sketch, 64)
    assert e.dtype == bool and e.shape == (64, 64)
    assert 0.02 < e.mean() < 0.2
    # thin: few pixels have more than 3 of their 8 neighbours set
    p = np.pad(e, 1).astype(int)
    nb = sum(np.roll(np.roll(p, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)[1:-1, 1:-1]
    assert (nb[e] > 3).mean() < 0.2  # Canny maps of faces: ~0.17; the unthinned binary stroke map: ~0.8
    # strokes located where drawn: every edge pixel lies within 2 px of the drawn strokes
    m64 = cv2.resize(mask.astype(np.uint8) * 255, (64, 64), interpolation=cv2.INTER_AREA) > 20
    near = cv2.dilate(m64.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert near[e].mean() > 0.97
    # and most drawn strokes are covered
    cover = cv2.dilate(e.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert cover[D.zhang_suen_thin(m64)].mean() > 0.8
    # blank paper gives an empty map
    assert not D.sketch_to_edges(np.full((200, 200), 230, np.uint8), 64).any()
    # folder reader
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"s{i}.jpg"), sketches[i])
    (tmp_path / "broken.png").write_bytes(b"nope")
    t, names = D.load_sketches(tmp_path, image_size=64, return_names=True)
    assert t.shape == (3, 1, 64, 64) and t.dtype == torch.float32 and set(torch.unique(t).tolist()) <= {0.0, 1.0}
    assert names == ["s0.jpg", "s1.jpg", "s2.jpg"]


def test_zhang_suen_thins_a_bar_to_a_line():
    bar = np.zeros((20, 40), bool)
    bar[8:13, 5:35] = True
    sk = D.zhang_suen_thin(bar)
    assert sk.sum() >= 20 and (sk.sum(0)[8:32] == 1).all() and sk[:8].sum() == 0 and sk[13:].sum() == 0


@pytest.mark.skipif(not (SHARED / "celeba" / "list_eval_partition.txt").exists(), reason="real data absent")
def test_real_celeba_val_and_cufsf(tmp_path):
    va = D.load_faces(str(SHARED / "celeba"), "val", image_size=32, cache_dir=str(tmp_path))
    assert len(va) == 2044 and va.meta["missing"] == 0 and va.meta["corrupt"] == 0
    x = torch.from_numpy(np.array(va.images[:200])).permute(0, 3, 1, 2)
    up = torch.nn.functional.interpolate(x.float(), size=64, mode="bilinear").round().clamp(0, 255).byte()
    assert 0.05 < D.EdgeChannel(psnr=50.0)(up)["z"].mean().item() < 0.3
    sk = SHARED / "cufsf" / "sketches"
    if sk.is_dir():
        t = D.load_sketches(sk, 64, limit=20)
        assert t.shape == (20, 1, 64, 64) and 0.03 < t.mean().item() < 0.25
