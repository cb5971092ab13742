"""Pictures of what a VAE learned, as image grids (C, H', W') in [0, 1].

Shared by the `vae_lab.sample` command and the TensorBoard callbacks, so the PNG a user
writes and the image TensorBoard shows are the same picture. Every function decodes with
the likelihood's mean, E[x|z]: the image the model stands for at z.
"""

from __future__ import annotations

import torch
from torchvision.utils import make_grid

from vae_lab.models.components.gaussian import DiagonalGaussian
from vae_lab.models.vae import VAE

PAD = 1.0  # white lines between tiles


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    return make_grid(images.float().clamp(0, 1).cpu(), nrow=nrow, pad_value=PAD)


def param_dtype(model: VAE) -> torch.dtype:
    return next(model.parameters()).dtype


@torch.no_grad()
def encode(model: VAE, images: torch.Tensor, batch_size: int = 1000) -> DiagonalGaussian:
    """q(z|x) for uint8 or [0, 1] images (N, C, H, W), in batches: shapes (N, D)."""
    parts = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(model.device, param_dtype(model))
        if images.dtype == torch.uint8:
            x = x / 255.0
        parts.append(model.encoder(x))
    return DiagonalGaussian(
        torch.cat([p.mean for p in parts]), torch.cat([p.log_var for p in parts])
    )


@torch.no_grad()
def reconstructions(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """Row 1: the images x in [0, 1]; row 2: their reconstructions at the posterior mean."""
    x = x.to(model.device, param_dtype(model))
    return _grid(torch.cat([x, model.reconstruct(x)]), nrow=len(x))


@torch.no_grad()
def prior_samples(model: VAE, z: torch.Tensor, pixels: bool = False, nrow: int = 8) -> torch.Tensor:
    """Decoded draws z ~ p(z); with `pixels`, x ~ p(x|z) itself rather than its mean (for
    a Bernoulli likelihood: binary images; for a Gaussian: the mean plus pixel noise)."""
    params = model.decoder(z.to(model.device, param_dtype(model)))
    images = model.likelihood.sample(params) if pixels else model.likelihood.mean(params)
    return _grid(images, nrow=nrow)


@torch.no_grad()
def interpolation(model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int) -> torch.Tensor:
    """One row: x_a, decodes of (1 - t) mu_a + t mu_b for t in [0, 1] over `steps`, then x_b."""
    x = torch.stack([x_a, x_b]).to(model.device, param_dtype(model))
    mu_a, mu_b = model.encoder(x).mean
    t = torch.linspace(0, 1, steps, device=model.device, dtype=mu_a.dtype)[:, None]
    decoded = model.decode((1 - t) * mu_a + t * mu_b)
    return _grid(torch.cat([x[:1], decoded, x[1:]]), nrow=steps + 2)


@torch.no_grad()
def traversals(
    model: VAE, z0: torch.Tensor, dims: list[int], span: float = 3.0, steps: int = 9
) -> torch.Tensor:
    """One row per latent dim d: z0 with z_d swept over [-span, span], everything else fixed.

    Rows of an inactive dim show the same image throughout: the dim carries nothing.
    """
    values = torch.linspace(-span, span, steps, device=model.device, dtype=param_dtype(model))
    z = z0.to(model.device, param_dtype(model)).expand(len(dims), steps, -1).clone()  # (R, S, D)
    for row, d in enumerate(dims):
        z[row, :, d] = values
    return _grid(model.decode(z.flatten(0, 1)), nrow=steps)


@torch.no_grad()
def manifold_2d(model: VAE, n: int = 20, eps: float = 0.05) -> torch.Tensor:
    """For a 2-D latent space: decodes over an n x n grid of Gaussian quantiles, so each tile
    covers equal prior mass (Kingma & Welling 2014, Fig. 4). Rows go down in z_2."""
    q = torch.special.ndtri(torch.linspace(eps, 1 - eps, n, dtype=torch.float64))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # row 0: the largest z_2
    z = torch.stack([z1, z2], dim=-1).reshape(-1, 2)
    return _grid(model.decode(z.to(model.device, param_dtype(model))), nrow=n)
