"""Reference Canny (placeholder: to be replaced by a pure-PyTorch implementation)."""
import numpy as np
import torch


def canny(img, low, high, blur_sigma=None, l2_gradient=True):
    import cv2
    if img.shape[1] == 3:
        img = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
    u8 = (img.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = np.stack([cv2.Canny(u8[i, 0], low * 255, high * 255, L2gradient=l2_gradient) for i in range(u8.shape[0])])
    return torch.from_numpy(out > 0).to(img.dtype if img.dtype.is_floating_point else torch.float32).unsqueeze(1)
