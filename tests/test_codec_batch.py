"""Batched codec work (issue 20): one forward pass per batch in compress and decompress, each file the same as
coding that face alone; a bad file among many fails before anything is written."""
import numpy as np
import pytest
import torch

from pycompgen.inference import (compress_batch, compress_files, compress_images, decompress_batch, decompress_bytes,
                                 decompress_files)

from pycompgen.cli.common import pretrained_stage


def _faces(n, seed=0):
    from pycompgen.data import synthetic_faces
    return torch.from_numpy(synthetic_faces(n, 64, seed=seed)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def codecs():
    return {"edges": pretrained_stage("compgen-64"), "latent": pretrained_stage("compgen-ae-64", quality=1)}


@pytest.mark.parametrize("kind", ["edges", "latent"])
def test_batched_files_match_files_of_single_faces(codecs, kind, one_thread):
    ckpt = codecs[kind]
    x = _faces(5)
    files = compress_batch(ckpt, x, kind)
    assert len(files) == 5
    for i, f in enumerate(files):
        alone = compress_images(ckpt, x[i:i + 1], kind)
        if kind == "edges":
            assert f == alone  # Canny and the edge coder are per image: identical bytes
        else:  # the encoder's float sums may differ with the batch size; the files decode to (nearly) one face
            a, b = decompress_bytes(ckpt, f)[0], decompress_bytes(ckpt, alone)[0]
            assert abs(len(f) - len(alone)) <= 2 and float((a - b).abs().max()) < 0.02
    out = decompress_batch(ckpt, [(f"f{i}", f) for i, f in enumerate(files)], batch_size=2)
    for i, (x_hat, hdr) in enumerate(out):
        assert hdr.count == 1
        torch.testing.assert_close(x_hat, decompress_bytes(ckpt, files[i])[0], atol=1e-5, rtol=0)


def test_folders_in_batches_and_a_bad_file_writes_nothing(codecs, tmp_path, one_thread):
    import cv2
    ckpt = codecs["edges"]
    src = tmp_path / "faces"
    src.mkdir()
    u8 = (_faces(5, seed=3) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, img in enumerate(u8):
        cv2.imwrite(str(src / f"face{i}.png"), np.ascontiguousarray(img[:, :, ::-1]))
    notes = []
    pcg = compress_files(ckpt, [src], tmp_path / "pcg", batch_size=2, note=notes.append)
    assert len(pcg) == 5 and any("compressed 4/5" in n for n in notes)
    pngs = decompress_files(ckpt, pcg, tmp_path / "png", batch_size=2, note=notes.append)
    assert len(pngs) == 5
    bad = tmp_path / "pcg" / "zz_bad.pcg"
    bad.write_bytes(b"PCG not really")
    with pytest.raises(ValueError):
        decompress_files(ckpt, pcg + [bad], tmp_path / "png2", batch_size=2)
    assert not (tmp_path / "png2").exists()


def test_batch_size_must_be_positive(tmp_path, capsys):
    from pycompgen.cli import main
    assert main(["compress", "--pretrained", "compgen-64", "--batch-size", "0", str(tmp_path / "x.png"),
                 "-o", str(tmp_path / "o")]) == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
