"""Optimizers that torch.optim does not have; configs name them with `_target_` like any other."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class AdamNormGrad(torch.optim.Adam):
    """Adam on gradients that are first divided by their own L2 norm, per parameter tensor.

    The optimizer of Tomczak & Welling 2018 (VampPrior; `AdamNormGrad` in
    jmtomczak/vae_vampprior, utils/optimizer.py), which the published Fashion-MNIST NLL
    figures were trained with: each tensor's gradient g becomes g / (||g||_2 + 1e-7) before
    Adam's moment updates, so every layer moves by a step that does not depend on the scale
    of its gradient. Weight decay, where set, is added after the normalization, as there.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        norm_eps: float = 1e-7,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.norm_eps = norm_eps

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if grads:
            norms = torch._foreach_norm(grads)  # one kernel for all tensors
            torch._foreach_div_(grads, torch._foreach_add(norms, self.norm_eps))
        super().step()
        return loss
