"""The speed switches change how the model runs, never what it computes."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import ComposeFn
from vae_lab.models.build import build_vae
from vae_lab.models.speed import apply_speedups
from vae_lab.models.vae import VAE

SHAPE = (1, 28, 28)


def _pair(compose_cfg: ComposeFn, *switches: str) -> tuple[VAE, VAE]:
    """The conv VAE twice, with the same weights: plain, and with `switches` applied."""
    plain = build_vae(compose_cfg("model=conv"), SHAPE)
    cfg = compose_cfg("model=conv", *switches)
    fast = apply_speedups(build_vae(cfg, SHAPE), cfg.runtime)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def _same_terms(plain: VAE, fast: VAE) -> None:
    x = torch.rand(8, *SHAPE)
    terms = []
    for model in (plain, fast):
        torch.manual_seed(0)  # the same eps for both
        with torch.no_grad():
            terms.append(model.elbo_terms((x, None)))
    for a, b in zip(*terms, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


def test_channels_last_stores_the_conv_weights_nhwc_and_computes_the_same(
    compose_cfg: ComposeFn,
) -> None:
    plain, fast = _pair(compose_cfg, "runtime.channels_last=true")
    weight = fast.encoder.features[2].weight  # 32 -> 64 channels
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()  # really NHWC, not a 1x1 special case
    _same_terms(plain, fast)


@pytest.mark.slow  # inductor compiles C++ for the CPU: about a minute here
def test_compile_keeps_checkpoint_keys_and_results(compose_cfg: ComposeFn) -> None:
    plain, fast = _pair(compose_cfg, "runtime.compile=true")
    assert fast.state_dict().keys() == plain.state_dict().keys()  # checkpoints interchange
    _same_terms(plain, fast)
