"""Convolutional encoder and decoder; every size is worked out from the image's shape
(`input_shape`) or the decoder output's (`output_shape`).

Each encoder layer is a 4x4 convolution with stride 2 and padding 1, which maps a side of
s pixels to floor(s / 2). The decoder mirrors it with transposed convolutions (side s -> 2s,
plus an output_padding of 1 where the encoder rounded down), so odd sizes come back exact.
A condition c (the one-hot label of a conditional VAE) joins the flattened features before
the encoder's linear head, and z before the decoder's first linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Independent

from vae_lab.models.components.conditioning import join
from vae_lab.models.components.gaussian import diagonal_gaussian


def feature_sizes(shape: Sequence[int], n_layers: int) -> list[tuple[int, int]]:
    """(H, W) of a (C, H, W) `shape` and after each of `n_layers` stride-2 convolutions."""
    _, height, width = shape
    sizes = [(height, width)]
    for _ in range(n_layers):
        height, width = height // 2, width // 2
        if min(height, width) < 1:
            raise ValueError(
                f"{n_layers} stride-2 layers shrink a {tuple(shape[1:])} image to nothing; "
                "use fewer channels entries"
            )
        sizes.append((height, width))
    return sizes


class ConvEncoder(nn.Module):
    """x (B, C, H, W) [and c] -> q(z|x, c): stride-2 convolutions, then a linear map to mean
    and log_var."""

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = (32, 64),
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip([input_shape[0], *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        height, width = feature_sizes(input_shape, len(channels))[-1]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(channels[-1] * height * width + condition_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Independent:
        mean, log_var = self.head(join(self.features(x), c)).chunk(2, dim=-1)  # (B, D) each
        return diagonal_gaussian(mean, log_var)


class ConvDecoder(nn.Module):
    """z (..., latent_dim) [and c] -> likelihood parameters (..., *output_shape) via
    transposed convolutions; the leading dims are (B,) or (K, B) for K samples per image.

    `channels` lists feature maps from the smallest upward, e.g. (64, 32) mirrors an encoder
    with (32, 64); the last layer maps to the output's channel count (the image's, times
    the likelihood's parameters per pixel).
    """

    def __init__(
        self,
        output_shape: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = (64, 32),
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        sizes = feature_sizes(output_shape, len(channels))[::-1]  # smallest first
        self.start_shape = (channels[0], *sizes[0])
        self.project = nn.Sequential(
            nn.Linear(latent_dim + condition_dim, math.prod(self.start_shape)), nn.ReLU()
        )
        layers: list[nn.Module] = []
        outs = [*channels[1:], output_shape[0]]
        for i, (c_in, c_out) in enumerate(zip(channels, outs, strict=True)):
            (h_in, w_in), (h_out, w_out) = sizes[i], sizes[i + 1]
            pad = (h_out - 2 * h_in, w_out - 2 * w_in)  # 0 or 1: undo the encoder's rounding
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=pad))
            if i < len(channels) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        lead = z.shape[:-1]  # (B,) or (K, B) for K samples per image
        zc = join(z, c)
        h = self.project(zc.reshape(-1, zc.shape[-1])).unflatten(-1, self.start_shape)
        out = self.net(h)  # (prod(lead), C, H, W)
        return out.reshape(*lead, *out.shape[1:])
