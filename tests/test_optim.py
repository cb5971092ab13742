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


def test_the_default_adam_is_fused_and_moves_as_the_op_by_op_adam() -> None:
    """configs/optimizer/adam.yaml and adamw.yaml pick torch's fused update; over steps of
    real gradients it lands where torch's reference (single-tensor, op-by-op) Adam does."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from vae_lab.cli.entry import CONFIG_DIR

    for name in ("adam", "adamw"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"optimizer={name}", "paths.output_dir=unused"])
        torch.manual_seed(0)
        ours = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
        ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        opt = instantiate(cfg.optimizer)(params=ours)
        assert opt.defaults["fused"] is True
        ref_opt = type(opt)(ref, lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
                            foreach=False, fused=False)  # fmt: skip
        for _ in range(20):
            x = torch.randn(7, 5)
            _quadratic_grads(ours, x)
            _quadratic_grads(ref, x)
            opt.step()
            ref_opt.step()
        for a, b in zip(ours, ref, strict=True):
            assert not torch.equal(a, b.detach().clone().zero_())  # it moved
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_resumes_under_another_optimizer_implementation() -> None:
    """`optimizer.fused` and `foreach` say how the update is computed, not what it is: a
    checkpoint from before the fused default resumes (resume.differences is silent), while a
    learning rate that differs is still named."""
    from vae_lab.run.resume import differences

    saved = {"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}}
    today = {"optimizer": {**saved["optimizer"], "fused": True, "foreach": None}}
    assert differences(saved, today) == []
    other_lr = {"optimizer": {**today["optimizer"], "lr": 2e-3}}
    assert differences(saved, other_lr) == ["optimizer.lr: checkpoint 0.001, command 0.002"]
