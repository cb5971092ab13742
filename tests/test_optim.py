"""AdamNormGrad: Adam on per-tensor L2-normalized gradients (the VampPrior code's optimizer)."""

from __future__ import annotations

import torch

from tests.conftest import ComposeFn
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
        start = [p.detach().clone() for p in ours]
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
        for a, b, a0 in zip(ours, ref, start, strict=True):
            assert not torch.equal(a, a0)  # it moved
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


def test_a_resumed_optimizer_is_fused_as_configured_now(compose_cfg: ComposeFn) -> None:
    """The optimizer state of a run saved before the fused default (fused None) restores
    into today's fused Adam as fused (VAE.on_load_checkpoint), so that its step matches
    what the optimizer was built for: a gradient scaler's step, which passes its scale to a
    fused step, works. Without the rewrite the restored group says unfused and it fails."""
    from vae_lab.models.build import build_vae

    vae = build_vae(compose_cfg(), [1, 28, 28])
    old = torch.optim.Adam(vae.parameters(), lr=1e-3)  # as the optimizer config was before
    for p in vae.parameters():
        p.grad = torch.randn_like(p)
    old.step()
    checkpoint = {"optimizer_states": [old.state_dict()]}
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["fused"] is None
    vae.on_load_checkpoint(checkpoint)
    optimizer = vae.configure_optimizers()
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    assert optimizer.param_groups[0]["fused"] is True
    scaler = torch.amp.GradScaler("cpu")
    loss = sum((p**2).sum() for p in vae.parameters())
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # a fused step given the scale: refused by an unfused one


def test_no_fused_optimizer_where_lightning_cannot_clip_it(compose_cfg: ComposeFn) -> None:
    """Under 16-mixed with gradient clipping Lightning refuses a fused optimizer (it unscales
    its own gradients), so the module builds it unfused there; elsewhere fused."""
    from types import SimpleNamespace

    from vae_lab.models.build import build_vae

    vae = build_vae(compose_cfg(), [1, 28, 28])
    for precision, clip, fused in [
        ("16-mixed", 1.0, False),
        ("16-mixed", None, True),
        ("bf16-mixed", 1.0, True),
        ("32-true", 1.0, True),
    ]:
        vae._trainer = SimpleNamespace(precision=precision, gradient_clip_val=clip)
        assert vae.configure_optimizers().defaults["fused"] is fused, (precision, clip)
