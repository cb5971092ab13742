"""Process-wide torch settings: `cfg.runtime`, and one environment fix for CPU runs."""

from __future__ import annotations

import os

from omegaconf import DictConfig

NVML_CHECK_VAR = "PYTORCH_NVML_BASED_CUDA_CHECK"


def apply_runtime(cfg: DictConfig) -> None:
    """Process-wide torch settings from `cfg.runtime`."""
    import torch

    # Denormal floats (below ~1e-38) appear in Adam's state and activations as training
    # goes on and are slow on CPUs: measured here, a plain MLP epoch went from 2.3 s to
    # 3.2 s by the third epoch without this. Flushing them to zero costs no accuracy.
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
    (`Optimizer._accelerator_graph_capture_health_check`). Measured with timeit on the
    2-core CPU machine: 91-118 us per call with the variable set, 1.7 us without; found
    with py-spy as 7% of a small model's training step. A CUDA build of torch on a machine
    without a GPU (the usual pip install) pays it on every step; the plain loop a user
    writes, without Lightning, does not.

    A run on a GPU initializes CUDA, after which torch caches the device count, so only a
    CPU run changes the variable, and only from the value Lightning set.
    """
    if device_type == "cpu" and os.environ.get(NVML_CHECK_VAR) == "1":
        os.environ[NVML_CHECK_VAR] = "0"
