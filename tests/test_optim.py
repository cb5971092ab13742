"""AdamNormGrad: Adam on per-tensor L2-normalized gradients (the VampPrior code's optimizer)."""

from __future__ import annotations

import torch

from vae_lab.models.optim import AdamNormGrad


def _quadratic_grads(params: list[torch.nn.Parameter], x: torch.Tensor) -> None:
    w, b = params
    for p in params:
        p.grad = None
    ((x @ w + b) ** 2).sum().backward()


def test_matches_adam_fed_normalized_gradients() -> None:
    """Reference: torch's own Adam, given each tensor's gradient divided by its norm by hand."""
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3) * 50)]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt, ref_opt = AdamNormGrad(ours, lr=0.05), torch.optim.Adam(ref, lr=0.05)
    for _ in range(6):
        x = torch.randn(7, 5)
        _quadratic_grads(ours, x)
        _quadratic_grads(ref, x)
        for p in ref:
            assert p.grad is not None
            p.grad /= torch.linalg.vector_norm(p.grad) + 1e-7
        opt.step()
        ref_opt.step()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_step_does_not_depend_on_the_gradient_scale() -> None:
    """Scaling the loss by 1e5 leaves every update the same (plain Adam's eps would not)."""
    torch.manual_seed(1)
    start = [torch.randn(4, 2), torch.randn(2)]
    x = torch.randn(3, 4)
    finals = []
    for scale in (1e-2, 1e3):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = AdamNormGrad(params, lr=0.1, eps=1e-3)
        for _ in range(3):
            for p in params:
                p.grad = None
            (scale * ((x @ params[0] + params[1]) ** 2).sum()).backward()
            opt.step()
        finals.append(params)
    for a, b in zip(*finals, strict=True):
        torch.testing.assert_close(a, b)
