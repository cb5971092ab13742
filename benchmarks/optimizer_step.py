"""Milliseconds per Adam step on a model's parameters: op by op, `foreach`, and `fused`.

    python benchmarks/optimizer_step.py [--model mlp] [--steps 300] [--repeats 3]

The parameters are those of `model=<model>` at latent_dim 16 with random gradients; each
implementation takes 20 steps to warm up, then `--steps` timed ones, and the three
alternate `--repeats` times (medians reported). `configs/optimizer/adam.yaml` picks
`fused: true` from this comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vae_lab.cli.entry import CONFIG_DIR

IMPLEMENTATIONS = {
    "op by op": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"fused": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as the framework's runtime.flush_denormal does
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={args.model}", "paths.output_dir=unused"])
    shape = [1, 28, 28]
    encoder = instantiate(cfg.model.encoder, input_shape=shape, _convert_="all")
    decoder = instantiate(cfg.model.decoder, output_shape=shape, _convert_="all")
    params = [*encoder.parameters(), *decoder.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    ms: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.repeats):
        for name, options in IMPLEMENTATIONS.items():
            optimizer = torch.optim.Adam(params, lr=1e-3, **options)
            for _ in range(20):
                optimizer.step()
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            ms[name].append(1e3 * (time.perf_counter() - start) / args.steps)
    count = sum(p.numel() for p in params)
    print(f"model={args.model}: {count:,} parameters in {len(params)} tensors, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for name, times in ms.items():
        each = ", ".join(f"{t:.3f}" for t in times)
        print(f"  {name:9} {statistics.median(times):.3f} ms per step ({each})")


if __name__ == "__main__":
    main()
