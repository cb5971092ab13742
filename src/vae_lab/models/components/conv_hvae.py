"""The two-level VAE of Tomczak & Welling 2018 with gated convolutions (`model=conv_hvae`).

As in their code (`jmtomczak/vae_vampprior`, `models/convHVAE_2level.py`), z2 the top
layer and z1 the bottom one:

- q(z2|x): five gated convolutions, (channels, kernel, stride, padding) = (32, 7, 1, 3),
  (32, 3, 2, 1), (64, 5, 1, 2), (64, 3, 2, 1), (6, 3, 1, 1), so a 28x28 image becomes
  6 x 7 x 7 = 294 features; a linear mean and a Hardtanh(-6, 2) log-variance;
- q(z1|x, z2): x through five more, (32, 3, 1, 1), (32, 3, 2, 1), (64, 3, 1, 1),
  (64, 3, 2, 1), (6, 3, 1, 1), flattened (294); z2 through GatedDense(z2, 294);
  concatenated (588), GatedDense(588, 300), mean and log-variance;
- p(z1|z2): as in `model=hvae` (`hvae.GaussianConditional`, in the model's `latents`);
- p(x|z1, z2): z1 and z2 each through GatedDense(., 300), concatenated, GatedDense(600,
  H * W) reshaped to a 1 x H x W map, four gated convolutions of 64 channels (3, 1, 1),
  then a 1x1 convolution to the likelihood's parameters per pixel.

A gated convolution is conv_h(x) * sigmoid(conv_g(x)). The layer lists are config
(`[channels, kernel, stride, padding]` each); the flattened sizes come from a dry run of
the convolutions on an image of `input_shape`, never from constants. He-normal init on
every linear weight (`init`), PyTorch's default on the convolutions, as in the paper's code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn

from vae_lab.models.components.gated_mlp import GatedDense, initialize
from vae_lab.models.components.hvae import GaussianHead, JointGaussian, two_level_posterior
from vae_lab.models.components.latent_stack import LatentStack

# [channels, kernel, stride, padding] of each gated convolution (the paper's stacks)
Z2_CONVS = ((32, 7, 1, 3), (32, 3, 2, 1), (64, 5, 1, 2), (64, 3, 2, 1), (6, 3, 1, 1))
Z1_CONVS = ((32, 3, 1, 1), (32, 3, 2, 1), (64, 3, 1, 1), (64, 3, 2, 1), (6, 3, 1, 1))
DECODER_CONVS = ((64, 3, 1, 1),) * 4


class GatedConv2d(nn.Module):
    """conv_h(x) * sigmoid(conv_g(x)): a convolution whose every output has a learned gate."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.h = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.g = nn.Conv2d(c_in, c_out, kernel, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def gated_convs(c_in: int, layers: Sequence[Sequence[int]]) -> nn.Sequential:
    """Gated convolutions from `c_in` channels, one per [channels, kernel, stride, padding]."""
    modules = []
    for spec in layers:
        if len(spec) != 4:
            raise ValueError(
                f"a gated convolution is [channels, kernel, stride, padding], got {list(spec)}"
            )
        c_out, kernel, stride, padding = (int(v) for v in spec)
        modules.append(GatedConv2d(c_in, c_out, kernel, stride, padding))
        c_in = c_out
    return nn.Sequential(*modules)


@torch.no_grad()
def output_shape_of(net: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape `net` maps one input of `input_shape` to (a dry run on zeros)."""
    return tuple(net(torch.zeros(1, *input_shape)).shape[1:])


class ConvHVAEEncoder(nn.Module):
    """x (B, C, H, W) -> q(z2|x) q(z1|x, z2), a `LatentStack` over [z2, z1].

    `latent_dim` is z2's size (the top layer, the one the prior sees), `z1_dim` z1's;
    `z2_convs` and `z1_convs` the gated convolutions that see x for each layer;
    `joint_size` the width of q(z1|x, z2)'s joint layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        z1_dim: int,
        z2_convs: Sequence[Sequence[int]] = Z2_CONVS,
        z1_convs: Sequence[Sequence[int]] = Z1_CONVS,
        joint_size: int = 300,
        log_var_range: Sequence[float] | None = (-6.0, 2.0),
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        convs = gated_convs(channels, z2_convs)
        n_z2 = math.prod(output_shape_of(convs, input_shape))
        self.q_z2 = nn.Sequential(
            convs, nn.Flatten(), GaussianHead(n_z2, latent_dim, log_var_range)
        )
        convs = gated_convs(channels, z1_convs)
        n_z1 = math.prod(output_shape_of(convs, input_shape))
        self.q_z1_x = nn.Sequential(convs, nn.Flatten())
        self.q_z1 = JointGaussian(n_z1, latent_dim, z1_dim, joint_size, log_var_range)
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> LatentStack:
        return two_level_posterior(self.q_z2(x), functools.partial(self.q_z1_x, x), self.q_z1)


class ConvHVAEDecoder(nn.Module):
    """z = [z2, z1] (..., latent_dim + z1_dim) -> the likelihood's parameters
    (..., *output_shape); the leading dims are (B,) or (K, B) for K draws per image.

    z1 and z2 each through a gated layer of `joint_size`, concatenated, a gated layer to a
    `map_channels` x H x W map (H, W from `output_shape`), the gated convolutions `convs`
    (each keeping H x W), then a 1x1 convolution to output_shape[0] channels (the image's
    times the likelihood's parameters per pixel).
    """

    def __init__(
        self,
        output_shape: Sequence[int],
        latent_dim: int,
        z1_dim: int,
        joint_size: int = 300,
        map_channels: int = 1,
        convs: Sequence[Sequence[int]] = DECODER_CONVS,
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.dims = [latent_dim, z1_dim]
        self.map_shape = (map_channels, *self.output_shape[1:])
        self.p_z1 = GatedDense(z1_dim, joint_size)
        self.p_z2 = GatedDense(latent_dim, joint_size)
        self.joint = GatedDense(2 * joint_size, math.prod(self.map_shape))
        body = gated_convs(map_channels, convs)
        features = output_shape_of(body, self.map_shape)
        if features[1:] != self.map_shape[1:]:
            raise ValueError(
                f"the decoder's convolutions must keep the image's {self.map_shape[1:]} size, "
                f"got {features[1:]}: use stride 1 and padding (kernel - 1) / 2"
            )
        self.convs = nn.Sequential(body, nn.Conv2d(features[0], self.output_shape[0], 1))
        initialize(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]  # (B,) or (K, B)
        z2, z1 = z.reshape(-1, z.shape[-1]).split(self.dims, dim=-1)
        h = self.joint(torch.cat([self.p_z1(z1), self.p_z2(z2)], dim=-1))
        out = self.convs(h.unflatten(-1, self.map_shape))  # (prod(lead), C * P, H, W)
        return out.reshape(*lead, *out.shape[1:])
