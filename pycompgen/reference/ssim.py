"""Reference SSIM (Wang et al. 2004) with a separable Gaussian window.

padding="valid": full windows only (as pytorch-msssim); padding="same": reflect padding by window_size//2, as the
compiled op pycompgen.ops.ssim.
"""
import torch
import torch.nn.functional as F


def gaussian_window(window_size: int, sigma: float, dtype=torch.float64, device=None) -> torch.Tensor:
    coords = torch.arange(window_size, dtype=dtype, device=device) - (window_size - 1) / 2.0
    g = torch.exp(-(coords ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _blur(t: torch.Tensor, g: torch.Tensor, padding: str) -> torch.Tensor:
    c = t.shape[1]
    k = g.numel()
    if padding == "same":
        p = k // 2
        t = F.pad(t, (p, p, p, p), mode="reflect")
    wh = g.view(1, 1, 1, k).expand(c, 1, 1, k)
    wv = g.view(1, 1, k, 1).expand(c, 1, k, 1)
    return F.conv2d(F.conv2d(t, wh, groups=c), wv, groups=c)


def ssim(x, y, window_size=11, sigma=1.5, data_range=1.0, k1=0.01, k2=0.03, padding="valid", reduction="mean"):
    g = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x, mu_y = _blur(x, g, padding), _blur(y, g, padding)
    sxx = _blur(x * x, g, padding) - mu_x ** 2
    syy = _blur(y * y, g, padding) - mu_y ** 2
    sxy = _blur(x * y, g, padding) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    if reduction == "map":
        return smap
    if reduction == "none":
        return smap.flatten(1).mean(1)
    return smap.mean()


def ssim_loss(x, y, **kw):
    return 0.5 * (1.0 - ssim(x, y, **kw))
