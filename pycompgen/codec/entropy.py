"""Entropy bottleneck with a factorised prior (Ballé et al. 2018, "Variational image compression with a scale
hyperprior", Sec. 2 and appendix 6.1), and its range coder (constriction).

Density model. Per channel c, a cumulative c(x) = f_K ∘ … ∘ f_1(x) maps R -> (0, 1) monotonically:

    f_k(x) = g_k(H^(k) x + b^(k)),  g_k(x) = x + a^(k) ⊙ tanh(x)  (k < K),  g_K = sigmoid
    H^(k) = softplus(Ĥ^(k)) > 0,    a^(k) = tanh(â^(k)) > -1

(``filters=(3,3,3)``: dimensions 1 -> 3 -> 3 -> 3 -> 1, K = 4). The network returns logits (c before the final
sigmoid). The likelihood of a value ỹ under the density convolved with U(-½, ½) is c(ỹ + ½) − c(ỹ − ½), evaluated
in the logit domain on the side where the sigmoid is not saturated.

Training adds U(-½, ½) noise to y (a differentiable proxy of rounding); evaluation rounds around per-channel
medians, ŷ = round(y − m) + m. ``rate_bits(likelihoods)`` = −Σ log2 p. The medians are the middle ones of three
learned quantiles q_lo, q_mid, q_hi per channel with c(q_lo) = τ/2, c(q_mid) = ½, c(q_hi) = 1 − τ/2 (τ =
``tail_mass``); ``loss()`` = Σ |logit c(q) − target| trains them (only the quantiles: the density network is
detached there, so the rate alone shapes the density). Add ``loss()`` to the training loss (then every parameter
receives a gradient in each backward pass, as DDP expects without ``find_unused_parameters``); the quantiles move
by about one learning-rate step per iteration, so give them a larger rate (e.g. their own parameter group).

Coding. After training, ``update()`` computes per channel, in float64, the probabilities of the integer offsets
from the median that cover all but ``tail_mass`` of the density (the tail points are found by bisection on c, so
the tables are right even while the learned tail quantiles are still moving), plus one *escape* symbol holding the
two tails, and quantises them to integer frequencies summing to 2^``precision`` with a minimum of 1 each (every
symbol codable). The tables are buffers: they travel in the state_dict, so encoder and decoder use identical
tables. A value outside a table's range is coded as the escape symbol followed by its distance beyond the range
(Exp-Golomb: a side bit, the bit length with a uniform model over 32, the remaining bits uniformly), so any finite
latent with |y − m| < 2^29 is coded exactly. The stream starts with the number of coded values (a varint), so a
wrong shape is reported instead of decoding garbage.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .container import _read_varint, _varint, bytes_to_words, decodes_safely, seal_stream

_ESC_BITS = 30         # escaped distances must stay below 2^30


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would raise x (so values below the bound can recover)."""

    @staticmethod
    def forward(ctx, x, bound: float):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        keep = (x >= ctx.bound) | (grad < 0)
        return grad * keep.to(grad.dtype), None


class EntropyBottleneck(nn.Module):
    """Factorised-prior entropy bottleneck over ``channels`` latent channels (y is N × channels × …)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9, likelihood_bound: float = 1e-9, precision: int = 16,
                 max_symbols: int = 4096):
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"EntropyBottleneck: channels must be >= 1, got {channels}")
        if not 0 < tail_mass < 1 or init_scale <= 0:
            raise ValueError("EntropyBottleneck: need 0 < tail_mass < 1 and init_scale > 0")
        if not 8 <= precision <= 20 or not 2 <= max_symbols < (1 << precision):
            raise ValueError("EntropyBottleneck: need 8 <= precision <= 20 and 2 <= max_symbols < 2^precision")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)
        self.likelihood_bound = float(likelihood_bound)
        self.precision = int(precision)
        self.max_symbols = int(max_symbols)

        dims = (1,) + self.filters + (1,)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((self.channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(self.channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(self.channels, dims[k + 1], 1)))
        q = torch.tensor([-self.init_scale, 0.0, self.init_scale])
        self.quantiles = nn.Parameter(q.repeat(self.channels, 1, 1))          # (C, 1, 3)
        t = math.log(2.0 / self.tail_mass - 1.0)
        self.register_buffer("quantile_targets", torch.tensor([-t, 0.0, t]), persistent=False)
        # code tables (filled by update())
        self.register_buffer("cdf_freqs", torch.zeros(0, dtype=torch.int32))     # (C, L_max + 1)
        self.register_buffer("cdf_lengths", torch.zeros(0, dtype=torch.int32))   # (C,) symbols excl. escape
        self.register_buffer("cdf_offsets", torch.zeros(0, dtype=torch.int32))   # (C,) smallest offset
        self.register_buffer("table_medians", torch.zeros(0))                    # (C,) medians used by the tables

    # -- density ------------------------------------------------------------------------------------------------
    def _logits_cumulative(self, x: torch.Tensor, detach: bool = False, params=None) -> torch.Tensor:
        """x (C, 1, M) -> logits of c(x), (C, 1, M)."""
        mats, biases, factors = params if params is not None else (self.matrices, self.biases, self.factors)
        for k in range(len(mats)):
            h, b = mats[k], biases[k]
            if detach:
                h, b = h.detach(), b.detach()
            x = torch.matmul(F.softplus(h), x) + b
            if k < len(factors):
                a = factors[k].detach() if detach else factors[k]
                x = x + torch.tanh(a) * torch.tanh(x)
        return x

    def _check(self, y: torch.Tensor, what: str) -> None:
        if not torch.is_tensor(y) or y.dim() < 2 or y.shape[1] != self.channels:
            raise ValueError(f"EntropyBottleneck.{what}: expects a tensor of shape (N, {self.channels}, ...), "
                             f"got {tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")

    def _likelihood(self, v: torch.Tensor) -> torch.Tensor:
        shape = v.shape
        x = v.transpose(0, 1).reshape(self.channels, 1, -1)
        lower = self._logits_cumulative(x - 0.5)
        upper = self._logits_cumulative(x + 0.5)
        s = torch.where(lower + upper > 0, -1.0, 1.0).to(x.dtype)   # evaluate on the unsaturated side
        p = (torch.sigmoid(s * upper) - torch.sigmoid(s * lower)).abs()
        p = p.reshape(self.channels, shape[0], *shape[2:]).transpose(0, 1)
        return _LowerBound.apply(p, self.likelihood_bound) if self.likelihood_bound > 0 else p

    @property
    def medians(self) -> torch.Tensor:
        """Per-channel medians (C,) (detached)."""
        return self.quantiles[:, 0, 1].detach()

    def _bcast(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.dtype).reshape(1, -1, *([1] * (like.dim() - 2)))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y (N, C, ...) -> (ŷ, likelihoods): ŷ = y + U(-½,½) in training, round(y − m) + m in eval."""
        self._check(y, "forward")
        if self.training:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            m = self._bcast(self.medians, y)
            y_hat = torch.round(y - m) + m
        return y_hat, self._likelihood(y_hat)

    @staticmethod
    def rate_bits(likelihoods: torch.Tensor) -> torch.Tensor:
        """Estimated code length −Σ log2 p in bits (differentiable)."""
        return -torch.log2(likelihoods).sum()

    def loss(self, tails_only: bool = False) -> torch.Tensor:
        """Σ |logit c(q) − target| over the learned quantiles (gradient to the quantiles only); ``tails_only``: the
        two tail quantiles, so the median (the quantisation grid's offset) stays where it is."""
        logits = self._logits_cumulative(self.quantiles, detach=True)
        err = (logits - self.quantile_targets.to(logits.dtype)).abs()
        return (err[..., [0, 2]] if tails_only else err).sum()

    # -- code tables --------------------------------------------------------------------------------------------
    @property
    def has_tables(self) -> bool:
        return self.cdf_freqs.numel() > 0

    @torch.no_grad()
    def update(self, force: bool = True) -> bool:
        """(Re)compute the integer code tables from the current weights (float64); returns True when updated.

        Call after training (and before saving the checkpoint the decoder will use)."""
        if self.has_tables and not force:
            return False
        med = self.quantiles.detach().double().cpu()[:, 0, 1]
        params = tuple([p.detach().double().cpu() for p in group]
                       for group in (self.matrices, self.biases, self.factors))
        t = float(self.quantile_targets[2])
        half = self.max_symbols // 2 - 1
        x_lo = self._solve(med, -t, params, float(half))
        x_hi = self._solve(med, t, params, float(half))
        below = torch.ceil(med - x_lo).clamp(0, half).long()
        above = torch.ceil(x_hi - med).clamp(0, half).long()
        lengths = below + above + 1
        lmax = int(lengths.max())
        offsets = -below
        grid = offsets[:, None].double() + torch.arange(lmax, dtype=torch.float64)[None]   # (C, lmax)
        x = (med[:, None] + grid)[:, None, :]
        lower = self._logits_cumulative(x - 0.5, params=params)[:, 0]
        upper = self._logits_cumulative(x + 0.5, params=params)[:, 0]
        s = torch.where(lower + upper > 0, -1.0, 1.0).double()
        pmf = (torch.sigmoid(s * upper) - torch.sigmoid(s * lower)).abs()
        valid = torch.arange(lmax)[None] < lengths[:, None]
        pmf = torch.where(valid, pmf, torch.zeros_like(pmf))
        first = lower[:, 0]
        last_upper = upper.gather(1, (lengths - 1)[:, None])[:, 0]
        tails = torch.sigmoid(first) + torch.sigmoid(-last_upper)
        total = 1 << self.precision
        freqs = np.zeros((self.channels, lmax + 1), np.int64)
        for c in range(self.channels):
            n = int(lengths[c])
            probs = np.concatenate([pmf[c, :n].numpy(), [float(tails[c])]])
            freqs[c, :n + 1] = _quantise_pmf(probs, total)
        self.cdf_freqs = torch.from_numpy(freqs.astype(np.int32)).to(self.quantiles.device)
        self.cdf_lengths = lengths.to(torch.int32).to(self.quantiles.device)
        self.cdf_offsets = offsets.to(torch.int32).to(self.quantiles.device)
        self.table_medians = self.quantiles.detach()[:, 0, 1].clone()
        return True

    def _solve(self, med: torch.Tensor, target: float, params, limit: float) -> torch.Tensor:
        """Per channel x with logit c(x) = target (float64 bisection; the cumulative is increasing), searched
        within median ± limit."""
        def f(x):
            return self._logits_cumulative(x[:, None, None], params=params)[:, 0, 0]
        step = 1.0 if target < 0 else -1.0          # moving from the target side toward the median
        far = med - step * limit
        near = med.clone()
        for _ in range(64):
            mid = 0.5 * (far + near)
            go_far = (f(mid) - target) * step > 0   # still on the median's side of the target
            near = torch.where(go_far, mid, near)
            far = torch.where(go_far, far, mid)
        return far

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # the code tables' shapes depend on the trained quantiles: take the checkpoint's shapes
        for name in ("cdf_freqs", "cdf_lengths", "cdf_offsets", "table_medians"):
            key = prefix + name
            if key in state_dict:
                buf = getattr(self, name)
                setattr(self, name, torch.empty_like(buf).resize_(state_dict[key].shape))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _tables(self):
        if not self.has_tables:
            raise RuntimeError("EntropyBottleneck has no code tables: call update() after training (and save the "
                               "checkpoint afterwards)")
        if not torch.equal(self.table_medians, self.quantiles.detach()[:, 0, 1]):
            raise RuntimeError("EntropyBottleneck code tables are out of date (the quantiles changed since "
                               "update()): call update() again")
        return (self.cdf_freqs.cpu().numpy().astype(np.float64), self.cdf_lengths.cpu().numpy().astype(np.int64),
                self.cdf_offsets.cpu().numpy().astype(np.int64), self.table_medians.cpu())

    # -- coding -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, y: torch.Tensor) -> bytes:
        """Round y ((N, C, h, w) or (C, h, w)) around the medians and range-code it -> bytes.

        ``decompress(data, y.shape)`` returns exactly the ŷ that ``forward`` gives in eval mode."""
        import constriction
        if not torch.is_tensor(y) or y.dim() not in (3, 4):
            raise ValueError("EntropyBottleneck.compress: expects a latent of shape (N, C, h, w) or (C, h, w), got "
                             f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
        if y.dim() == 3:
            y = y.unsqueeze(0)
        self._check(y, "compress")
        if not torch.isfinite(y).all():
            raise ValueError("EntropyBottleneck.compress: the latent holds NaN or Inf")
        freqs, lengths, offsets, med = self._tables()
        yc = y.detach().cpu()
        m = self._bcast(med, yc)
        sym = torch.round(yc - m).to(torch.int64).transpose(0, 1).reshape(self.channels, -1).numpy()
        if np.abs(sym).max(initial=0) >= 1 << (_ESC_BITS - 1):
            raise ValueError("EntropyBottleneck.compress: latent values too large to code (|y - median| >= 2^29)")
        enc = constriction.stream.queue.RangeEncoder()
        cat = constriction.stream.model.Categorical
        uni = constriction.stream.model.Uniform
        plan = []            # what the decoder will do, to verify the sealed stream
        for c in range(self.channels):
            n = int(lengths[c])
            idx = sym[c] - offsets[c]
            esc = (idx < 0) | (idx >= n)
            codes = np.where(esc, n, idx).astype(np.int32)
            model = cat(freqs[c, :n + 1], perfect=False)
            enc.encode(codes, model)
            plan.append(("cat", model, codes))
            for v in idx[esc]:
                high = bool(v >= n)
                u = int(v - n) if high else int(-v - 1)          # distance beyond the range, >= 0
                nb = (u + 1).bit_length()
                rest = (u + 1) - (1 << (nb - 1))
                steps = [(int(high), 2), (nb - 1, 32)]
                for shift in range(0, nb - 1, 16):
                    width = min(16, nb - 1 - shift)
                    steps.append(((rest >> shift) & ((1 << width) - 1), 1 << width))
                for value, size in steps:
                    if size > 1:
                        mdl = uni(size)
                        enc.encode(np.array([value], np.int32), mdl)
                        plan.append(("uni", mdl, np.array([value], np.int32)))

        def same(words):
            def run():
                dec = constriction.stream.queue.RangeDecoder(words)
                return np.concatenate([dec.decode(mdl, len(vals)) for _, mdl, vals in plan])
            return decodes_safely(run, np.concatenate([vals for _, _, vals in plan]))
        return _varint(int(sym.size)) + seal_stream(enc.get_compressed(), same)

    @torch.no_grad()
    def decompress(self, data: bytes, shape) -> torch.Tensor:
        """Inverse of ``compress``: bytes and the latent shape ((N, C, h, w) or (C, h, w)) -> ŷ (float32, CPU)."""
        import constriction
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"EntropyBottleneck.decompress: shape must be a tuple of ints, got {shape!r}") from None
        batched = len(shape) == 4
        full = shape if batched else (1,) + shape
        if len(full) != 4 or full[1] != self.channels or min(full) < 1:
            raise ValueError(f"EntropyBottleneck.decompress: shape must be (N, {self.channels}, h, w) or "
                             f"({self.channels}, h, w), got {shape}")
        freqs, lengths, offsets, med = self._tables()
        try:
            count, used = _read_varint(bytes(data), 0)
        except ValueError:
            raise ValueError("latent stream is truncated or corrupted (bad length prefix)") from None
        expect = int(np.prod(full))
        if count != expect:
            raise ValueError(f"latent stream holds {count} values, but shape {shape} has {expect}")
        per = expect // self.channels
        dec = constriction.stream.queue.RangeDecoder(bytes_to_words(bytes(data)[used:]))
        cat = constriction.stream.model.Categorical
        uni = constriction.stream.model.Uniform
        sym = np.empty((self.channels, per), np.int64)
        try:
            for c in range(self.channels):
                n = int(lengths[c])
                idx = dec.decode(cat(freqs[c, :n + 1], perfect=False), per).astype(np.int64)
                for j in np.flatnonzero(idx == n):
                    high = int(dec.decode(uni(2)))
                    nb = int(dec.decode(uni(32))) + 1
                    rest = 0
                    for shift in range(0, nb - 1, 16):
                        width = min(16, nb - 1 - shift)
                        rest |= int(dec.decode(uni(1 << width))) << shift
                    u = (1 << (nb - 1)) + rest - 1
                    idx[j] = n + u if high else -u - 1
                sym[c] = idx + offsets[c]
        except AssertionError as e:
            raise ValueError(f"latent stream is corrupted ({e})") from None
        y = torch.from_numpy(sym).to(torch.float32).reshape(self.channels, full[0], *full[2:]).transpose(0, 1)
        y = y + self._bcast(med, y)
        return y.contiguous() if batched else y[0].contiguous()


def _quantise_pmf(probs: np.ndarray, total: int) -> np.ndarray:
    """Probabilities (float64, any scale) -> integer frequencies >= 1 summing to ``total`` (deterministic)."""
    p = np.maximum(np.nan_to_num(probs, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    n = p.size
    if n > total:
        raise ValueError(f"cannot quantise {n} symbols to {total} total frequency")
    s = p.sum()
    p = p / s if s > 0 else np.full(n, 1.0 / n)
    f = np.maximum(1, np.floor(p * (total - n) + 0.5).astype(np.int64))
    diff = total - int(f.sum())
    order = np.argsort(-p, kind="stable")             # most probable symbols absorb the rounding error
    i = 0
    while diff != 0:
        j = order[i % n]
        if diff > 0:
            step = diff
            f[j] += step
            diff -= step
        elif f[j] > 1:
            step = min(-diff, int(f[j]) - 1)
            f[j] -= step
            diff += step
        i += 1
    return f
