"""Process-wide torch settings: `cfg.runtime`, and two environment fixes for CPU runs."""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import DictConfig

NVML_CHECK_VAR = "PYTORCH_NVML_BASED_CUDA_CHECK"
WAIT_POLICY_VAR = "OMP_WAIT_POLICY"


def apply_wait_policy(policy: str | None) -> None:
    """`runtime.wait_policy`: how torch's CPU threads wait, as OMP_WAIT_POLICY.

    torch's intra-op threads are OpenMP threads, one per core by default, and by default
    they spin for a while at every barrier. Alone on its cores that is fastest. When other
    work shares the cores (a second run, a test suite), a spinning thread burns the time
    slice of the thread it waits for, and every parallel op stalls; passive waits (the
    threads sleep at once) avoid that, at some cost to a run alone. null leaves OpenMP's
    default (spin 300,000 times, then sleep). benchmarks/side_by_side.py measures it
    (docs/performance.md, "Two runs on one machine").

    OMP_WAIT_POLICY set in the environment wins over the config. The OpenMP runtime reads
    the variable once, when torch loads, so this acts only in a process that has not
    imported torch yet: `train` and the classifier call it before they import torch.
    """
    if policy is None:
        return
    if WAIT_POLICY_VAR in os.environ:
        if os.environ[WAIT_POLICY_VAR].upper() != policy.upper():
            logging.getLogger(__name__).info(
                "%s=%s from the environment, not runtime.wait_policy=%s",
                WAIT_POLICY_VAR,
                os.environ[WAIT_POLICY_VAR],
                policy,
            )
        return
    if "torch" in sys.modules:
        logging.getLogger(__name__).warning(
            "runtime.wait_policy=%s comes too late in this process (torch is loaded); "
            "set %s=%s in the environment instead",
            policy,
            WAIT_POLICY_VAR,
            policy.upper(),
        )
        return
    os.environ[WAIT_POLICY_VAR] = policy.upper()


def apply_runtime(cfg: DictConfig) -> None:
    """Process-wide torch settings from `cfg.runtime`."""
    import torch

    # Denormal floats (below ~1e-38) appear in Adam's state and activations as training
    # goes on and are slow on CPUs, so epochs slow down as training goes on
    # (docs/performance.md). Flushing them to zero costs no accuracy.
    torch.set_flush_denormal(cfg.runtime.flush_denormal)
    if cfg.runtime.num_threads is not None:
        torch.set_num_threads(cfg.runtime.num_threads)
    if cfg.runtime.float32_matmul_precision is not None:
        torch.set_float32_matmul_precision(cfg.runtime.float32_matmul_precision)


def stop_nvml_polling(device_type: str) -> None:
    """Let `torch.cuda.is_available()` be cheap again in a run that stays on the CPU.

    `import lightning` sets PYTORCH_NVML_BASED_CUDA_CHECK=1 for the whole process, so that
    asking whether there is a GPU never initializes CUDA (which would break fork()). With
    it set, and CUDA never initialized, every `torch.cuda.is_available()` tries to load
    NVML through ctypes again, and torch's optimizers ask on every `step()`
    (`Optimizer._accelerator_graph_capture_health_check`), a cost py-spy found in a small
    model's training step (docs/performance.md). A CUDA build of torch on a machine
    without a GPU (the usual pip install) pays it on every step; the plain loop a user
    writes, without Lightning, does not.

    A run on a GPU initializes CUDA, after which torch caches the device count, so only a
    CPU run changes the variable, and only from the value Lightning set.
    """
    if device_type == "cpu" and os.environ.get(NVML_CHECK_VAR) == "1":
        os.environ[NVML_CHECK_VAR] = "0"
