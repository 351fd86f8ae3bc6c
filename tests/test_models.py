"""Compgen networks: shapes, dtypes, latent size, input checks; the one registry of systems."""
import pytest
import torch

from pycompgen.config import Config, ModelConfig, load_config
from pycompgen import registry
from pycompgen.systems.compgen.networks import ELM, Decoder, Encoder
from pycompgen.systems.compgen.networks import build_compgen as build_model
from pycompgen.systems.compgen.networks import compgen_latent_shape as latent_shape
from pycompgen.networks import ResidualBlock, ResidualNetworkBlock


def tiny_model_cfg(**kw):
    m = ModelConfig(num_res=1, num_mult=1, channels=16, latent_channels=4, elm_channels=8, elm_num_res=1,
                    elm_hidden=32)
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def test_default_latent_compresses_64x64():
    cfg = load_config("configs/default.yaml")
    assert cfg.model.name == "compgen" and cfg.data.image_size == 64
    shape = latent_shape(cfg.model, 64)
    assert shape == (16, 8, 8)
    n = 1
    for s in shape:
        n *= s
    assert n <= 1024 and 64 * 64 * 3 / n >= 12
    nets = build_model(cfg.model, image_size=64)
    with torch.no_grad():
        nets["f"].eval()
        y = nets["f"](torch.rand(1, 3, 64, 64))
    assert tuple(y.shape[1:]) == shape and y[0].numel() <= 1024


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_dtypes_end_to_end(size):
    m = tiny_model_cfg()
    torch.manual_seed(0)
    nets = build_model(m, image_size=size)
    assert set(nets) == {"f", "g", "h"}
    assert isinstance(nets["f"], Encoder) and isinstance(nets["g"], Decoder) and isinstance(nets["h"], ELM)
    x = torch.rand(3, 3, size, size)
    z = (torch.rand(3, 1, size, size) > 0.8).float() + 0.1 * torch.randn(3, 1, size, size)
    y = nets["f"](x)
    y_hat = nets["h"](z)
    assert y.shape == y_hat.shape == (3,) + latent_shape(m, size)
    for t in (nets["g"](y), nets["g"](y_hat)):
        assert t.shape == x.shape and t.dtype == torch.float32
        assert float(t.detach().min()) >= 0.0 and float(t.detach().max()) <= 1.0
    # gradients reach every parameter through g(h(.)) and g(f(.))
    (nets["g"](nets["f"](x)).mean() + nets["g"](nets["h"](z)).mean()).backward()
    for name, net in nets.items():
        assert all(p.grad is not None for p in net.parameters()), name


def test_depth_hyperparameters_count_blocks():
    m = tiny_model_cfg(num_res=3, num_mult=2)
    nets = build_model(m, image_size=32)
    for k in ("f", "g"):
        mods = list(nets[k].modules())
        assert sum(isinstance(x, ResidualNetworkBlock) for x in mods) == 3
        assert sum(isinstance(x, ResidualBlock) for x in mods) == 6
    assert sum(isinstance(x, ResidualBlock) for x in nets["h"].modules()) == m.elm_num_res
    # ELM residual blocks carry BatchNorm (paper Fig. 4)
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in nets["h"].res.modules())
    # num_res = 0 is a plain conv autoencoder
    nets0 = build_model(tiny_model_cfg(num_res=0), image_size=32)
    assert nets0["g"](nets0["f"](torch.rand(2, 3, 32, 32))).shape == (2, 3, 32, 32)


def test_norm_none_has_no_batchnorm():
    nets = build_model(tiny_model_cfg(norm="none"), image_size=32)
    for k in ("f", "g"):
        assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in nets[k].modules())


def test_wrong_image_size_and_channels_raise_clear_errors():
    nets = build_model(tiny_model_cfg(), image_size=32)
    with pytest.raises(ValueError, match="built for 32x32 images, got 64x64"):
        nets["h"](torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="built for 32x32"):
        nets["f"](torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        nets["f"](torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="latent"):
        nets["g"](torch.rand(1, 5, 4, 4))


def test_registry():
    assert registry.get_system("compgen").name == "compgen"
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        registry.get_system("nope")
    cfg = Config()
    cfg.model.name = "nope"
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        registry.build_networks(cfg)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_system(type("Other", (), {"name": "compgen", "section": None}))


def test_registry_accepts_new_systems():
    from dataclasses import dataclass

    @dataclass
    class ToySection:
        width: int = 3

    class Toy:
        name = "toy_ae_for_test"
        section = ToySection

        @classmethod
        def build_networks(cls, cfg):
            return {"f": torch.nn.Identity(), "g": torch.nn.Identity()}

    registry.register_system(Toy)
    try:
        assert "toy_ae_for_test" in registry.names()
        cfg = Config()
        assert cfg.toy_ae_for_test.width == 3        # its section reached the config through the registry
        cfg.model.name = Toy.name
        assert set(registry.build_networks(cfg)) == {"f", "g"}
    finally:
        registry.unregister_system(Toy.name)
    assert "toy_ae_for_test" not in registry.names()


def test_build_is_seedable():
    cfg = Config()
    cfg.model = tiny_model_cfg()
    torch.manual_seed(3)
    a = build_model(cfg.model, 32)
    torch.manual_seed(3)
    b = build_model(cfg.model, 32)
    for k in a:
        for (n1, t1), (n2, t2) in zip(a[k].state_dict().items(), b[k].state_dict().items()):
            assert n1 == n2 and torch.equal(t1, t2)
