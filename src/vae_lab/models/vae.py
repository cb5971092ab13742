"""The VAE as a LightningModule: the training objective, one shared step per stage, logging
and optimizers, on top of the model's maths (`vae_lab.models.core.VAECore`, where the
bounds and their conventions are written out).

What is logged as `elbo` is always the beta = 1 bound with the model's own prior, whatever
the objective trains (`objective`, weighted by `kl_schedule`). Validation and test also
log the KL term of each latent layer (`kl_z2`, `kl_z1` for a two-level model; `kl_z1`,
the whole KL, for a single-latent one). The test stage also logs -L_k, the importance-
weighted bound with k = `iw_samples`, as `test/iw_nll`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from vae_lab.config.schemas import MODEL_PARTS
from vae_lab.data.batches import Batch
from vae_lab.evaluation.bits import bits_per_dim_of, is_binarized
from vae_lab.models.components.conditioning import Conditioning
from vae_lab.models.components.kl_schedules import ConstantKL, KLSchedule
from vae_lab.models.components.latent_stack import layer_names
from vae_lab.models.components.likelihoods import Likelihood
from vae_lab.models.components.objectives import ELBO, Objective, ObjectiveOutput
from vae_lab.models.components.prior import Prior
from vae_lab.models.core import BatchLike, VAECore, VAEOutput
from vae_lab.models.terms import ELBOTerms, LogWeights

IMPLEMENTATION = ("fused", "foreach")  # optimizer options of how, not what, it updates
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]

__all__ = ["VAE", "ELBOTerms", "LogWeights", "VAECore", "VAEOutput"]

# Built objects handed in, not hyperparameters: the checkpoint keeps the config they came from.
PARTS = (*MODEL_PARTS, "optimizer", "scheduler")


class VAE(VAECore, L.LightningModule):
    """A VAE assembled from parts built elsewhere (by Hydra, from config), and trained.

    The maths, and the parts' names in the state dict (`encoder.*`, `decoder.*`,
    `likelihood.*`, `prior.*`), are `VAECore`'s; this class adds what training needs.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: Prior,
        optimizer: OptimizerFactory,
        objective: Objective | None = None,
        kl_schedule: KLSchedule | None = None,
        conditioning: Conditioning | None = None,
        scheduler: SchedulerFactory | None = None,
        input_shape: Sequence[int] | None = None,
        iw_samples: int = 0,
        iw_decode_batch: int | None = None,
    ) -> None:
        super().__init__(
            encoder=encoder,
            decoder=decoder,
            likelihood=likelihood,
            prior=prior,
            conditioning=conditioning,
            input_shape=input_shape,
            iw_decode_batch=iw_decode_batch,
        )
        self.save_hyperparameters(ignore=list(PARTS), logger=False)
        self.objective = objective if objective is not None else ELBO()
        self.kl_schedule = kl_schedule if kl_schedule is not None else ConstantKL()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.iw_samples = iw_samples

    # --- training ----------------------------------------------------------------------

    def kl_weight(self, batch_idx: int = 0) -> float:
        """The KL schedule's beta at this step (epoch e, batch i of n: e + i / n)."""
        trainer = self._trainer
        steps = trainer.num_training_batches if trainer is not None else math.inf
        fraction = batch_idx / steps if 0 < steps < math.inf else 0.0
        return self.kl_schedule.weight(self.current_epoch + fraction)

    def training_loss(self, batch: BatchLike, batch_idx: int = 0) -> ObjectiveOutput:
        """The objective's loss on a batch at this step's KL weight, with the batch's
        beta = 1 ELBO terms."""
        x, c = self._inputs(batch)
        return self.objective(self, x, c, self.kl_weight(batch_idx))

    def _common_step(self, batch: Batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        training = stage == "train"
        if training:
            loss, terms = self.training_loss(batch, batch_idx)
            if not self._logs_this_step():
                return loss
        else:
            terms = self.elbo_terms(batch)
            loss = -terms.elbo.mean()
        x = batch.images
        metrics: dict[str, torch.Tensor | float] = {
            f"{stage}/elbo": terms.elbo.mean(),
            f"{stage}/recon": terms.recon.mean(),
            f"{stage}/kl": terms.kl.mean(),
        }
        if training:
            metrics["train/loss"] = loss
            metrics["train/kl_weight"] = self.kl_weight(batch_idx)
        else:  # the KL term of each latent layer: kl_z1 alone for a single-latent model
            names = layer_names(terms.kl_layers.shape[-1])
            metrics.update(
                {
                    f"{stage}/kl_{name}": kl.mean()
                    for name, kl in zip(names, terms.kl_layers.T, strict=True)
                }
            )
        if stage == "test" and self.iw_samples > 0:
            iw_ll = self.iw_log_likelihood(batch, self.iw_samples)
            metrics["test/iw_nll"] = -iw_ll.mean()

            def bound(y: torch.Tensor) -> torch.Tensor:
                return self.iw_log_likelihood((y, batch.labels), self.iw_samples)

            bits = bits_per_dim_of(  # bpd (binarized data) or bpd_8bit, where they apply
                self.likelihood, x, iw_ll, bound, binarized=is_binarized(self.hparams.get("config"))
            )
            metrics.update({f"test/{name}": value.mean() for name, value in bits.items()})
        # Values stay on the device; validation and test are reduced at epoch end (across
        # processes too), so no step forces a host sync beyond the logger's own cadence.
        # The epoch mean is sum(value x batch) / sum(batch) over all ranks. The batch size
        # goes in as a float: Lightning (2.6) averages the image counts over the ranks in
        # an integer tensor, which floors (51 images on 2 ranks: 25, not 25.5), inflating
        # every metric by 2% there (Lightning-AI/pytorch-lightning#21859).
        self.log_dict(
            metrics,
            on_step=training,
            on_epoch=not training,
            batch_size=float(x.shape[0]),  # type: ignore[arg-type]
            sync_dist=not training,
        )
        return loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning will write step metrics after this training step.

        Lightning writes them every `log_every_n_steps`, but each `self.log` call does its
        bookkeeping on every step, so the step skips the calls whose values would be thrown
        away (docs/performance.md, "Measurements behind the code's defaults").
        """
        trainer = self._trainer
        if trainer is None:
            return True
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]
        if not every:  # 0: Lightning never writes step metrics
            return trainer.should_stop
        return (self.global_step + 1) % every == 0 or trainer.should_stop

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train", batch_idx)

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "test")

    def _implementation(self) -> dict[str, Any]:
        """How the optimizer computes its update (`fused`, `foreach`), as configured, except
        that a fused optimizer is not fused where Lightning cannot clip its gradients: under
        `16-mixed` (a gradient scaler) with `trainer.gradient_clip_val` set."""
        options = dict(getattr(self.optimizer_factory, "keywords", {}))
        chosen = {key: options[key] for key in IMPLEMENTATION if key in options}
        trainer = self._trainer
        if (
            chosen.get("fused")
            and trainer is not None
            and str(trainer.precision).startswith("16")
            and trainer.gradient_clip_val
        ):
            chosen["fused"] = False
        return chosen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run computes its optimizer's update as configured now: the optimizer
        state a checkpoint restores would otherwise bring back its saved `fused` and
        `foreach` (an older run's None), while the optimizer was built for today's."""
        chosen = self._implementation()
        for state in checkpoint.get("optimizer_states") or []:
            for group in state.get("param_groups", []):
                for key in IMPLEMENTATION:
                    if key in group:
                        group[key] = chosen.get(key)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters(), **self._implementation())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        # `monitor` is read only by schedulers that need a metric (ReduceLROnPlateau).
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/elbo"},
        }
