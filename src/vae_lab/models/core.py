"""The VAE's maths as a plain `nn.Module`: posterior, decoder, bounds, what a user looks at.

Convention everywhere: log-densities are summed over pixels and latent dims and averaged
over the batch, in nats per image. With q(z|x) from the encoder, p(x|z) the likelihood and
p(z) the prior,

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)      (Kingma & Welling 2014)

estimated with one reparameterized sample z = mu + sigma * eps; the KL is in closed form
where the prior has one (N(0, I)), else the one-sample estimate log q(z|x) - log p(z).
What is logged as `elbo` is always this beta = 1 bound with the model's own prior,
whatever the objective trains.

The number papers compare is tighter: the importance-weighted bound of Burda et al. 2016
(IWAE, Eq. 8) with k samples z_i ~ q(z|x),

    log p(x)  >=  log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)  =: L_k,

with L_1 = ELBO, L_k non-decreasing in k, and L_k -> log p(x) as k -> infinity.

Every public method takes a batch, (images, labels): a `Batch` or any pair. Images may be
uint8 (0..255) or floats in [0, 1], on any device; labels may be None for a model that is
not class-conditional, which ignores them. Conditioning is the encoder's and decoder's
business (`conditioning`); no caller needs to know whether a model has it.

No training here: the LightningModule `vae_lab.models.vae.VAE` adds the steps, logging,
the KL weight and the optimizers on top of this class. Objectives see the model through
the small interface `vae_lab.models.interface.VAEMaths`, priors through what
`Prior.attach` hands them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution

from vae_lab.data.batches import Batch
from vae_lab.models.components.conditioning import Conditioning, NoConditioning
from vae_lab.models.components.likelihoods import Likelihood
from vae_lab.models.components.prior import Prior
from vae_lab.models.terms import ELBOTerms, LogWeights

BatchLike = Batch | tuple[torch.Tensor, torch.Tensor | None]
Labels = torch.Tensor | int | None

CPU_DECODE_ROWS = 2048
GPU_DECODE_ROWS = 20_000


def decode_rows(device: torch.device) -> int:
    """Rows the importance-weighted bound decodes per call when `eval.decode_batch` is null.

    On a CPU, 2048 rows (x 784 logits, 6.4 MB) was the fastest size measured with
    benchmarks/iw_eval.py (docs/performance.md, "The importance-weighted bound against
    the decoder alone"), with the earlier softplus log-density scoring whole chunks. The
    likelihood now scores slices of a chunk (`VAECore.log_px_z`); the size was not
    re-tuned since. A GPU wants large calls.
    """
    return CPU_DECODE_ROWS if device.type == "cpu" else GPU_DECODE_ROWS


# Rows of decoder output the likelihood scores per call on a CPU (`VAECore.log_px_z`).
CPU_SCORE_ROWS = 512


class VAEOutput(NamedTuple):
    posterior: Distribution  # q(z|x), batch (B,), event (D,)
    z: torch.Tensor  # one reparameterized sample, (B, D)
    params: torch.Tensor  # decoder output, (B, C * params_per_pixel, H, W)


class VAECore(nn.Module):
    """A VAE assembled from parts built elsewhere (by Hydra, from config): its maths only.

    `input_shape` is the images' (C, H, W); `iw_decode_batch` the rows the importance-
    weighted bound decodes per call by default (None: `decode_rows` of the device).
    """

    _device_anchor: torch.Tensor  # empty; follows the module's device and dtype

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: Prior,
        conditioning: Conditioning | None = None,
        input_shape: Sequence[int] | None = None,
        iw_decode_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.likelihood = likelihood
        self.conditioning = conditioning if conditioning is not None else NoConditioning()
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.iw_decode_batch = iw_decode_batch
        self.input_memory_format = torch.contiguous_format  # channels_last: models/speed.py
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)
        self.prior = prior
        # after the encoder and conditioning exist: the VampPrior encodes with them
        prior.attach(
            encode=self.posterior_given_labels,
            input_shape=self.input_shape,
            num_classes=self.conditioning.num_classes if self.conditional else None,
        )

    # --- the networks, on prepared tensors --------------------------------------------------

    @property
    def conditional(self) -> bool:
        """Whether encoder and decoder see the label (conditioning=label)."""
        return bool(self.conditioning.conditions)

    def posterior(self, x: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """q(z|x, c) for float images x (B, C, H, W) and condition vectors c (or None): a
        diagonal Gaussian, or for a stack of latent layers a `LatentStack` over all of them
        (`vae_lab.models.components.latent_stack`)."""
        return self.encoder(x) if c is None else self.encoder(x, c)

    def posterior_given_labels(self, x: torch.Tensor, labels: torch.Tensor | None) -> Distribution:
        """q(z|x, y) for float images x (B, C, H, W) in the model's dtype and class labels
        y (B,), or None where the model is not class-conditional; with gradients."""
        return self.posterior(x, self._condition(labels, len(x)))

    def likelihood_params(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """The decoder's output at z (..., D): the parameters of p(x|z, c)."""
        return self.decoder(z) if c is None else self.decoder(z, c)

    def _inputs(self, batch: BatchLike) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x, c): float images on the model's device and in its dtype, and the condition."""
        images, labels = batch
        uint8 = images.dtype == torch.uint8
        anchor = self._device_anchor
        x = images.to(anchor.device, anchor.dtype)
        if uint8:
            x = x / 255.0
        return x.contiguous(memory_format=self.input_memory_format), self._condition(labels, len(x))

    def _condition(self, labels: Labels, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if isinstance(labels, int):
            labels = torch.full((n,), labels, dtype=torch.long)
        anchor = self._device_anchor
        c = self.conditioning(labels.to(anchor.device) if labels is not None else None)
        return None if c is None else c.to(anchor.dtype)

    # --- bounds --------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> VAEOutput:
        posterior = self.posterior(x, c)
        z = posterior.rsample()
        return VAEOutput(posterior, z, self.likelihood_params(z, c))

    def elbo_pass(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[ELBOTerms, Distribution]:
        """One reparameterized pass: the beta = 1 ELBO terms, and q(z|x, c)."""
        out = self(x, c)
        recon = -self.likelihood.log_prob(x, out.params)  # (B,)
        kl_layers = self.prior.kl_per_layer(out.posterior, out.z)  # (B, L), top layer first
        kl = kl_layers.sum(-1)  # (B,)
        return ELBOTerms(-(recon + kl), recon, kl, kl_layers), out.posterior

    def elbo_terms(self, batch: BatchLike) -> ELBOTerms:
        """The beta = 1 ELBO and its two terms per image, shape (B,) each, with gradients."""
        return self.elbo_pass(*self._inputs(batch))[0]

    def log_weights(
        self, x: torch.Tensor, c: torch.Tensor | None, posterior: Distribution, n: int
    ) -> LogWeights:
        """log p(x|z_i), log p(z_i), log q(z_i|x) for n draws z_i ~ q(z|x): each (n, B).
        For a stack of latent layers, one draw of every layer per sample, and log p(z_i),
        log q(z_i|x) summed over the layers."""
        z = posterior.rsample((n,))  # (n, B, D)
        log_px_z = self.log_px_z(x, self.likelihood_params(z, c))
        return LogWeights(z, log_px_z, self.prior.log_prob(z), posterior.log_prob(z))

    def log_px_z(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z_i) for decoder output params (n, B, C * P, H, W) at n draws (P: the
        likelihood's `params_per_pixel`): shape (n, B).

        On a CPU, scored a slice of the images at a time, about `CPU_SCORE_ROWS` rows a
        slice: the likelihood makes several passes over its rows (Bernoulli: |l|, a
        sigmoid, products, x . l), and a slice of them stays in the core's cache between
        passes where a whole chunk (2048 rows x 784, 6.4 MB) goes back to memory
        (docs/performance.md measures the two).
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
        rows (chunk x B; default `iw_decode_batch`, else `decode_rows(device)`), so memory
        stays bounded for k = 5000. The k log-weights (k x B floats) are kept and reduced
        with a log-sum-exp, which subtracts their maximum first: the weights themselves
        (e^-250 and below) would underflow.

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
    def encode(self, batch: BatchLike) -> Distribution:
        """q(z|x, y) for a batch: a diagonal Gaussian (or a stack of layers), `.mean` (B, D)
        its posterior means."""
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
        anchor = self._device_anchor
        z = z.to(anchor.device, anchor.dtype)
        params = self.likelihood_params(z, self._condition(labels, z.shape[0]))
        return self.likelihood.sample(params) if pixels else self.likelihood.mean(params)

    @torch.no_grad()
    def complete(self, z_top: torch.Tensor) -> torch.Tensor:
        """A whole latent code (..., D) from one of the top layer (..., prior.layer_dims[0]),
        on the model's device: the layers below at the prior's conditional means given it
        (`Prior.complete`); for a single latent layer, z_top itself."""
        anchor = self._device_anchor
        return self.prior.complete(z_top.to(anchor.device, anchor.dtype))

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
