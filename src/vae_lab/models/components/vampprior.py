"""The VampPrior (Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k), the mixture of the
encoder's own posteriors at K learned pseudo-inputs u_k (Eq. 9).

As in the paper's code (`jmtomczak/vae_vampprior`, `models/Model.py` and
`utils/load_data.py`): each pseudo-input is an image-shaped parameter drawn from
N(init_mean, init_std^2) (0.05 and 0.01 for binary MNIST-like data) and passed through
Hardtanh(0, 1) when used, so it stays a valid image. The components are recomputed from
the encoder at every use, so they move as the encoder and the u_k learn.

With a class-conditional encoder (conditioning=label), q(z|x, y) needs a label too: pseudo-
input k carries the fixed label k mod num_classes, so the classes share the components
equally and p(z) itself stays unconditional, as the decoder's p(x|z, y) expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vae_lab.models.components.gaussian import diagonal, log_variance
from vae_lab.models.components.mixture import MixturePrior
from vae_lab.models.components.prior import Encode


class VampPrior(MixturePrior):
    """A mixture of q(z | u_k), k = 1..K, with K = `pseudo_inputs` learned images u_k."""

    pseudo_labels: torch.Tensor

    def __init__(
        self,
        latent_dim: int,
        pseudo_inputs: int = 500,
        init_mean: float = 0.05,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(latent_dim)
        if pseudo_inputs < 1:
            raise ValueError(f"prior.pseudo_inputs must be a positive integer, got {pseudo_inputs}")
        self.n_pseudo, self.init_mean, self.init_std = pseudo_inputs, init_mean, init_std
        self.encode: Encode | None = None

    def attach(
        self, encode: Encode, input_shape: Sequence[int] | None, num_classes: int | None
    ) -> None:
        """Make the pseudo-inputs in the shape of the model's images, their labels from its
        classes (all 0 for an encoder that takes none); score them with `encode`."""
        if input_shape is None:
            raise ValueError("the VampPrior needs a model built with its input_shape")
        shape = (self.n_pseudo, *input_shape)
        self.pseudo_inputs = nn.Parameter(torch.randn(shape) * self.init_std + self.init_mean)
        self.register_buffer("pseudo_labels", torch.arange(self.n_pseudo) % (num_classes or 1))
        self.encode = encode

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.encode is None:
            raise RuntimeError("the VampPrior is used before a model attached it")
        u = F.hardtanh(self.pseudo_inputs, 0.0, 1.0)  # (K, C, H, W), pixels in [0, 1]
        q = diagonal(self.encode(u, self.pseudo_labels))
        return q.base_dist.loc, log_variance(q)  # (K, D) each
