"""The cost of the importance-weighted bound against the decoder alone on the same samples.

    python benchmarks/iw_eval.py [--k 1000] [--images 500] [--repeats 3] [--model mlp]
                                 [--threads 2] [--device cpu] [--out outputs/bench.json]

Evaluating L_k decodes k samples of z for every image; everything else (the encoder, the
draws, log q, log p(z), the likelihood's log-density, the log-sum-exp) is overhead on top
of those decoder passes. This times `vae_lab.evaluation.metrics.evaluate` (what
`python -m vae_lab.evaluate` runs, ELBO and active units included) on the first `--images`
real test images, and the decoder alone on latent batches of exactly the shapes the bound
decodes (chunks of `eval.decode_batch` rows), alternating the two `--repeats` times. It
prints and stores (key `iw_eval` of `--out`, merged into what is there) the median
seconds of each, their ratio and the bound itself. The model is built from the real config
with its initial weights: the cost of a pass does not depend on the values of the weights.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.batches import IndexBatches
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.evaluation.metrics import evaluate
from vae_lab.models.build import build_vae

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def decoder_alone(
    decoder: torch.nn.Module, dim: int, n_images: int, k: int, decode_batch: int, batch: int
) -> float:
    """Seconds of the decoder's passes over the chunks the bound decodes, nothing else."""
    device = next(decoder.parameters()).device
    seconds = 0.0
    for start in range(0, n_images, batch):
        b = min(batch, n_images - start)
        chunk = max(1, min(k, decode_batch // b))
        for done in range(0, k, chunk):
            z = torch.randn(min(chunk, k - done), b, dim, device=device)
            _sync(device)
            t = time.perf_counter()
            decoder(z)
            _sync(device)
            seconds += time.perf_counter() - t
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100, help="images per batch (eval.batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=[f"model={args.model}"])
    data = FashionMNISTDataModule(val_size=cfg.data.val_size)
    data.load()
    images, labels = data.splits["test"]
    images, labels = images[: args.images].to(device), labels[: args.images].to(device)
    model = build_vae(cfg, data.input_shape).to(device).eval()
    decode_batch = cfg.eval.decode_batch
    full, alone, bounds = [], [], []
    for _ in range(args.repeats):
        torch.manual_seed(0)
        batches = IndexBatches(images, labels, batch_size=args.batch, shuffle=False)
        _sync(device)
        t = time.perf_counter()
        result = evaluate(model, batches, args.k, decode_batch, device)
        _sync(device)
        full.append(time.perf_counter() - t)
        bounds.append(result.iw_nll)
        alone.append(
            decoder_alone(
                model.decoder, cfg.latent_dim, len(images), args.k, decode_batch, args.batch
            )
        )
    ratios = [f / a for f, a in zip(full, alone, strict=True)]
    figures = {
        "model": args.model,
        "k": args.k,
        "images": len(images),
        "batch": args.batch,
        "decode_batch": decode_batch,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "evaluate_s": statistics.median(full),
        "decoder_alone_s": statistics.median(alone),
        "ratio": statistics.median(ratios),
        "iw_nll_seed0": bounds[0],
        "runs": {"evaluate_s": full, "decoder_alone_s": alone},
    }
    assert all(math.isfinite(b) for b in bounds)
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(args.out.read_text()) if args.out.is_file() else {}
    merged["iw_eval"] = figures
    args.out.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    main()
