"""Priors p(z). A prior owns its KL term, so a prior without a closed form can estimate it.

A new prior is one subclass of `Prior` and one YAML file under `configs/prior/`: it says
how to score z (`log_prob`) and draw it (`sample`); the KL to a posterior then defaults to
the one-sample Monte Carlo estimate log q(z|x) - log p(z) at the z the model drew. A prior
made of the model's own parts gets what it needs in `attach`, never the model itself.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Normal

from vae_lab.models.components.gaussian import diagonal, standard_normal_kl_per_dim

# q(z|x, y) with gradients, for float images x (B, C, H, W) in the model's dtype and class
# labels y (B,), or None for a model that is not class-conditional: a diagonal Gaussian
# (`Independent`), or for a stack of latent layers a `latent_stack.LatentStack`.
Encode = Callable[[torch.Tensor, torch.Tensor | None], Distribution]


class Prior(nn.Module, ABC):
    """p(z) over `latent_dim` dims; log-densities sum over the dims.

    A prior over a single latent layer is one layer of `latent_dim` dims (`layer_dims`);
    one over a stack of layers (`hierarchical_prior.HierarchicalPrior`) overrides the
    three methods that say so: `layer_dims`, `complete`, `kl_per_layer`.
    """

    per_dim_kl = False  # whether kl_per_dim gives KL(q || p) split by latent dim
    _device_anchor: torch.Tensor  # empty; follows the module's device and dtype

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = latent_dim
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" in inspect.signature(cls.attach).parameters:  # the interface it replaced
            raise TypeError(
                f"{cls.__name__}.attach(model) is now attach(encode, input_shape, "
                "num_classes): a prior gets what it needs, not the model (see Prior.attach)"
            )

    def attach(
        self, encode: Encode, input_shape: Sequence[int] | None, num_classes: int | None
    ) -> None:
        """Called once by the model that owns this prior, when it is built, with what a
        prior made of the model's own parts may need (the VampPrior: all three): `encode`
        gives q(z|x, y); `input_shape` is the images' (C, H, W), None if the model was
        built without it; `num_classes` is the classes a class-conditional encoder takes,
        None for one that is not. This one needs none of them."""

    @abstractmethod
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over latent dims: shape z.shape[:-1]."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws, shape (n, latent_dim), on the prior's device; `generator` (on any
        device) makes them reproducible."""

    def kl(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per item, shape (B,): here the one-sample Monte Carlo
        estimate log q(z|x) - log p(z) at the model's draw z, unbiased, not a bound
        itself; a prior with a closed form overrides it."""
        return posterior.log_prob(z) - self.log_prob(z)

    def kl_per_dim(self, posterior: Distribution) -> torch.Tensor | None:
        """KL(q || p) of each latent dim, shape (B, D), where it splits by dim; else None."""
        return None

    def kl_per_layer(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """The KL term of each latent layer at the model's draw z, top layer first, shape
        (B, L); they sum to the model's KL term. Here one layer: `kl`."""
        return self.kl(posterior, z).unsqueeze(-1)

    @property
    def layer_dims(self) -> list[int]:
        """The sizes of the latent layers z is made of, top first: here one, `latent_dim`."""
        return [self.latent_dim]

    def complete(self, z_top: torch.Tensor) -> torch.Tensor:
        """A whole z (..., latent_dim) from a code of the top layer (..., layer_dims[0]),
        the layers below at their conditional means; here the top layer is all of z."""
        return z_top

    def randn(self, *shape: int, generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise drawn on the generator's device, then moved to the prior's."""
        anchor = self._device_anchor
        if generator is None:
            return torch.randn(shape, device=anchor.device, dtype=anchor.dtype)
        return torch.randn(shape, generator=generator, device=generator.device).to(anchor)


class StandardNormalPrior(Prior):
    """p(z) = N(0, I), with the KL to a diagonal Gaussian in closed form."""

    per_dim_kl = True

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=z.dtype, device=z.device)
        return Normal(zero, zero + 1.0, validate_args=False).log_prob(z).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.randn(n, self.latent_dim, generator=generator)

    def kl(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """Closed form (Kingma & Welling 2014, App. B); z is not needed."""
        return standard_normal_kl_per_dim(diagonal(posterior)).sum(-1)

    def kl_per_dim(self, posterior: Distribution) -> torch.Tensor:
        return standard_normal_kl_per_dim(diagonal(posterior))
