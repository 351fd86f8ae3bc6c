"""Beyond the paper: gated skip features from the ELM h into the decoder g (``model.elm_skips``)."""
from pathlib import Path

import pytest
import torch

from pycompgen.config import load_config
from pycompgen.systems.compgen.networks import build_compgen
from pycompgen.systems import build_system
from pycompgen.systems.compgen.system import SKIP_MODULES, decode_edges, elm_forward
from pycompgen.training import make_loaders, run_pipeline

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


def _cfg(tmp_path, *extra):
    return load_config(TINY, ["train.psnr_range=[-5,50]", "train.amp=off", f"out={tmp_path}", *extra])


@pytest.mark.parametrize("blocks", [0, 2])
def test_skip_path_starts_as_the_paper_model(one_thread, blocks):
    """Zero-initialised projections: with skips (and residual blocks on them, ``model.elm_skip_blocks``),
    g(h(z)) is the paper's g(h(z)) until training moves them."""
    cfg = _cfg("unused", "model.elm_skips=true", f"model.elm_skip_blocks={blocks}")
    torch.manual_seed(0)
    nets = build_compgen(cfg.model, cfg.data.image_size)
    for m in nets.values():
        m.eval()
    z = (torch.rand(3, 1, 32, 32) > 0.8).float()
    y_plain = nets["h"](z)
    y_hat, x_hat = elm_forward(nets, z)
    assert torch.equal(y_plain, y_hat)
    assert torch.equal(nets["g"](y_plain), x_hat)
    _, skips = nets["h"](z, return_skips=True)
    assert [tuple(s.shape) for s in skips] == [(3, cfg.model.channels, 8, 8), (3, cfg.model.channels // 2, 16, 16)]
    assert len(nets["h"].skip16) == len(nets["h"].skip32) == blocks


def test_skip_blocks_train_and_need_skips(one_thread):
    """The skip path's residual blocks get gradients once the projections have moved off zero; asking for them
    without the skip path is refused in one line."""
    cfg = _cfg("unused", "model.elm_skips=true", "model.elm_skip_blocks=1")
    torch.manual_seed(0)
    nets = build_compgen(cfg.model, cfg.data.image_size)
    h = nets["h"].train()
    for m in (h.proj16, h.proj32):
        torch.nn.init.normal_(m.weight, std=0.01)
    z = (torch.rand(4, 1, 32, 32) > 0.8).float()
    _, x_hat = elm_forward(nets, z)
    x_hat.mean().backward()
    for blocks in (h.skip16, h.skip32):
        assert blocks[0].body[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="model.elm_skip_blocks"):
        load_config(TINY, ["model.elm_skip_blocks=2"])


def test_approach3_with_skips_starts_from_a_paper_approach1_and_trains_the_skip_path(tmp_path, one_thread):
    """The recipe's step 1 and approach 1 (no skips) hand over to approach 3 with skips: the paper part of h loads
    exactly, the skip path starts at zero, and training moves it (the gate and projections get gradients)."""
    cfg = _cfg(tmp_path, "train.epochs=1")
    run_pipeline(cfg, stages=["step1", "approach1"], verbose=False)
    s1 = torch.load(tmp_path / "step1" / "best.pt", weights_only=True)["models"]
    a1 = torch.load(tmp_path / "approach1" / "best.pt", weights_only=True)["models"]
    assert not any(k.split(".")[0] in SKIP_MODULES for k in a1["h"])

    c = cfg.copy()
    c.model.elm_skips = True
    c.train.stage = "approach3"
    system = build_system(c, "cpu", {"f": s1["f"], "g": s1["g"], "h": a1["h"]})
    h = system.models["h"]
    for k, v in a1["h"].items():
        assert torch.equal(h.state_dict()[k], v), k
    assert h.proj16.weight.abs().sum() == 0 and h.proj32.weight.abs().sum() == 0
    loader, _ = make_loaders(c)
    g = torch.Generator().manual_seed(0)
    losses = []
    for i, batch in enumerate(loader):
        if i == 2:
            break
        losses.append(system.train_step(system.prepare_batch(batch, g))["loss"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert h.proj16.weight.abs().sum() > 0 and h.proj32.weight.abs().sum() > 0
    assert h.gate.weight.grad is not None and h.gate.weight.grad.abs().sum() > 0


def test_skip_model_round_trips_through_the_pipeline_and_evaluation(tmp_path, one_thread):
    """A whole pipeline with skips: checkpoints hold the skip path and evaluation rebuilds it from the config."""
    from pycompgen.models import load_for_eval
    cfg = _cfg(tmp_path, "train.epochs=1", "model.elm_skips=true")
    run_pipeline(cfg, verbose=False)
    lc = load_for_eval(tmp_path / "approach3" / "best.pt")
    assert lc.models["h"].skips and "proj16.weight" in lc.models["h"].state_dict()
    z = torch.zeros(2, 1, 32, 32)
    with torch.no_grad():
        assert decode_edges(lc.models, z).shape == (2, 3, 32, 32)


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_skip_model_trains_on_two_workers(tmp_path, ray_local):
    """DDP needs every trainable parameter used: approach 1 trains h without its skip path (zero gradients)."""
    from pycompgen.distributed import train_distributed
    cfg = load_config(TINY, [f"out={tmp_path / 'run'}", "data.synthetic_count=64", "train.max_steps_per_epoch=2",
                             "eval.max_images=16", "model.elm_skips=true", "train.epochs=1"])
    res = train_distributed(cfg, workers=2, stages=["step1", "approach1", "approach3"], evaluate=False)
    assert (tmp_path / "run" / "approach3" / "best.pt").is_file(), res
