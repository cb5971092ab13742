"""Test-set numbers a paper would print: ELBO, the importance-weighted NLL, active units;
the KL term and the active units per latent layer (one layer for a single-latent model).

Units as everywhere in vae_lab: nats per image, summed over pixels and latent dims and
averaged over images; bits per dim where they apply (vae_lab.evaluation.bits): `bpd_8bit`
of the 8-bit images, `bpd` of binarized ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from vae_lab.data.batches import Batch
from vae_lab.evaluation.bits import bits_per_dim_of, not_applicable
from vae_lab.models.components.latent_stack import layer_names
from vae_lab.models.core import decode_rows
from vae_lab.models.vae import VAE

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016, Sec. 5.2


def active_units(
    means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD
) -> tuple[int, torch.Tensor]:
    """Dims d whose posterior mean E_q[z_d|x] varies over the data: Var_x(E_q[z_d]) > threshold.

    `means` is (N, D), one posterior mean per image. A dim below the threshold encodes
    the same thing for every image, i.e. nothing (Burda et al. 2016, Sec. 5.2). Returns the
    count and the D variances.
    """
    variances = means.double().var(dim=0, correction=0)
    return int((variances > threshold).sum()), variances.float()


def active_units_per_layer(
    means: torch.Tensor, layer_dims: Sequence[int], threshold: float = ACTIVE_THRESHOLD
) -> dict[str, int]:
    """`active_units` of each latent layer, by name (`z2`, `z1`; `z1` alone for a single-
    latent model): `means` (N, D) split into the layers [z_top, ..., z_1] of `layer_dims`."""
    parts = means.split(list(layer_dims), dim=-1)
    names = layer_names(len(layer_dims))
    return {name: active_units(part, threshold)[0] for name, part in zip(names, parts, strict=True)}


@dataclass
class SplitMetrics:
    """One split's figures; the per-dim lists have one entry per latent dim."""

    images: int
    k: int
    elbo: float
    recon: float
    kl: float
    iw_nll: float  # -L_k, an upper bound on -log p(x); -ELBO at k = 1
    bpd: float | None  # iw_nll in bits per pixel of binarized data; else None
    bpd_8bit: float | None  # bits per pixel of the 8-bit images (a bound); None: see below
    not_applicable: dict[str, str]  # why bpd or bpd_8bit is None, by name
    active_units: int
    kl_per_dim: list[float] | None  # None where the prior's KL does not split by dim
    mean_variance_per_dim: list[float]  # Var_x(E_q[z_d]), what active units threshold
    # by latent layer, top first (z2, z1 for a two-level model; z1 alone for one layer)
    kl_per_layer: dict[str, float]  # the KL term of each layer; they sum to `kl`
    active_units_per_layer: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Sums:
    """Sums over the images evaluated so far, turned into per-image figures at the end."""

    terms: torch.Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))
    bits: dict[str, float] = field(default_factory=dict)  # by name: bpd, bpd_8bit
    kl_dims: torch.Tensor | None = None
    kl_layers: torch.Tensor | None = None
    means: list[torch.Tensor] = field(default_factory=list)  # posterior means, (B, D) each
    images: int = 0

    def add(
        self,
        terms: torch.Tensor,
        bits: dict[str, torch.Tensor],
        kl_per_dim: torch.Tensor | None,
        means: torch.Tensor,
        kl_layers: torch.Tensor,
    ) -> None:
        """One batch: `terms` (4, B) are elbo, recon, kl and the IW log-likelihood;
        `kl_layers` (B, L) the KL term of each latent layer."""
        self.terms += terms.double().sum(dim=1).cpu()
        per_layer = kl_layers.double().sum(dim=0).cpu()
        self.kl_layers = per_layer if self.kl_layers is None else self.kl_layers + per_layer
        for name, values in bits.items():
            self.bits[name] = self.bits.get(name, 0.0) + float(values.double().sum())
        if kl_per_dim is not None:
            per_dim = kl_per_dim.double().sum(dim=0).cpu()
            self.kl_dims = per_dim if self.kl_dims is None else self.kl_dims + per_dim
        self.means.append(means.float().cpu())
        self.images += terms.shape[1]

    def metrics(
        self, k: int, not_applicable: dict[str, str], layer_dims: Sequence[int]
    ) -> SplitMetrics:
        if self.images == 0 or self.kl_layers is None:
            raise ValueError("no images to evaluate")
        n = self.images
        elbo, recon, kl, iw_ll = (self.terms / n).tolist()
        means = torch.cat(self.means)
        n_active, variances = active_units(means)
        names = layer_names(len(layer_dims))
        return SplitMetrics(
            images=n,
            k=k,
            elbo=elbo,
            recon=recon,
            kl=kl,
            iw_nll=-iw_ll,
            bpd=self.bits["bpd"] / n if "bpd" in self.bits else None,
            bpd_8bit=self.bits["bpd_8bit"] / n if "bpd_8bit" in self.bits else None,
            not_applicable=not_applicable,
            active_units=n_active,
            kl_per_dim=None if self.kl_dims is None else (self.kl_dims / n).float().tolist(),
            mean_variance_per_dim=variances.tolist(),
            kl_per_layer=dict(zip(names, (self.kl_layers / n).tolist(), strict=True)),
            active_units_per_layer=active_units_per_layer(means, layer_dims),
        )


@torch.no_grad()
def evaluate(
    model: VAE,
    batches: Iterable[Batch],
    k: int,
    decode_batch: int | None = None,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
    binarized: bool = False,
) -> SplitMetrics:
    """Every figure above over all the batches (uint8 images, as the loaders give them).

    Batches are weighted by their size, so a short last batch counts for what it holds.
    `on_batch` is told the number of images done after each batch (progress reports).
    `binarized`: the model was trained on binarized pixels (then `bpd`, else `bpd_8bit`).
    `decode_batch`: rows per decoder call; None: the device's default (`decode_rows`), not
    the value the run saved (runs trained before it existed saved 20,000).
    """
    model = model.to(device).eval()
    decode_batch = decode_batch or decode_rows(torch.device(device))
    dtype = next(model.parameters()).dtype
    sums = _Sums()
    for batch in batches:
        posterior = model.encode(batch)
        terms = model.elbo_terms(batch)
        iw = model.iw_log_likelihood(batch, k, decode_batch)
        x = batch.images.to(device=device, dtype=dtype).div_(255.0)  # levels / 255 (or 0/1)

        def bound(y: torch.Tensor, labels: torch.Tensor = batch.labels) -> torch.Tensor:
            return model.iw_log_likelihood((y, labels), k, decode_batch)

        sums.add(
            torch.stack([terms.elbo, terms.recon, terms.kl, iw]),  # (4, B)
            bits_per_dim_of(model.likelihood, x, iw, bound, binarized),
            model.prior.kl_per_dim(posterior),
            posterior.mean,
            terms.kl_layers,
        )
        if on_batch is not None:
            on_batch(sums.images)
    return sums.metrics(k, not_applicable(model.likelihood, binarized), model.prior.layer_dims)
