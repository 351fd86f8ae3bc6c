"""Reference AWGN channel with the paper's PSNR definition and power normalisation."""
import math

import torch


def awgn(z, psnr_db, normalize=True, peak=1.0, generator=None):
    n = z.shape[0]
    psnr = torch.as_tensor(psnr_db, dtype=torch.float64).to(z.device).expand(n) if n else torch.zeros(0)
    if peak is None:
        pk = z.detach().abs().flatten(1).amax(1).to(torch.float64)
    else:
        pk = torch.full((n,), float(peak), dtype=torch.float64, device=z.device)
    sigma = torch.where(torch.isinf(psnr) & (psnr > 0), torch.zeros_like(pk), pk * torch.pow(10.0, -psnr / 20.0))
    noise = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    shape = (n,) + (1,) * (z.dim() - 1)
    s = sigma.to(z.dtype).view(shape)
    out = z + s * noise
    if normalize:
        out = out / torch.clamp(s, min=1.0)
    return out
