"""The cost of the importance-weighted bound against the decoder alone on the same samples.

    python benchmarks/iw_eval.py [--k 1000] [--images 500] [--repeats 3] [--model mlp]
                                 [--likelihood bernoulli] [--decode-batch N [N ...]]
                                 [--threads 2] [--device cpu] [--out outputs/bench.json]

Evaluating L_k decodes k samples of z for every image; everything else (the encoder, the
draws, log q, log p(z), the likelihood's log-density, the log-sum-exp) is overhead on top
of those decoder passes. This times `vae_lab.evaluation.metrics.evaluate` (what
`python -m vae_lab.evaluate` runs, ELBO and active units included) on the first `--images`
real test images, and the decoder alone on latent batches of exactly the shapes evaluate
decoded, recorded from its calls: the bound's chunks of `eval.decode_batch` rows (null: the
device's default; or each `--decode-batch` given), the ELBO's pass, and the dequantized
bound's where bits per dim need one. The two alternate `--repeats` times. It prints and
stores (key `iw_eval` of `--out`, merged into what is there) the median seconds of each,
their ratio and the bound itself, per chunk size; `ratio_cpu` is the same ratio of CPU
seconds, which other work on a shared machine does not move (read it at `--threads 1`).
The model is built from the real config with its initial weights: the cost of a pass does
not depend on the values of the weights.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_json import store
from hydra import compose, initialize_config_dir

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.batches import IndexBatches
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.evaluation.metrics import evaluate
from vae_lab.models.build import build_vae
from vae_lab.models.vae import VAE, decode_rows

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


Shapes = list[tuple[torch.Size, ...]]


def decoder_calls(model: VAE) -> tuple[Shapes, Callable[[], None]]:
    """Record the shapes of the inputs of every decoder call (z, and the condition of a
    conditional model); returns the list and the function that stops recording."""
    shapes: Shapes = []

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        shapes.append(tuple(t.shape for t in inputs))

    return shapes, model.decoder.register_forward_pre_hook(record).remove


@torch.no_grad()
def decoder_alone(decoder: torch.nn.Module, shapes: Shapes) -> tuple[float, float]:
    """Wall and CPU seconds of the decoder's passes on inputs of these shapes."""
    device = next(decoder.parameters()).device
    wall = cpu = 0.0
    for call in shapes:
        inputs = [torch.randn(shape, device=device) for shape in call]
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        decoder(*inputs)
        _sync(device)
        wall, cpu = wall + time.perf_counter() - t, cpu + time.process_time() - c
    return wall, cpu


def _measure(
    model: VAE,
    images: torch.Tensor,
    labels: torch.Tensor,
    args: argparse.Namespace,
    decode_batch: int,
) -> dict[str, object]:
    """evaluate and the decoder alone, alternated `--repeats` times at one chunk size."""
    device = images.device
    full, alone, full_cpu, alone_cpu, bounds = [], [], [], [], []
    shapes, stop_recording = decoder_calls(model)
    for repeat in range(args.repeats):
        torch.manual_seed(0)
        batches = IndexBatches(images, labels, batch_size=args.batch, shuffle=False)
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        result = evaluate(model, batches, args.k, decode_batch, device)
        _sync(device)
        full.append(time.perf_counter() - t)
        full_cpu.append(time.process_time() - c)
        bounds.append(result.iw_nll)
        if repeat == 0:
            stop_recording()  # every call evaluate made, the ELBO's and bits' included
        wall, cpu = decoder_alone(model.decoder, shapes)
        alone.append(wall)
        alone_cpu.append(cpu)
    assert all(math.isfinite(b) for b in bounds)
    ratios = [f / a for f, a in zip(full, alone, strict=True)]
    cpu_ratios = [f / a for f, a in zip(full_cpu, alone_cpu, strict=True)]
    return {
        "decode_batch": decode_batch,
        "evaluate_s": statistics.median(full),
        "decoder_alone_s": statistics.median(alone),
        "ratio": statistics.median(ratios),
        "iw_nll_seed0": bounds[0],
        "ratio_cpu": statistics.median(cpu_ratios),
        "runs": {
            "evaluate_s": full,
            "decoder_alone_s": alone,
            "evaluate_cpu_s": full_cpu,
            "decoder_alone_cpu_s": alone_cpu,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100, help="images per batch (eval.batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--likelihood", default="bernoulli")
    parser.add_argument(
        "--decode-batch", type=int, nargs="+", default=None, help="rows per decoder call"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=[f"model={args.model}", f"likelihood={args.likelihood}"])
    data = FashionMNISTDataModule(val_size=cfg.data.val_size)
    data.load()
    images, labels = data.splits["test"]
    images, labels = images[: args.images].to(device), labels[: args.images].to(device)
    torch.manual_seed(0)  # the same initial weights every time
    model = build_vae(cfg, data.input_shape).to(device).eval()
    sizes = args.decode_batch or [cfg.eval.decode_batch or decode_rows(device)]
    rows = [_measure(model, images, labels, args, size) for size in sizes]
    figures = {
        "model": args.model,
        "likelihood": args.likelihood,
        "k": args.k,
        "images": len(images),
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "device": str(device),
        **rows[0],
        "by_decode_batch": rows,
    }
    store(args.out, "iw_eval", figures)


if __name__ == "__main__":
    main()
