"""Slow tier (`make test-slow`): short training on the real Fashion-MNIST when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ComposeFn
from vae_lab.data import files
from vae_lab.train import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not files._find_in(files.SYSTEM_DIR), reason="real Fashion-MNIST not installed"
    ),
]


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_learns_on_the_real_data(compose_cfg: ComposeFn, tmp_path: Path, model: str) -> None:
    cfg = compose_cfg(
        f"model={model}",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=150",
        f"paths.output_dir={tmp_path / 'run'}",
        tiny=False,
    )
    summary = train(cfg)
    # An untrained Bernoulli decoder scores about 784 * log 2 = 543 nats; 150 steps of
    # learning bring the test reconstruction well below that.
    assert summary["test"]["recon"] < 300
    assert 0 < summary["test"]["kl"] < 60
