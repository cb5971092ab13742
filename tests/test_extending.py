"""Extending vae_lab with a part of one's own: a prior defined only in this file, one YAML
file in a config directory of its own on Hydra's search path, and no other edit. The
README's "Extending vae_lab" section shows the same steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from torch import nn

from tests.conftest import tiny_overrides
from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.models.build import build_vae
from vae_lab.models.components.prior import Prior
from vae_lab.train import train


class ScaledNormalPrior(Prior):
    """p(z) = N(0, s^2 I) with one learned scale s: a toy prior, not part of vae_lab."""

    def __init__(self, latent_dim: int, scale: float = 1.0) -> None:
        super().__init__(latent_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        var = torch.exp(2 * self.log_scale)
        return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + z**2 / var)).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.randn(n, self.latent_dim, generator=generator) * self.log_scale.exp()


TOY_YAML = f"""\
_target_: {__name__}.ScaledNormalPrior
latent_dim: ${{latent_dim}}
scale: 2.0
"""


def _compose(extra_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", [f"hydra.searchpath=[file://{extra_dir}]", "prior=toy", *overrides])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.mark.slow  # a run of its own
def test_a_prior_defined_outside_vae_lab_is_built_and_trained_through_the_config(
    tiny_data: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "my_configs"
    (extra / "prior").mkdir(parents=True)
    (extra / "prior" / "toy.yaml").write_text(TOY_YAML)

    cfg = _compose(extra, "latent_dim=3", *tiny_overrides(tiny_data, tmp_path / "run"))
    model = build_vae(cfg, (1, 28, 28))
    assert isinstance(model.prior, ScaledNormalPrior)
    assert float(model.prior.log_scale.exp()) == pytest.approx(2.0)  # the YAML's value
    z = torch.randn(4, 3)
    by_hand = torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(-1)
    torch.testing.assert_close(model.prior.log_prob(z), by_hand)

    # the whole run: trained (its scale learned with the model), tested, checkpointed
    cfg.trainer.max_epochs, cfg.eval.k = 1, 3
    cfg.callbacks.embedding_projector = None
    summary = train(cfg)
    assert summary["status"] == "completed" and math.isfinite(summary["test"]["iw_nll"])
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert float(saved["state_dict"]["prior.log_scale"].exp()) != pytest.approx(2.0)
