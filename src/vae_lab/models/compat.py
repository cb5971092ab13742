"""Which parts of a model go together: checked on the composed config, before any data is
read or part built, so a pair that cannot work stops the run with one line naming it.

What the checks read is declared by the parts themselves (class attributes and
constructor arguments), so a new part joins them with no edit here:

- `objective.free_bits` floors a KL term per latent dim: it needs an objective with a KL
  term (`Objective.has_kl_term`) and a prior whose KL splits by dim (`Prior.per_dim_kl`;
  for a model with `latents`, the prior they make);
- a conditioning that conditions (`conditions = True`) needs an encoder and a decoder
  that take a `condition_dim` argument;
- a decoder takes `output_shape`, the shape of the likelihood's parameters per image; one
  that still takes `input_shape`, the name before, is refused with the new name.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from vae_lab.cli.errors import UserError
from vae_lab.config.schemas import MODEL_GROUPS


def _class_of(node: Any) -> type | None:
    """The class a node's `_target_` names; None where it does not import (the builder
    reports that one, with the reason)."""
    try:
        return get_class(str(node._target_))
    except Exception:
        return None


def _require_targets(cfg: DictConfig) -> None:
    for group in MODEL_GROUPS:
        node = cfg.get(group)
        keys = ("encoder", "decoder") if group == "model" else (None,)
        for key in keys:
            part = node.get(key) if (node is not None and key is not None) else node
            where = f"{group}.{key}" if key else group
            if part is None or "_target_" not in part:
                raise UserError(
                    f"{where} names no class (_target_): choose an option of the "
                    f"'{group}' group, e.g. {group}=<option>; `python -m vae_lab.train "
                    "--help` lists them"
                )


def _prior_node(cfg: DictConfig) -> Any:
    """The config of the model's prior: its `model.latents` where it has a stack of latent
    layers (which wraps the configured prior), else `prior`."""
    latents = cfg.model.get("latents") if cfg.get("model") is not None else None
    return cfg.prior if latents is None else latents


def _check_free_bits(cfg: DictConfig) -> None:
    free_bits = cfg.objective.get("free_bits") or 0
    if not free_bits > 0:
        return
    objective, prior = _class_of(cfg.objective), _class_of(_prior_node(cfg))
    if objective is not None and not getattr(objective, "has_kl_term", True):
        raise UserError(
            f"objective.free_bits={free_bits} does not go with the objective "
            f"{objective.__name__}: it has no KL term of its own to floor; set "
            "objective.free_bits=0, or use objective=elbo"
        )
    if prior is not None and not getattr(prior, "per_dim_kl", False):
        raise UserError(
            f"objective.free_bits={free_bits} does not go with the prior {prior.__name__}: "
            "the floor is per latent dim, and its KL to the posterior does not split by dim; "
            "set objective.free_bits=0, or use prior=standard_normal with a single-latent model"
        )


def _check_conditioning(cfg: DictConfig) -> None:
    conditioning = _class_of(cfg.conditioning)
    if conditioning is None or not getattr(conditioning, "conditions", False):
        return
    for key in ("encoder", "decoder"):
        part = _class_of(cfg.model[key])
        if part is not None and "condition_dim" not in inspect.signature(part).parameters:
            raise UserError(
                f"conditioning {conditioning.__name__} does not go with model.{key} "
                f"{part.__name__}: it takes no condition_dim argument, so it cannot see the "
                "condition; use conditioning=none, or model=mlp, conv or gated_mlp"
            )


def _check_decoder(cfg: DictConfig) -> None:
    decoder = _class_of(cfg.model.decoder)
    if decoder is None:
        return
    takes = inspect.signature(decoder).parameters
    if "input_shape" in takes and "output_shape" not in takes:
        raise UserError(
            f"model.decoder {decoder.__name__} takes input_shape, which decoders took before "
            "likelihoods said how many numbers a pixel needs; a decoder now takes "
            "output_shape, the shape of its output (the image's channels times the "
            "likelihood's params_per_pixel, H, W): rename the argument"
        )


def check_model_config(cfg: DictConfig) -> None:
    """Raise a one-line UserError for a missing part or a pair of parts that do not go
    together; return quietly otherwise."""
    _require_targets(cfg)
    _check_free_bits(cfg)
    _check_conditioning(cfg)
    _check_decoder(cfg)
