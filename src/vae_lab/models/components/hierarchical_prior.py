"""The prior over a stack of latent layers: p(z) = p(z_L) prod_{l<L} p(z_l | z_>l).

The top layer's p(z_L) is the prior the config chose (`prior=standard_normal`, `mog`,
`vampprior`); the layers below are Gaussians whose mean and variance a network computes
from the layers above (for the two-level models of Tomczak & Welling 2018, p(z1|z2)). z is
the layers concatenated top first, [z_L, ..., z_1], as the encoder's `LatentStack` draws it.

A model config with a hierarchy says so in its `latents` node, a `_partial_` factory of
this class holding the conditional networks; the builder hands it the configured prior as
`top` (`vae_lab.models.build`). A single-latent model has no `latents`, and its prior is
the configured one itself.

The KL term is the one-sample Monte Carlo estimate of the base class, as in the paper's
code: log q(z|x) - log p(z) at the model's draw, which is the sum over layers of
log q(z_l | x, z_>l) - log p(z_l | z_>l) (`kl_per_layer` gives each). The VampPrior on the
top layer encodes its pseudo-inputs with q(z_L|x), the top layer of the model's posterior.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from vae_lab.models.components.latent_stack import as_stack
from vae_lab.models.components.prior import Encode, Prior


class _TopLayer:
    """encode, keeping only the top layer of the posterior it gives: q(z_L | x, y). A plain
    object holding the model's bound method, so a deep copy of the model copies it along."""

    def __init__(self, encode: Encode) -> None:
        self.encode = encode

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None) -> Independent:
        return as_stack(self.encode(x, labels)).top


def _sizes(network: nn.Module) -> tuple[int, int]:
    """(in_dim, latent_dim) of a conditional network: what it takes and the layer it gives."""
    sizes = vars(network)  # plain attributes set in __init__
    if "in_dim" not in sizes or "latent_dim" not in sizes:
        raise ValueError(
            f"a conditional layer of a HierarchicalPrior states its in_dim and latent_dim; "
            f"{type(network).__name__} does not"
        )
    return int(sizes["in_dim"]), int(sizes["latent_dim"])


class HierarchicalPrior(Prior):
    """p(z_L) (`top`, any `Prior`) times p(z_l | z_>l) for the layers below, top down.

    `conditionals[i]` is a network from the layers above (..., D_>l) to an `Independent`
    diagonal Gaussian over its layer, with `in_dim` and `latent_dim` attributes (e.g.
    `hvae.GaussianConditional`): the first takes z_L, the next [z_L, z_L-1], and so on.
    """

    def __init__(self, top: Prior, conditionals: Sequence[nn.Module]) -> None:
        if not conditionals:
            raise ValueError("a HierarchicalPrior needs at least one conditional layer")
        dims = [top.latent_dim]
        for i, conditional in enumerate(conditionals):
            in_dim, out_dim = _sizes(conditional)
            if in_dim != sum(dims):
                raise ValueError(
                    f"latents.conditionals[{i}] takes in_dim={in_dim}, but the layers above it "
                    f"have {sum(dims)} dims ({' + '.join(map(str, dims))}; the top layer's is "
                    "the prior's latent_dim)"
                )
            dims.append(out_dim)
        super().__init__(sum(dims))
        self.top = top
        self.conditionals = nn.ModuleList(conditionals)
        self._dims = dims

    @property
    def layer_dims(self) -> list[int]:
        return list(self._dims)

    def attach(
        self, encode: Encode, input_shape: Sequence[int] | None, num_classes: int | None
    ) -> None:
        """The top prior gets q(z_L|x, y) where it asks for the model's posterior."""
        self.top.attach(_TopLayer(encode), input_shape, num_classes)

    def _conditional(self, i: int, z_above: torch.Tensor) -> Independent:
        q: Independent = self.conditionals[i](z_above)
        return q

    def layer_log_probs(self, z: torch.Tensor) -> list[torch.Tensor]:
        """log p(z_L), log p(z_L-1 | z_L), ..., log p(z_1 | z_>1): each z.shape[:-1]."""
        parts = list(z.split(self._dims, dim=-1))
        logs = [self.top.log_prob(parts[0])]
        for i in range(len(self.conditionals)):
            above = torch.cat(parts[: i + 1], dim=-1)
            logs.append(self._conditional(i, above).log_prob(parts[i + 1]))
        return logs

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.layer_log_probs(z)).sum(0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_L from the top prior, then each layer below from its conditional given the draws
        above: (n, latent_dim)."""
        z = self.top.sample(n, generator)
        for i, dim in enumerate(self._dims[1:]):
            q = self._conditional(i, z).base_dist
            noise = self.randn(n, dim, generator=generator)
            z = torch.cat([z, q.loc + q.scale * noise], dim=-1)
        return z

    def complete(self, z_top: torch.Tensor) -> torch.Tensor:
        """The layers below z_top at their conditional means, top down: (..., latent_dim)."""
        z = z_top
        for i in range(len(self.conditionals)):
            z = torch.cat([z, self._conditional(i, z).mean], dim=-1)
        return z

    def kl_per_layer(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """log q(z_l | x, z_>l) - log p(z_l | z_>l) at the draw z, per layer: (B, L)."""
        q_logs = as_stack(posterior).layer_log_probs(z)
        p_logs = self.layer_log_probs(z)
        return torch.stack([q - p for q, p in zip(q_logs, p_logs, strict=True)], dim=-1)

    def kl(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """The one-sample estimate log q(z|x) - log p(z), summed over the layers."""
        return self.kl_per_layer(posterior, z).sum(-1)
