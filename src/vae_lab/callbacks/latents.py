"""Pictures of the latent space in TensorBoard: traversals, interpolation, KL per dim, and
(for a 2-D latent space) the decoded manifold and the test set's posterior means.

All of it runs after some validation epochs and at the end of training
(`callbacks.cadence`), off the training step, on rank zero only, and writes only to
TensorBoard loggers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
import torch

from vae_lab.callbacks.cadence import EpochPictures, tensorboard_writers
from vae_lab.data.fashion_mnist import CLASS_NAMES
from vae_lab.evaluation import pictures
from vae_lab.evaluation.metrics import active_units, active_units_per_layer
from vae_lab.models.vae import VAE

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class LatentPictures(EpochPictures):
    """After the first validation epoch, every `every_n_epochs`-th and at the end of training
    (`callbacks.cadence`), logs under `latent/`:

    - `traversals`: one row per dim of the top latent layer (the first `max_dims`),
      sweeping z_d over [-span, span] from the posterior mean of a fixed test image (the
      layers below, if any, at the prior's conditional means: `pictures.traversals`);
    - `interpolation`: between the posterior means of two fixed test images;
    - `kl_per_dim` (histogram; for a prior whose KL splits by dim), `active_units` and
      `active_units_<layer>` per latent layer (`active_units_z1` alone for a single-latent
      model), over `n_stats` test images;
    - with a 2-D (top) latent layer, `manifold` (decodes over a grid of Gaussian quantiles)
      and `posterior_means` (a scatter of the test images' E_q[z|x], coloured by class).
    """

    def __init__(
        self,
        span: float = 3.0,
        steps: int = 9,
        max_dims: int = 16,
        interpolation_steps: int = 10,
        n_stats: int = 2000,
        every_n_epochs: int = 5,
    ) -> None:
        super().__init__(every_n_epochs)
        self.span, self.steps, self.max_dims = span, steps, max_dims
        self.interpolation_steps, self.n_stats = interpolation_steps, n_stats
        self.images: torch.Tensor | None = None  # uint8 test images, (n_stats, C, H, W)
        self.labels: torch.Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        images, labels = trainer.datamodule.splits["test"]  # type: ignore[attr-defined]
        self.images, self.labels = images[: self.n_stats], labels[: self.n_stats]

    needs_tensorboard = True  # it writes nowhere else

    def draw(self, trainer: L.Trainer, pl_module: VAE) -> None:
        assert self.images is not None and self.labels is not None
        step = trainer.global_step
        posterior = pictures.encode(pl_module, self.images, self.labels)
        means = posterior.mean  # (N, D)
        layer_dims = pl_module.prior.layer_dims  # one layer for a single-latent model
        top = means[:, : layer_dims[0]]  # the top layer's means, (N, D_top)
        first = int(self.labels[0])  # the class a conditional model decodes z0 as
        dims = list(range(min(self.max_dims, top.shape[1])))
        images = {
            "latent/traversals": pictures.traversals(
                pl_module, means[0], dims, self.span, self.steps, first
            ),
            "latent/interpolation": pictures.interpolation(
                pl_module,
                self.images[:2].float() / 255.0,
                self.labels[:2],
                self.interpolation_steps,
            ),
        }
        if top.shape[1] == 2:
            images["latent/manifold"] = pictures.manifold_2d(pl_module, label=first)
        # KL(q || p) per dim where the prior's KL splits by dim (N(0, I)), else no histogram
        per_dim = pl_module.prior.kl_per_dim(posterior)
        n_active, _ = active_units(means)
        per_layer = active_units_per_layer(means, layer_dims)
        for writer in tensorboard_writers(trainer):
            for tag, grid in images.items():
                writer.add_image(tag, grid, step)
            if per_dim is not None:
                writer.add_histogram("latent/kl_per_dim", per_dim.mean(0).float().cpu(), step)
            writer.add_scalar("latent/active_units", n_active, step)
            for name, count in per_layer.items():
                writer.add_scalar(f"latent/active_units_{name}", count, step)
            if top.shape[1] == 2:
                writer.add_figure("latent/posterior_means", self._scatter(top), step)

    def _scatter(self, means: torch.Tensor) -> Figure:
        from matplotlib.figure import Figure  # imported here: half a second of start-up

        assert self.labels is not None
        points, labels = means.float().cpu().numpy(), self.labels.cpu().numpy()
        figure = Figure(figsize=(6, 5), dpi=100)
        ax = figure.add_subplot()
        for c, name in enumerate(CLASS_NAMES):
            chosen = labels == c
            ax.scatter(points[chosen, 0], points[chosen, 1], s=3, label=name)
        ax.set(xlabel="E[z_1 | x]", ylabel="E[z_2 | x]", title="test posterior means")
        ax.legend(markerscale=4, fontsize=7, loc="upper right")
        figure.tight_layout()
        return figure


class EmbeddingProjector(L.Callback):
    """At the end of training, hands the test set's posterior means to TensorBoard's
    embedding projector, labelled with the class names and shown as their images (sprites).

    `n`: how many test images (null: all 10k); the projector's PCA/t-SNE/UMAP views then
    show whether classes separate in z.
    """

    def __init__(self, n: int | None = None) -> None:
        self.n = n

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = tensorboard_writers(trainer)
        if not trainer.is_global_zero or not writers:
            return
        assert isinstance(pl_module, VAE)
        images, labels = trainer.datamodule.splits["test"]  # type: ignore[attr-defined]
        images, labels = images[: self.n], labels[: self.n]
        means = pictures.encode(pl_module, images, labels).mean.float().cpu()
        names = [CLASS_NAMES[i] if i < len(CLASS_NAMES) else str(i) for i in labels.tolist()]
        for writer in writers:
            writer.add_embedding(
                means,
                metadata=names,
                label_img=images.float().cpu() / 255.0,
                global_step=trainer.global_step,
                tag="test_posterior_mean",
            )
