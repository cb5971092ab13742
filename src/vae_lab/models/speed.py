"""Speed switches of `cfg.runtime` that act on a built model: torch.compile, channels-last.

Both are off by default: on this project's 2-core CPU neither helped (docs/performance.md,
"Speed switches", has the measurements); they are for GPUs, where they can.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from vae_lab.models.vae import VAE


def apply_speedups(model: VAE, runtime: DictConfig) -> VAE:
    """Apply `runtime.channels_last` and `runtime.compile` to `model`, in place."""
    if runtime.get("channels_last"):
        # NHWC: convolutions on GPUs (tensor cores) and oneDNN prefer it. The batches follow
        # in VAECore._inputs, so the first convolution does not convert its input back.
        model.to(memory_format=torch.channels_last)
        model.input_memory_format = torch.channels_last
    if runtime.get("compile"):
        # Module.compile() compiles forward in place: state_dict keys keep their names, so
        # checkpoints load into an uncompiled model too. Encoder and decoder are compiled
        # apart because the IW bound calls the decoder alone, on (k, B, D) inputs.
        model.encoder.compile()
        model.decoder.compile()
    return model
