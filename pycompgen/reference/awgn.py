"""Reference AWGN channel with the paper's PSNR definition and power normalisation.

Same sigma and normalisation as pycompgen.ops.awgn; the noise itself comes from torch.randn (the op uses its own
counter-based generator), so the two agree in distribution, not sample by sample.
"""

import torch


def awgn(z, psnr_db, normalize=True, peak=1.0, generator=None):
    n = z.shape[0]
    psnr = torch.as_tensor(psnr_db, dtype=torch.float64).to(z.device).expand(n) if n else torch.zeros(0)
    if peak is None:
        pk = z.detach().abs().flatten(1).amax(1).to(torch.float64)
        if bool((pk == 0).any()):
            raise ValueError("awgn: peak=None but an image of z is all zero (its peak is 0); pass an explicit peak")
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
