#!/usr/bin/env python
"""Short probes of the BEGAN refiner's equilibrium (variant and config by key=value): trains from scratch for
``--steps`` steps on CelebA training faces (random batches, flips) and every ``--every`` steps prints the averaged
k_t, L(x), L(G), L_RCN and, on ``--n-val`` validation faces degraded to 16 px, the refiner's SSIM at 16 px to its
input and sharpness ratio (raw G and its EMA) beside the sharpness ratio of D's reconstructions of the real faces
(what the refiner's outputs can become: G is pulled towards images D reconstructs well). ``--d-warmup N`` first
trains D alone as an autoencoder of real faces for N steps (k_t and G untouched), to test whether a longer-trained D
raises that ceiling; ``--d-zoo NAME`` replaces D by the zoo entry NAME's trained Compgen autoencoder g(f(·))
(step 1; its BatchNorms keep their running statistics), a discriminator that already reconstructs real faces'
detail (not BEGAN's design); ``--patch-critic W`` adds, beside BEGAN's D, a hinge critic P on full-resolution
images (``pycompgen.networks.PatchDiscriminator``, no normalisation; its real side a fresh batch) and a second G step
per iteration on −W·P(G(v)) + λ_r·L_RCN (beyond the paper). Not a test.

    python bench/refiner_probe.py --data ../shared/data/celeba --steps 600 began.variant=A began.rcn_size=16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


class ZooAutoencoderD(torch.nn.Module):
    """D(v) = 2·g(f((v + 1) / 2)) − 1 for v in [−1, 1]: a zoo entry's Compgen autoencoder as BEGAN's D."""

    def __init__(self, name: str):
        super().__init__()
        from pycompgen import zoo
        nets = zoo.load(name, stages="step1").models("step1")
        self.f, self.g = nets["f"], nets["g"]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.g(self.f((v + 1.0) / 2.0)) - 1.0

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # running statistics from the autoencoder's training, not from fake batches
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        return self


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="CelebA root")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--d-warmup", type=int, default=0, help="steps of D alone (L(x)) before the BEGAN loop")
    ap.add_argument("--d-zoo", default=None, help="a Compgen zoo entry whose step-1 autoencoder becomes D")
    ap.add_argument("--patch-critic", type=float, default=0.0, metavar="W",
                    help="weight of an auxiliary hinge critic's term in a second G step (0: none)")
    ap.add_argument("--save", default=None, help="write G's and G_ema's weights here at the end (to look at them)")
    ap.add_argument("overrides", nargs="*", help="config key=value (default: 64x64, batch 25, channels 32)")
    args = ap.parse_args(argv)
    import os
    from pycompgen.config import load_config
    from pycompgen.data import load_faces, to_float01
    from pycompgen.evaluation.refiner import degrade, sharpness_ratio, ssim_lowres
    from pycompgen.networks import PatchDiscriminator
    from pycompgen.systems.began import BEGAN, ae_loss, pm1, rcn_loss
    cfg = load_config(None, ["model.name=began", "train.stage=train", "data.image_size=64", "train.batch_size=25",
                             "began.channels=32", "train.device=cpu", *args.overrides])
    s = BEGAN(cfg, "cpu")
    if args.d_zoo:
        s.models["D"] = s.nets["D"] = ZooAutoencoderD(args.d_zoo).train()
        s.optimizers["D"] = torch.optim.Adam(s.models["D"].parameters(), lr=cfg.began.lr_d,
                                             betas=tuple(cfg.began.betas_d))
    size, bs = cfg.data.image_size, cfg.train.batch_size
    if args.patch_critic:
        torch.manual_seed(args.seed)  # P's initialisation, so that a probe repeats
        P = PatchDiscriminator(3, 32, 3, size, norm=False)
        opt_p = torch.optim.Adam(P.parameters(), lr=2e-4, betas=(0.5, 0.999))
    train = load_faces(args.data, "train", size).images
    val = to_float01(load_faces(args.data, "val", size).images[:args.n_val])
    crude = degrade(val, 16)
    g = torch.Generator().manual_seed(args.seed)
    print(f"load average {os.getloadavg()}; {' '.join(args.overrides)}", flush=True)
    def batch():
        idx = torch.randint(0, len(train), (bs,), generator=g).sort().values.numpy()
        x = to_float01(train[idx])
        flip = torch.rand(bs, generator=g) < 0.5
        x[flip] = x[flip].flip(-1)
        return x

    def d_sharpness() -> float:
        with torch.no_grad():
            rec = (s.models["D"](pm1(val)).float() + 1) / 2  # D works on [-1, 1]
        return round(sharpness_ratio(rec.clamp(0, 1), val), 3)

    t0, lx = time.time(), []
    for it in range(1, args.d_warmup + 1):  # D alone: an autoencoder of real faces
        loss = ae_loss(s.models["D"], batch())
        s.step(loss, "D")
        lx.append(float(loss.detach()))
        if it % args.every == 0 or it == args.d_warmup:
            print(f"D warm-up step {it} ({time.time() - t0:.0f} s): L(x) {sum(lx) / len(lx):.4f}, "
                  f"D(x) sharpness {d_sharpness()}", flush=True)
            lx = []
    t0, acc = time.time(), {}
    for it in range(1, args.steps + 1):
        x = batch()
        logs = s.train_step({"x": x})
        if args.patch_critic:  # hinge critic on a fresh real batch, then a G step on its term and L_RCN
            c, real = cfg.began, batch()
            out = s.models["g"](x)  # one forward: P's fake side (detached), then G's step through the updated P
            loss_p = torch.relu(1 - P(pm1(real))).mean() + torch.relu(1 + P(pm1(out.detach()))).mean()
            opt_p.zero_grad(set_to_none=True)
            loss_p.backward()
            opt_p.step()
            adv = -P(pm1(out)).mean()
            s.step(args.patch_critic * adv + c.lambda_r * rcn_loss(out, x, c.rcn_resolution(size)), "g",
                   inputs=list(s.models["g"].parameters()))
            logs = {**logs, "loss_p": loss_p.detach(), "adv_p": adv.detach()}
        s.update_ema()
        for k in ("k_t", "l_real", "l_fake", "l_rcn", "loss_p", "adv_p"):
            if k in logs:
                acc[k] = acc.get(k, 0.0) + float(logs[k]) / args.every
        if it % args.every:
            continue
        row = {k: round(v, 4) for k, v in acc.items()}
        for name, net in (("G", s.models["g"]), ("G_ema", s.ema.get("g"))):
            if net is None:
                continue
            net.eval()
            with torch.no_grad():
                out = net(crude).float()
            net.train(name == "G")
            row[f"{name} ssim16/sharpness"] = (round(ssim_lowres(out, crude, 16), 3),
                                               round(sharpness_ratio(out, val), 3))
        row["D(x) sharpness"] = d_sharpness()
        print(f"step {it} ({time.time() - t0:.0f} s): {row}", flush=True)
        acc = {}
    if args.save:
        torch.save({"g": s.models["g"].state_dict(), "g_ema": s.ema["g"].state_dict()}, args.save)
    print(f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
