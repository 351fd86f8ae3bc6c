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
per iteration on −W·P(G(v)) + λ_r·L_RCN (beyond the paper; ``--critic patch``: spectral-normalised, one logit per
~22-px patch); ``--g-warmup N`` first trains G alone on L1 at full size; ``--fd N`` adds the judge's FD (pooled
features) of G_ema's outputs on N validation faces to N others, a gate the sharpness figure needs (it counts
artefacts and noise as detail). Not a test.

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


def patch_critic(ch: int = 64) -> torch.nn.Module:
    """A spectral-normalised patch critic: 64x64 -> 16x16 logits, each seeing ~22 px (texture, not layout)."""
    from torch import nn
    sn = nn.utils.spectral_norm
    return nn.Sequential(sn(nn.Conv2d(3, ch, 4, 2, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(ch, 2 * ch, 4, 2, 1)),
                         nn.LeakyReLU(0.2), sn(nn.Conv2d(2 * ch, 4 * ch, 3, 1, 1)), nn.LeakyReLU(0.2),
                         sn(nn.Conv2d(4 * ch, 1, 3, 1, 1)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="CelebA root")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--d-warmup", type=int, default=0, help="steps of D alone (L(x)) before the BEGAN loop")
    ap.add_argument("--g-warmup", type=int, default=0,
                    help="steps of G alone on L1 at full size (a regression refiner, as SR-GANs pretrain) before the "
                         "BEGAN loop")
    ap.add_argument("--d-zoo", default=None, help="a Compgen zoo entry whose step-1 autoencoder becomes D")
    ap.add_argument("--patch-critic", type=float, default=0.0, metavar="W",
                    help="weight of an auxiliary hinge critic's term in a second G step (0: none)")
    ap.add_argument("--critic", choices=("global", "patch"), default="global",
                    help="--patch-critic's design: global (PatchDiscriminator, one logit per image) or patch "
                         "(spectral-normalised convs, one logit per ~22-px patch)")
    ap.add_argument("--lr-p", type=float, default=2e-4, help="the auxiliary critic's learning rate")
    ap.add_argument("--fd", type=int, default=0, metavar="N",
                    help="also print the judge's FD (zoo:compgen-64 features pooled to 2x2, 64 values) of G_ema's "
                         "outputs on N validation faces and of their 16-px inputs, to N other validation faces")
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
        P = PatchDiscriminator(3, 32, 3, size, norm=False) if args.critic == "global" else patch_critic()
        opt_p = torch.optim.Adam(P.parameters(), lr=args.lr_p, betas=(0.5, 0.999))
    train = load_faces(args.data, "train", size).images
    all_val = load_faces(args.data, "val", size).images
    val = to_float01(all_val[:args.n_val])
    crude = degrade(val, 16)
    if args.fd:  # 64 pooled values: with 1,024 flattened ones and a few hundred faces FD ranks blur above real faces
        from pycompgen.evaluation.judge import frechet_distance, resolve_features
        feats = resolve_features("zoo:compgen-64", pool=2)
        fd_val = to_float01(all_val[:args.fd])
        fd_crude, ref = degrade(fd_val, 16), feats.extract(to_float01(all_val[args.fd:2 * args.fd]))
        print(f"FD to {args.fd} other validation faces: originals {frechet_distance(feats.extract(fd_val), ref):.1f}, "
              f"16-px inputs {frechet_distance(feats.extract(fd_crude), ref):.1f}", flush=True)
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
    t0, lg = time.time(), []
    for it in range(1, args.g_warmup + 1):  # G alone: the conditional mean at full size (smooth, no artefacts)
        x = batch()
        loss = rcn_loss(s.models["g"](x), x, None)
        s.step(loss, "g", inputs=list(s.models["g"].parameters()))
        s.update_ema()
        lg.append(float(loss.detach()))
        if it % args.every == 0 or it == args.g_warmup:
            print(f"G warm-up step {it} ({time.time() - t0:.0f} s): L1 {sum(lg) / len(lg):.4f}", flush=True)
            lg = []
    if args.g_warmup and s.ema.get("g") is not None:  # the average starts from the warmed-up G
        s.ema["g"].load_state_dict(s.models["g"].state_dict())
    t0, acc = time.time(), {}
    for it in range(1, args.steps + 1):
        x = batch()
        logs = s.train_step({"x": x})
        if args.patch_critic:  # hinge critic on a fresh real batch, then a G step on its term and L_RCN
            c, real = cfg.began, batch()
            out, raw = s.models["g"](x, with_raw=True)  # one forward: P's fake side (detached), then G's step through the updated P
            loss_p = torch.relu(1 - P(pm1(real))).mean() + torch.relu(1 + P(pm1(out.detach()))).mean()
            opt_p.zero_grad(set_to_none=True)
            loss_p.backward()
            opt_p.step()
            adv = -P(pm1(out)).mean()
            s.step(args.patch_critic * adv + c.lambda_r * rcn_loss(raw, x, c.rcn_resolution(size)), "g",
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
            if args.fd and name == "G_ema":
                with torch.no_grad():
                    row["G_ema FD"] = round(frechet_distance(feats.extract(net(fd_crude).float()), ref), 1)
        row["D(x) sharpness"] = d_sharpness()
        print(f"step {it} ({time.time() - t0:.0f} s): {row}", flush=True)
        acc = {}
    if args.save:
        torch.save({"g": s.models["g"].state_dict(), "g_ema": s.ema["g"].state_dict()}, args.save)
    print(f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
