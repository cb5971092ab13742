"""Process-wide settings: the NVML-based GPU check that `import lightning` turns on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ComposeFn, tiny_overrides
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


@pytest.mark.slow  # a run of its own
def test_a_cpu_training_run_turns_it_off(
    compose_cfg: ComposeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NVML_CHECK_VAR, "1")  # as `import lightning` leaves it; restored after
    train(compose_cfg("trainer.max_epochs=1", "eval.k=0"))
    assert os.environ[NVML_CHECK_VAR] == "0"


@pytest.mark.cli  # a new process: OpenMP reads its settings once, when it loads
@pytest.mark.parametrize(
    ("policy", "environment", "openmp_read"),
    [
        ("null", None, "GOMP_SPINCOUNT = '300000'"),  # OpenMP's default: spin, then sleep
        ("passive", None, "GOMP_SPINCOUNT = '0'"),  # sleep at once
        ("passive", "ACTIVE", "OMP_WAIT_POLICY = 'ACTIVE'"),  # the environment wins
    ],
)
def test_the_wait_policy_reaches_openmp_before_torch_loads(
    tiny_data: Path, tmp_path: Path, policy: str, environment: str | None, openmp_read: str
) -> None:
    # OMP_DISPLAY_ENV makes the OpenMP runtime print the settings it read when it loaded
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if environment is not None:
        env["OMP_WAIT_POLICY"] = environment
    args = [*tiny_overrides(tiny_data, tmp_path / "run"), "trainer.max_epochs=1", "eval.k=0"]
    result = subprocess.run(
        [sys.executable, "-m", "vae_lab.train", *args, f"runtime.wait_policy={policy}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert openmp_read in result.stderr
    assert "comes too late" not in result.stderr + result.stdout
