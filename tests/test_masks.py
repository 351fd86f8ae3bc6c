"""Fixed CelebA face-ellipse mask and the masked Table 1 metrics (1−SSIM, 1−MS-SSIM, l1, l2)."""
import math

import numpy as np
import pytest
import torch

from pycompgen.data import center_square_resize, synthetic_faces
from pycompgen import metrics as M
from pycompgen.evaluation.masks import (CELEBA_ALIGNED_LANDMARKS, celeba_landmarks, face_ellipse,
                                        face_ellipse_mask, table1_metrics)


def faces(n=3, size=64, seed=0):
    return torch.from_numpy(synthetic_faces(n, size, seed=seed)).permute(0, 3, 1, 2).float() / 255.0


# -- mask ----------------------------------------------------------------------------------------------------------
def test_mask_shape_values_and_geometry():
    m = face_ellipse_mask(64)
    assert m.shape == (1, 1, 64, 64) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m, m.flip(-1))  # the aligned face is centred: the ellipse is left-right symmetric
    cx, cy, a, b = face_ellipse(64)
    assert abs(m.sum().item() - math.pi * a * b) < 0.02 * math.pi * a * b
    for x, y in celeba_landmarks(64).values():  # eyes, nose and mouth corners lie inside
        assert m[0, 0, round(y), round(x)] == 1
    assert m[0, 0, 0, 0] == 0 and m[0, 0, -1, -1] == 0 and m[0, 0, 5, 32] == 0  # corners, above the forehead
    rows = m[0, 0].sum(1).nonzero().flatten()
    assert rows.min() >= 10 and rows.max() <= 60  # forehead to chin, inside the image


def test_soft_mask_is_the_antialiased_binary_mask():
    hard, soft = face_ellipse_mask(64), face_ellipse_mask(64, soft=True)
    assert soft.min() >= 0 and soft.max() <= 1
    edge = (soft > 0) & (soft < 1)
    assert edge.any() and torch.equal(hard[~edge], soft[~edge])
    _, _, a, b = face_ellipse(64)
    assert abs(soft.sum().item() - math.pi * a * b) < 0.005 * math.pi * a * b


def test_mask_scales_with_image_size():
    m64, m128 = face_ellipse_mask(64, soft=True), face_ellipse_mask(128, soft=True)
    assert m128.shape == (1, 1, 128, 128)
    assert m128.sum().item() == pytest.approx(4 * m64.sum().item(), rel=0.01)
    assert torch.allclose(torch.nn.functional.avg_pool2d(m128, 2), m64, atol=0.15)


def test_landmarks_follow_the_data_layers_crop():
    """A dot at each aligned landmark of a 178×218 image lands where celeba_landmarks says after
    pycompgen.data's center_square_resize."""
    expected = celeba_landmarks(64)
    for name, (x, y) in CELEBA_ALIGNED_LANDMARKS.items():
        img = np.zeros((218, 178, 3), np.uint8)
        img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
        out = center_square_resize(img, 64)[:, :, 0].astype(np.float64)
        yy, xx = np.mgrid[0:64, 0:64]
        cx, cy = (out * xx).sum() / out.sum(), (out * yy).sum() / out.sum()
        assert abs(cx - expected[name][0]) < 0.1 and abs(cy - expected[name][1]) < 0.1, name


@pytest.mark.parametrize("kwargs", [{"image_size": 7}, {"image_size": 64.0}, {"image_size": True},
                                    {"source": "ffhq"}])
def test_mask_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="face mask"):
        face_ellipse_mask(**kwargs)


# -- Table 1 metrics -----------------------------------------------------------------------------------------------
def test_mask_of_ones_equals_unmasked():
    x = faces()
    y = (x + 0.08 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    plain = table1_metrics(x, y)
    ones = table1_metrics(x, y, torch.ones(1, 1, 64, 64))
    assert not plain["masked"] and ones["masked"]
    for k in ("1-ssim", "1-ms_ssim", "l1", "l2"):
        assert torch.equal(plain["per_image"][k], ones["per_image"][k]), k
        assert plain["per_image"][k].shape == (3,)
        assert plain["mean"][k] == pytest.approx(plain["per_image"][k].mean().item())
        assert plain["mean"][k] > 0


@pytest.mark.parametrize("masked", [False, True])
def test_identical_images_give_zero(masked):
    x = faces()
    r = table1_metrics(x, x.clone(), face_ellipse_mask(64) if masked else None)
    for k, v in r["mean"].items():
        assert abs(v) < 1e-5, k


def test_values_in_range_and_masked_values_are_the_metrics_of_masked_images():
    x, y = faces(4, seed=1), faces(4, seed=2)  # different faces: large errors
    mask = face_ellipse_mask(64)
    r = table1_metrics(x, y, mask)
    for res in (r, table1_metrics(x, y)):
        assert all(0 <= v <= 1 for v in res["per_image"]["1-ms_ssim"].tolist())
        assert all(0 <= v <= 2 for v in res["per_image"]["1-ssim"].tolist())
        assert all(0 <= v <= 1 for k in ("l1", "l2") for v in res["per_image"][k].tolist())
    xm, ym = x * mask, y * mask
    assert torch.allclose(r["per_image"]["1-ssim"], 1 - M.ssim(ym, xm))
    assert torch.allclose(r["per_image"]["1-ms_ssim"], 1 - M.ms_ssim(ym, xm))
    assert torch.allclose(r["per_image"]["l1"], (ym - xm).abs().mean((1, 2, 3)))
    assert torch.allclose(r["per_image"]["l2"], (ym - xm).pow(2).mean((1, 2, 3)))
    plain = table1_metrics(x, y)
    assert (r["per_image"]["l1"] < plain["per_image"]["l1"]).all()  # a binary mask only removes error


def test_errors_outside_the_mask_do_not_count():
    x = faces()
    mask = face_ellipse_mask(64)
    y = x * mask + (1 - x) * (1 - mask)  # background changed, face untouched
    masked, plain = table1_metrics(x, y, mask), table1_metrics(x, y)
    for k in ("1-ssim", "1-ms_ssim", "l1", "l2"):
        assert masked["mean"][k] < 1e-5 and plain["mean"][k] > 1e-3, k


def test_lp_mean_over_mask_pixels():
    x, y = faces(2, seed=3), faces(2, seed=4)
    mask = face_ellipse_mask(64)
    r = table1_metrics(x, y, mask, lp_mean="mask")
    inside = mask[0, 0].bool()
    d = (y - x)[:, :, inside]
    assert torch.allclose(r["per_image"]["l1"], d.abs().mean((1, 2)))
    assert torch.allclose(r["per_image"]["l2"], d.pow(2).mean((1, 2)))
    assert torch.equal(r["per_image"]["1-ssim"], table1_metrics(x, y, mask)["per_image"]["1-ssim"])
    assert torch.equal(table1_metrics(x, y, lp_mean="mask")["per_image"]["l1"],
                       table1_metrics(x, y)["per_image"]["l1"])  # no mask: all pixels


def test_bad_inputs_raise():
    x = faces(2)
    with pytest.raises(ValueError, match=r"x_hat has shape \(2, 3, 32, 32\) but x has shape \(2, 3, 64, 64\)"):
        table1_metrics(x, x[:, :, :32, :32])
    with pytest.raises(ValueError, match=r"mask has shape \(1, 1, 32, 32\)"):
        table1_metrics(x, x, torch.ones(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"mask has shape \(3, 1, 64, 64\)"):
        table1_metrics(x, x, torch.ones(3, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        table1_metrics(x, x, 2 * torch.ones(64, 64))
    with pytest.raises(ValueError, match="x_hat must be finite and in"):
        table1_metrics(x, x * 255)
    with pytest.raises(ValueError, match="N×C×H×W"):
        table1_metrics(x[0], x[0])
    with pytest.raises(ValueError, match="lp_mean"):
        table1_metrics(x, x, lp_mean="face")
