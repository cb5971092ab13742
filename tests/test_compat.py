"""Every combination of the model options composes, builds and computes a loss with
gradients, or is refused before any work with one line naming the pair and why."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.cli.errors import UserError
from vae_lab.config.checks import validate
from vae_lab.models.build import build_vae

# Every option of each group, as configs/ has them: a new option joins the combinations.
GROUPS = ("model", "prior", "objective", "kl_schedule", "conditioning")
OPTIONS = {g: sorted(p.stem for p in (Path(CONFIG_DIR) / g).glob("*.yaml")) for g in GROUPS}
FREE_BITS = [0.0, 0.5]
# the models with a stack of latent layers: their YAML has a `latents` node
HIERARCHIES = [
    m
    for m in OPTIONS["model"]
    if OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{m}.yaml").get("latents")
]
COMBINATIONS = list(itertools.product(*OPTIONS.values(), FREE_BITS))

Nodes = tuple[DictConfig, dict[tuple[str, str], DictConfig]]


@pytest.fixture(scope="module")
def nodes() -> Nodes:
    """The default config, and each option's node as its YAML file defines it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        base = compose("train", ["latent_dim=2", "paths.output_dir=unused"])
    with open_dict(base):
        base.pop("hydra", None)
    options = {
        (group, option): OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml")
        for group, names in OPTIONS.items()
        for option in names
    }
    options["prior", "vampprior"].pseudo_inputs = 4  # fewer images to encode per step
    return base, options


def _config(nodes: Nodes, combination: tuple) -> DictConfig:
    base, options = nodes
    cfg = base.copy()
    *choices, free_bits = combination
    for group, option in zip(OPTIONS, choices, strict=True):
        node = options[group, option].copy()
        if group == "model":  # a typed node (encoder, decoder, latents): filled, not replaced
            cfg.model.encoder, cfg.model.decoder = node.encoder, node.decoder
            cfg.model.latents = node.get("latents")
        else:
            cfg[group] = node
    cfg.objective.free_bits = free_bits
    return cfg


def test_every_combination_builds_and_trains_or_is_refused_in_one_line(nodes: Nodes) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(3, 1, 28, 28).round(), torch.tensor([0, 4, 9])
    for combination in COMBINATIONS:
        model, prior, objective, _, conditioning, free_bits = combination
        cfg = _config(nodes, combination)
        hierarchy = model in HIERARCHIES
        # free bits floor a KL term per latent dim: IWAE has no KL term, a mixture's KL no
        # dims, nor the Monte Carlo KL of a stack of latent layers
        incompatible = free_bits > 0 and (
            objective == "iwae" or prior != "standard_normal" or hierarchy
        )
        if incompatible:
            with pytest.raises(UserError) as error:
                validate(cfg)  # at composition: before data, before building
            message = str(error.value)
            other = (
                "IWAE"
                if objective == "iwae"
                else "HierarchicalPrior"
                if hierarchy
                else {"mog": "MixtureOfGaussians", "vampprior": "VampPrior"}[prior]
            )
            assert "\n" not in message and "objective.free_bits=0.5" in message and other in message
            continue
        if hierarchy and conditioning == "label":  # the two-level networks take no label
            with pytest.raises(UserError, match="takes no condition_dim argument") as error:
                validate(cfg)
            assert "\n" not in str(error.value)
            continue
        validate(cfg)
        vae = build_vae(cfg, (1, 28, 28))
        loss = vae.training_loss((x, y)).loss
        loss.backward()
        assert math.isfinite(float(loss.detach())), combination
        assert all(p.grad is not None for p in vae.encoder.parameters()), combination


def test_the_combinations_include_the_hierarchies() -> None:
    assert {"hvae", "conv_hvae"} <= set(HIERARCHIES) < set(OPTIONS["model"])


def test_a_conditioning_with_an_encoder_that_cannot_take_it_is_refused(nodes: Nodes) -> None:
    cfg = _config(nodes, ("mlp", "standard_normal", "elbo", "constant", "label", 0.0))
    cfg.model.encoder = {"_target_": "tests.test_compat.PlainEncoder"}
    with pytest.raises(
        UserError,
        match=r"conditioning LabelConditioning does not go with "
        r"model.encoder PlainEncoder: it takes no condition_dim argument",
    ):
        validate(cfg)


class PlainEncoder(torch.nn.Module):
    """An encoder written without conditioning in mind."""

    def __init__(self, input_shape: list[int], latent_dim: int) -> None:
        super().__init__()


def test_a_decoder_that_takes_the_old_input_shape_is_refused_with_the_new_name(
    nodes: Nodes,
) -> None:
    cfg = _config(nodes, ("mlp", "standard_normal", "elbo", "constant", "none", 0.0))
    cfg.model.decoder = {"_target_": "tests.test_compat.OldDecoder"}
    with pytest.raises(
        UserError,
        match=r"model.decoder OldDecoder takes input_shape, .*"
        r"a decoder now takes output_shape",
    ) as error:
        validate(cfg)
    assert "\n" not in str(error.value)


class OldDecoder(torch.nn.Module):
    """A decoder written when decoders took the image's shape."""

    def __init__(self, input_shape: list[int], latent_dim: int) -> None:
        super().__init__()
