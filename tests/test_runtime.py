"""Process-wide settings: the NVML-based GPU check that `import lightning` turns on."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ComposeFn
from vae_lab.run.runtime import NVML_CHECK_VAR, stop_nvml_polling
from vae_lab.train import train


@pytest.mark.parametrize(
    ("before", "device", "after"),
    [("1", "cpu", "0"), ("1", "cuda", "1"), ("1", "mps", "1"), (None, "cpu", None)],
)
def test_only_a_cpu_run_turns_off_the_check_lightning_turned_on(
    monkeypatch: pytest.MonkeyPatch, before: str | None, device: str, after: str | None
) -> None:
    if before is None:
        monkeypatch.delenv(NVML_CHECK_VAR, raising=False)
    else:
        monkeypatch.setenv(NVML_CHECK_VAR, before)
    stop_nvml_polling(device)
    assert os.environ.get(NVML_CHECK_VAR) == after


def test_a_cpu_training_run_turns_it_off(
    compose_cfg: ComposeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NVML_CHECK_VAR, "1")  # as `import lightning` leaves it; restored after
    train(compose_cfg("trainer.max_epochs=1", "eval.k=0"))
    assert os.environ[NVML_CHECK_VAR] == "0"
