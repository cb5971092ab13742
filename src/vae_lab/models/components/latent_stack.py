"""A posterior over a stack of latent layers, q(z|x) = q(z_L|x) prod_{l<L} q(z_l | x, z_>l).

A model with several stochastic layers (the two-level VAEs of Tomczak & Welling 2018) keeps
its latents as one tensor, the layers concatenated top first: z = [z_L, ..., z_1] on the
last dim. Its encoder returns a `LatentStack`, a `torch.distributions.Distribution` with
batch shape (B,) and event shape (D_L + ... + D_1,) that samples layer by layer (z_L ~
q(z_L|x), then each lower layer given x and the draws above it, for every draw of
`sample_shape`) and scores a draw of every layer (`log_prob` sums the layers' log-
densities). So `VAECore`, the objectives, the importance-weighted bound and the evaluation
treat it as they treat a single diagonal Gaussian: one draw z, one log q(z|x).

What only a stack has is read through `as_stack`, which takes a single-latent posterior
(an `Independent` diagonal Gaussian) as a stack of one layer: `.top` (the top layer's
q(z_L|x), what the VampPrior encodes pseudo-inputs with), `.layer_dims`, and
`.layer_log_probs(z)`, one log-density per layer (the KL per layer, the active units per
layer). Callers need no `if` on the kind of model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch.distributions import Distribution, Independent, Normal, constraints

from vae_lab.models.components.gaussian import concatenate

# q(z_l | x, z_>l) for the layers above, z_>l (..., B, D_>l), with x already seen: an
# Independent diagonal Gaussian with batch shape (..., B) and event shape (D_l,).
Conditional = Callable[[torch.Tensor], Independent]


class LatentStack(Distribution):
    """q(z|x) over z = [z_L, ..., z_1] (top first): `top` is q(z_L|x) (batch (B,), event
    (D_L,)); `conditionals[i]` gives the next layer down given every layer above it;
    `layer_dims` are [D_L, ..., D_1].

    The networks of the layers below run with gradients only where both the call that made
    the stack (the encoder's) and the call that uses it have them on: a stack made under
    `torch.no_grad()` builds no graph when it is sampled or its mean is read later, as an
    `Independent` holds tensors computed when it was made.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012 (torch's API)
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self, top: Independent, conditionals: Sequence[Conditional], layer_dims: Sequence[int]
    ) -> None:
        if len(layer_dims) != len(conditionals) + 1:
            raise ValueError(
                f"a stack of {len(conditionals) + 1} layers needs as many layer_dims, got "
                f"{list(layer_dims)}"
            )
        self.top = top
        self.conditionals = list(conditionals)
        self.layer_dims = [int(d) for d in layer_dims]
        self._grad = torch.is_grad_enabled()
        # the last draw and each layer's q given the layers above it in that draw, so
        # scoring the draw just made (the ELBO's log q, the bound's log-weights) runs no
        # network again
        self._last: tuple[torch.Tensor, list[Independent]] | None = None
        super().__init__(top.batch_shape, torch.Size([sum(self.layer_dims)]), validate_args=False)

    def _grad_mode(self) -> torch.autograd.grad_mode.set_grad_enabled:
        return torch.set_grad_enabled(self._grad and torch.is_grad_enabled())

    def _down(self, z: torch.Tensor, sample: bool) -> tuple[torch.Tensor, list[Independent]]:
        """From the top layer's z, every layer below: each drawn (`sample`) or at its mean.
        Returns the whole stack and each layer's q."""
        qs = [self.top]
        with self._grad_mode():
            for conditional in self.conditionals:
                q = conditional(z)
                qs.append(q)
                z = torch.cat([z, q.rsample() if sample else q.mean], dim=-1)
        return z, qs

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        """z (*sample_shape, B, D): z_L ~ q(z_L|x), then z_l ~ q(z_l | x, z_>l) for each draw."""
        with self._grad_mode():
            z_top = self.top.rsample(torch.Size(sample_shape))
        z, qs = self._down(z_top, sample=True)
        self._last = (z, qs)
        return z

    @property
    def mean(self) -> torch.Tensor:
        """The top-down pass with means: E[z_L|x], then each layer's mean given the means
        above it. (Not E_q[z] for a lower layer whose mean is not linear in the layers above;
        it is the code the pictures decode, as the posterior mean of a single layer is.)"""
        return self._down(self.top.mean, sample=False)[0]

    def layers(self, z: torch.Tensor) -> list[torch.Tensor]:
        """z (..., D) split into its layers, top first: [(..., D_L), ..., (..., D_1)]."""
        return list(z.split(self.layer_dims, dim=-1))

    def layer_log_probs(self, z: torch.Tensor) -> list[torch.Tensor]:
        """log q(z_L|x), ..., log q(z_1 | x, z_>1) at a draw z (..., B, D): each (..., B)."""
        parts = self.layers(z)
        if self._last is not None and self._last[0] is z:
            qs = self._last[1]
        else:
            qs = [self.top]
            with self._grad_mode():
                for i, conditional in enumerate(self.conditionals, start=1):
                    qs.append(conditional(torch.cat(parts[:i], dim=-1)))
        return [q.log_prob(part) for q, part in zip(qs, parts, strict=True)]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log q(z|x) = sum over layers of log q(z_l | x, z_>l), shape value.shape[:-1]."""
        return torch.stack(self.layer_log_probs(value)).sum(0)

    @classmethod
    def cat(cls, stacks: Sequence[LatentStack]) -> LatentStack:
        """One stack from several along the batch dim (images encoded in chunks)."""
        sizes = [s.batch_shape[0] for s in stacks]
        conditionals = [
            functools.partial(_chunked, [s.conditionals[i] for s in stacks], sizes)
            for i in range(len(stacks[0].conditionals))
        ]
        return cls(concatenate([s.top for s in stacks]), conditionals, stacks[0].layer_dims)


def _chunked(
    conditionals: Sequence[Conditional], sizes: Sequence[int], z_above: torch.Tensor
) -> Independent:
    """Each chunk's conditional on its images' rows of z_above (..., B, D), joined again."""
    qs = [c(part) for c, part in zip(conditionals, z_above.split(list(sizes), dim=-2), strict=True)]
    loc = torch.cat([q.base_dist.loc for q in qs], dim=-2)
    scale = torch.cat([q.base_dist.scale for q in qs], dim=-2)
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


def as_stack(posterior: Distribution) -> LatentStack:
    """`posterior` as a stack of layers: a `LatentStack` as it is, a single-latent posterior
    (an `Independent` over D dims) as a stack of one layer of D dims."""
    if isinstance(posterior, LatentStack):
        return posterior
    if not isinstance(posterior, Independent):
        raise TypeError(
            f"a posterior is an Independent diagonal Gaussian or a LatentStack, got "
            f"{type(posterior).__name__}"
        )
    return LatentStack(posterior, [], [posterior.event_shape[-1]])


def concatenate_posteriors(parts: Sequence[Distribution]) -> Distribution:
    """One posterior from several along the batch dim: diagonal Gaussians stay one (as
    `gaussian.concatenate` makes it), stacks stay a stack."""
    if all(type(p) is Independent for p in parts):
        return concatenate(list(parts))  # type: ignore[arg-type]
    return LatentStack.cat([as_stack(p) for p in parts])


def layer_names(n_layers: int) -> list[str]:
    """The layers' names top first, numbered from the bottom as in the papers: z2, z1 for two
    layers; z1 for a single-latent model."""
    return [f"z{n_layers - i}" for i in range(n_layers)]
