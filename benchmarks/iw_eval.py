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
bound's where bits per dim need one. The two alternate batch by batch (`_measure`), and
the whole is done `--repeats` times. It prints and
stores (key `iw_eval` of `--out`, merged into what is there) the median seconds of each,
their ratio and the bound itself, per chunk size; `ratio_cpu` is the same ratio of CPU
seconds, which other processes on the machine do not move (read it at `--threads 1`), and
`ratio_inside` divides evaluate's seconds by those it spent inside its own decoder calls
(timed by hooks), which a virtual machine's drift moves least: both are timed in the same
seconds.
The model is built from the real config with its initial weights: the cost of a pass does
not depend on the values of the weights.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
from bench_json import store
from hydra import compose, initialize_config_dir

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.batches import IndexBatches
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.evaluation.metrics import evaluate
from vae_lab.models.build import build_vae
from vae_lab.models.core import decode_rows
from vae_lab.models.vae import VAE

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


Shapes = list[tuple[torch.Size, ...]]


class DecoderCalls:
    """While open: the input shapes of every decoder call (z, and the condition of a
    conditional model) and the seconds between entering and leaving the calls. Those are
    the calls' time on a CPU only: on a GPU they are not synchronized (a synchronize
    around each would slow evaluate itself), so `_measure` reports none there."""

    def __init__(self, model: VAE) -> None:
        self.shapes: Shapes = []
        self.seconds = 0.0
        self._hooks = [
            model.decoder.register_forward_pre_hook(self._enter),
            model.decoder.register_forward_hook(self._leave),
        ]

    def _enter(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.shapes.append(tuple(t.shape for t in inputs))
        self._start = time.perf_counter()

    def _leave(self, module: torch.nn.Module, inputs: object, output: object) -> None:
        self.seconds += time.perf_counter() - self._start

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


@torch.no_grad()
def decoder_alone(decoder: torch.nn.Module, shapes: Shapes) -> tuple[float, float]:
    """Wall and CPU seconds of the decoder's passes on inputs of these shapes."""
    device = next(decoder.parameters()).device
    draws = torch.Generator(device).manual_seed(1)  # not the global one evaluate draws from
    wall = cpu = 0.0
    for call in shapes:
        inputs = [torch.randn(shape, device=device, generator=draws) for shape in call]
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
    """evaluate and the decoder alone at one chunk size, `--repeats` times.

    The two alternate batch by batch: evaluate on one batch of images, then the decoder
    alone on the shapes that batch decoded. A shared virtual machine's speed drifts by
    tens of percent over seconds (the same decoder loop, alone on an idle guest, ran at
    28-40 ms a call from one second to the next), and pairing each batch's two timings a
    second apart lets that drift hit both alike; timing all of evaluate, then all of the
    decoder, put a 10-second gap between the two halves of a pair.
    """
    device = images.device
    full, alone, inside, full_cpu, alone_cpu, bounds = [], [], [], [], [], []
    for _ in range(args.repeats):
        torch.manual_seed(0)
        wall = cpu = wall_alone = cpu_alone = wall_inside = 0.0
        nll = 0.0
        for batch in IndexBatches(images, labels, batch_size=args.batch, shuffle=False):
            calls = DecoderCalls(model)
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            result = evaluate(model, [batch], args.k, decode_batch, device)
            _sync(device)
            wall, cpu = wall + time.perf_counter() - t, cpu + time.process_time() - c
            calls.close()  # every call evaluate made, the ELBO's and bits' included
            wall_inside += calls.seconds
            nll += result.iw_nll * len(batch.images)
            w, c_alone = decoder_alone(model.decoder, calls.shapes)
            wall_alone, cpu_alone = wall_alone + w, cpu_alone + c_alone
        full.append(wall)
        full_cpu.append(cpu)
        alone.append(wall_alone)
        inside.append(wall_inside)
        alone_cpu.append(cpu_alone)
        bounds.append(nll / len(images))
    assert all(math.isfinite(b) for b in bounds)
    ratios = [f / a for f, a in zip(full, alone, strict=True)]
    cpu_ratios = [f / a for f, a in zip(full_cpu, alone_cpu, strict=True)]
    ratio_inside = (  # DecoderCalls times the calls on a CPU only
        statistics.median(f / i for f, i in zip(full, inside, strict=True))
        if device.type == "cpu"
        else None
    )
    return {
        "decode_batch": decode_batch,
        "evaluate_s": statistics.median(full),
        "decoder_alone_s": statistics.median(alone),
        "ratio": statistics.median(ratios),
        "iw_nll_seed0": bounds[0],
        "ratio_cpu": statistics.median(cpu_ratios),
        "ratio_inside": ratio_inside,
        "runs": {
            "evaluate_s": full,
            "decoder_alone_s": alone,
            "decoder_inside_s": inside,
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
