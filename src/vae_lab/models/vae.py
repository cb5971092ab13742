"""The VAE as a LightningModule: bounds, the training objective, one shared step per stage.

Convention everywhere: log-densities are summed over pixels and latent dims and averaged
over the batch, in nats per image. With q(z|x) from the encoder, p(x|z) the likelihood and
p(z) the prior,

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)      (Kingma & Welling 2014)

estimated with one reparameterized sample z = mu + sigma * eps; the KL is in closed form
where the prior has one (N(0, I)), else the one-sample estimate log q(z|x) - log p(z).
What is logged as `elbo` is always this beta = 1 bound with the model's own prior,
whatever the objective trains (`objective`, weighted by `kl_schedule`).

The number papers compare is tighter: the importance-weighted bound of Burda et al. 2016
(IWAE, Eq. 8) with k samples z_i ~ q(z|x),

    log p(x)  >=  log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)  =: L_k,

with L_1 = ELBO, L_k non-decreasing in k, and L_k -> log p(x) as k -> infinity. The test
stage logs -L_k as `test/iw_nll` with k = `iw_samples`.

Every public method takes a batch, (images, labels): a `Batch` or any pair. Images may be
uint8 (0..255) or floats in [0, 1], on any device; labels may be None for a model that is
not class-conditional, which ignores them. Conditioning is the encoder's and decoder's
business (`conditioning`); no caller needs to know whether a model has it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import lightning as L
import torch
from torch import nn
from torch.distributions import Independent

from vae_lab.data.batches import Batch
from vae_lab.evaluation.bits import bits_per_dim_of, is_binarized
from vae_lab.models.components.conditioning import Conditioning, NoConditioning
from vae_lab.models.components.kl_schedules import ConstantKL, KLSchedule
from vae_lab.models.components.likelihoods import Likelihood
from vae_lab.models.components.objectives import ELBO, Objective, ObjectiveOutput
from vae_lab.models.components.prior import Prior
from vae_lab.models.terms import ELBOTerms, LogWeights

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
BatchLike = Batch | tuple[torch.Tensor, torch.Tensor | None]
Labels = torch.Tensor | int | None

__all__ = ["VAE", "ELBOTerms", "LogWeights", "VAEOutput"]

# Built objects handed in, not hyperparameters: the checkpoint keeps the config they came from.
PARTS = (
    "encoder", "decoder", "likelihood", "prior", "optimizer", "objective", "kl_schedule",
    "conditioning", "scheduler",
)  # fmt: skip


CPU_DECODE_ROWS = 2048
GPU_DECODE_ROWS = 20_000


def decode_rows(device: torch.device) -> int:
    """Rows the importance-weighted bound decodes per call when `eval.decode_batch` is null.

    On a CPU, 2048 rows (x 784 logits, 6.4 MB): a chunk whose logits and activations stay
    in the cache, the fastest size benchmarks/iw_eval.py found while the likelihood still
    scored whole chunks (`VAE.log_px_z` now scores slices; the size was not re-tuned
    since). A GPU wants large calls: 20,000 rows. The measurements: docs/performance.md,
    "Measurements behind the code's defaults".
    """
    return CPU_DECODE_ROWS if device.type == "cpu" else GPU_DECODE_ROWS


# Rows of decoder output the likelihood scores per call on a CPU (`VAE.log_px_z`).
CPU_SCORE_ROWS = 512


class VAEOutput(NamedTuple):
    posterior: Independent  # q(z|x), batch (B,), event (D,)
    z: torch.Tensor  # one reparameterized sample, (B, D)
    params: torch.Tensor  # decoder output: the likelihood's parameters, (B, C, H, W)


class VAE(L.LightningModule):
    """A VAE assembled from parts built elsewhere (by Hydra, from config)."""

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
        super().__init__()
        self.save_hyperparameters(ignore=list(PARTS), logger=False)
        self.encoder, self.decoder = encoder, decoder
        self.likelihood = likelihood
        self.conditioning = conditioning if conditioning is not None else NoConditioning()
        self.objective = objective if objective is not None else ELBO()
        self.kl_schedule = kl_schedule if kl_schedule is not None else ConstantKL()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.iw_samples, self.iw_decode_batch = iw_samples, iw_decode_batch
        self.input_memory_format = torch.contiguous_format  # channels_last: models/speed.py
        self.prior = prior
        prior.attach(self)  # after the encoder and conditioning exist: the VampPrior uses them

    # --- the networks, on prepared tensors --------------------------------------------------

    @property
    def conditional(self) -> bool:
        """Whether encoder and decoder see the label (conditioning=label)."""
        return bool(self.conditioning.conditions)

    def posterior(self, x: torch.Tensor, c: torch.Tensor | None) -> Independent:
        """q(z|x, c) for float images x (B, C, H, W) and condition vectors c (or None)."""
        return self.encoder(x) if c is None else self.encoder(x, c)

    def likelihood_params(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """The decoder's output at z (..., D): the parameters of p(x|z, c)."""
        return self.decoder(z) if c is None else self.decoder(z, c)

    def _inputs(self, batch: BatchLike) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x, c): float images on the model's device and in its dtype, and the condition."""
        images, labels = batch
        uint8 = images.dtype == torch.uint8
        x = images.to(self.device, self._float_dtype)
        if uint8:
            x = x / 255.0
        return x.contiguous(memory_format=self.input_memory_format), self._condition(labels, len(x))

    def _condition(self, labels: Labels, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if isinstance(labels, int):
            labels = torch.full((n,), labels, dtype=torch.long)
        c = self.conditioning(labels.to(self.device) if labels is not None else None)
        return None if c is None else c.to(self._float_dtype)

    @property
    def _float_dtype(self) -> torch.dtype:
        return cast(torch.dtype, self.dtype)  # Lightning types it str | dtype

    # --- bounds --------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> VAEOutput:
        posterior = self.posterior(x, c)
        z = posterior.rsample()
        return VAEOutput(posterior, z, self.likelihood_params(z, c))

    def elbo_pass(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[ELBOTerms, Independent]:
        """One reparameterized pass: the beta = 1 ELBO terms, and q(z|x, c)."""
        out = self(x, c)
        recon = -self.likelihood.log_prob(x, out.params)  # (B,)
        kl = self.prior.kl(out.posterior, out.z)  # (B,)
        return ELBOTerms(elbo=-(recon + kl), recon=recon, kl=kl), out.posterior

    def elbo_terms(self, batch: BatchLike) -> ELBOTerms:
        """The beta = 1 ELBO and its two terms per image, shape (B,) each, with gradients."""
        return self.elbo_pass(*self._inputs(batch))[0]

    def log_weights(
        self, x: torch.Tensor, c: torch.Tensor | None, posterior: Independent, n: int
    ) -> LogWeights:
        """log p(x|z_i), log p(z_i), log q(z_i|x) for n draws z_i ~ q(z|x): each (n, B)."""
        z = posterior.rsample((n,))  # (n, B, D)
        log_px_z = self.log_px_z(x, self.likelihood_params(z, c))
        return LogWeights(z, log_px_z, self.prior.log_prob(z), posterior.log_prob(z))

    def log_px_z(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z_i) for decoder output params (n, B, C, H, W) at n draws: (n, B).

        On a CPU, scored a slice of the images at a time, about `CPU_SCORE_ROWS` rows a
        slice: the likelihood makes several passes over its rows (Bernoulli: |l|, a
        sigmoid, products, x . l), and a slice of them stays in the core's cache between
        passes where a whole chunk (2048 rows x 784, 6.4 MB) goes back to memory. On a GPU
        the chunk is scored whole. The measurements: docs/performance.md, "Measurements
        behind the code's defaults".
        """
        n, images = params.shape[0], params.shape[1]
        one_x_per_image = params.dim() == x.dim() + 1 and x.shape[0] == images
        if params.device.type != "cpu" or n * images <= CPU_SCORE_ROWS or not one_x_per_image:
            return self.likelihood.log_prob(x, params)
        step = max(1, CPU_SCORE_ROWS // n)
        return torch.cat(
            [
                self.likelihood.log_prob(x[i : i + step], params[:, i : i + step])
                for i in range(0, images, step)
            ],
            dim=1,
        )

    @torch.no_grad()
    def iw_log_likelihood(
        self, batch: BatchLike, k: int, decode_batch: int | None = None
    ) -> torch.Tensor:
        """L_k per image, shape (B,): the importance-weighted lower bound on log p(x).

        x is encoded once; the k samples are decoded in chunks of at most `decode_batch`
        rows (chunk x B; default `decode_rows(device)`), so memory stays bounded for
        k = 5000. The k log-weights
        (k x B floats) are kept and reduced with a log-sum-exp, which subtracts their
        maximum first: the weights themselves (e^-250 and below) would underflow.

        Computed in the weights' precision (fp32 under `bf16-mixed` or `16-mixed`), with
        autocast off: log p(x|z) is a sum of 784 terms of a few hundred nats, which bf16's
        8-bit mantissa would carry with errors of about one nat.
        """
        x, c = self._inputs(batch)  # in the weights' dtype: fp32 under mixed precision
        with torch.autocast(device_type=x.device.type, enabled=False):
            posterior = self.posterior(x, c)
            budget = decode_batch or self.iw_decode_batch or decode_rows(x.device)
            chunk = max(1, min(k, budget // x.shape[0]))
            parts = []
            for start in range(0, k, chunk):
                w = self.log_weights(x, c, posterior, min(chunk, k - start))
                parts.append(w.log_px_z + w.log_pz - w.log_qz)
            log_w = torch.cat(parts)  # (k, B)
        return torch.logsumexp(log_w.float(), dim=0) - math.log(k)

    # --- what a user looks at -------------------------------------------------------------

    @torch.no_grad()
    def encode(self, batch: BatchLike) -> Independent:
        """q(z|x, y) for a batch: a diagonal Gaussian, `.mean` (B, D) its posterior means."""
        return self.posterior(*self._inputs(batch))

    @torch.no_grad()
    def reconstruct(self, batch: BatchLike) -> torch.Tensor:
        """The likelihood's mean at the posterior mean: the image the model sees in x."""
        x, c = self._inputs(batch)
        return self.likelihood.mean(self.likelihood_params(self.posterior(x, c).mean, c))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: Labels = None, pixels: bool = False) -> torch.Tensor:
        """Images for latent codes z (..., D): the likelihood's mean E[x|z, y], or with
        `pixels` a draw x ~ p(x|z, y). `labels`: one class per z, or one int for all."""
        z = z.to(self.device, self._float_dtype)
        params = self.likelihood_params(z, self._condition(labels, z.shape[0]))
        return self.likelihood.sample(params) if pixels else self.likelihood.mean(params)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: Labels = None,
        generator: torch.Generator | None = None,
        pixels: bool = False,
    ) -> torch.Tensor:
        """n images from the model: z ~ p(z) (the prior's own sampler), then `decode`.
        A class-conditional model needs `labels`: one per image, or one int for all."""
        return self.decode(self.prior.sample(n, generator), labels, pixels)

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
        return self.objective(self, x, c, self.kl_weight(batch_idx), self.kl_schedule.free_bits)

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

        Lightning writes them every `log_every_n_steps`, but each `self.log` call costs
        bookkeeping on every step (docs/performance.md, "Per-step logging"), so the step
        skips the calls whose values would be thrown away.
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

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        # `monitor` is read only by schedulers that need a metric (ReduceLROnPlateau).
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/elbo"},
        }
