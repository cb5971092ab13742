"""Pictures of what a VAE learned, as image grids (C, H', W') in [0, 1].

Shared by the `vae_lab.sample` command and the TensorBoard callbacks, so the PNG a user
writes and the image TensorBoard shows are the same picture. Every function goes through
the model's own methods (`encode`, `decode`, `reconstruct`, `sample`) and decodes with the
likelihood's mean, E[x|z]: the image the model stands for at z. Labels are handed along
everywhere; a model that is not class-conditional ignores them.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution
from torchvision.utils import make_grid

from vae_lab.models.components.latent_stack import concatenate_posteriors
from vae_lab.models.vae import VAE

PAD = 1.0  # white lines between tiles


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    return make_grid(images.float().clamp(0, 1).cpu(), nrow=nrow, pad_value=PAD)


@torch.no_grad()
def encode(
    model: VAE, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int = 1000
) -> Distribution:
    """q(z|x, y) for uint8 or [0, 1] images (N, C, H, W), in batches: batch shape (N,),
    event shape (D,)."""
    parts = []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        parts.append(model.encode((images[chunk], None if labels is None else labels[chunk])))
    return concatenate_posteriors(parts)


@torch.no_grad()
def reconstructions(model: VAE, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Row 1: the images x in [0, 1]; row 2: their reconstructions at the posterior mean."""
    return _grid(torch.cat([x.cpu(), model.reconstruct((x, labels)).cpu()]), nrow=len(x))


@torch.no_grad()
def samples(
    model: VAE,
    n: int,
    nrow: int = 8,
    generator: torch.Generator | None = None,
    label: int | None = None,
    pixels: bool = False,
) -> torch.Tensor:
    """n draws from the model, `nrow` per row; with `pixels`, x ~ p(x|z) itself rather than
    its mean (for a Bernoulli likelihood: binary images).

    A class-conditional model draws `label` for all n, or, with no label, a row per class:
    the same `nrow` draws of z in every row, so a column shows one z as each class.
    """
    if label is not None or not model.conditional:
        return _grid(model.sample(n, label, generator, pixels), nrow=nrow)
    classes = model.conditioning.num_classes
    z = model.prior.sample(nrow, generator).repeat(classes, 1)  # (classes * nrow, D)
    labels = torch.arange(classes).repeat_interleave(nrow)
    return _grid(model.decode(z, labels, pixels), nrow=nrow)


@torch.no_grad()
def interpolation(
    model: VAE, x: torch.Tensor, labels: torch.Tensor | None, steps: int
) -> torch.Tensor:
    """One row: x[0], decodes of (1 - t) mu_0 + t mu_1 for t in [0, 1] over `steps`, x[1].

    A class-conditional model decodes each point with the label of the nearer end.
    """
    means = model.encode((x, labels)).mean  # (2, D)
    t = torch.linspace(0, 1, steps, device=means.device, dtype=means.dtype)[:, None]
    path = None if labels is None else labels[(t[:, 0] >= 0.5).long().cpu()]
    decoded = model.decode((1 - t) * means[0] + t * means[1], path)
    return _grid(torch.cat([x[:1].cpu(), decoded.cpu(), x[1:].cpu()]), nrow=steps + 2)


@torch.no_grad()
def traversals(
    model: VAE,
    z0: torch.Tensor,
    dims: list[int],
    span: float = 3.0,
    steps: int = 9,
    label: int | None = None,
) -> torch.Tensor:
    """One row per dim d of the top latent layer: z0's top layer with z_d swept over
    [-span, span], its other dims fixed, the layers below completed from the prior
    (`VAECore.complete`; a single-latent model has only the top layer), and the class
    `label` for a conditional model. z0 is a whole latent code (D,), e.g. a posterior mean.

    Rows of an inactive dim show the same image throughout: the dim carries nothing.
    """
    values = torch.linspace(-span, span, steps, dtype=z0.dtype)
    top = z0.cpu()[: model.prior.layer_dims[0]]
    z = top.expand(len(dims), steps, -1).clone()  # (R, S, D_top)
    for row, d in enumerate(dims):
        z[row, :, d] = values
    return _grid(model.decode(model.complete(z.flatten(0, 1)), label), nrow=steps)


@torch.no_grad()
def manifold_2d(
    model: VAE, n: int = 20, eps: float = 0.05, label: int | None = None
) -> torch.Tensor:
    """For a 2-D (top) latent layer: decodes over an n x n grid of Gaussian quantiles, so each
    tile covers equal N(0, I) mass (Kingma & Welling 2014, Fig. 4), the layers below
    completed from the prior. Rows go down in the second dim."""
    q = torch.special.ndtri(torch.linspace(eps, 1 - eps, n, dtype=torch.float64))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # row 0: the largest second dim
    z = torch.stack([z1, z2], dim=-1).reshape(-1, 2)
    return _grid(model.decode(model.complete(z), label), nrow=n)
