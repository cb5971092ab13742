"""Seconds per training epoch: `vae_lab.train` against a plain PyTorch loop, same everything.

    python benchmarks/epoch_time.py [--models mlp conv] [--epochs 3] [--repeats 3] [--out F]
                                    [--variants compile bf16 channels_last] [--device cuda]

For each model, framework and plain runs alternate `--repeats` times. The framework run is
the real command (`python -m vae_lab.train model=...`, default logging and callbacks, on
the real data) with an EpochTimer callback added; validation runs as usual and is timed
apart. The plain loop holds the same training images as one float tensor, cuts batches by
indexing, and trains the same encoder/decoder with Adam: the loop a user would write.
The first epoch of every run is a warm-up and not counted; medians are reported, and the
ratio is the median of the ratios of adjacent framework/plain pairs. Start-up (command to
first training step) is compared with a bare `python -c "import lightning"` timed just
before each framework run, the same way. The plain loop runs in this process, which has
imported Lightning; Lightning's NVML-based GPU check is turned off for it as a loop without
Lightning never has it.

`--variants` also times the framework with a speed switch on (each against the same plain
loop): `compile` (runtime.compile=true), `bf16` (trainer.precision=bf16-mixed) and
`channels_last` (runtime.channels_last=true, conv only).

`--device cuda` runs both on the GPU (`trainer=gpu`; the plain loop holds the data and
cuts its batches on the GPU too, as the framework does) and waits for the GPU at each
epoch's end, so the seconds are the GPU's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.run.runtime import stop_nvml_polling

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "compile": ["runtime.compile=true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "channels_last": ["runtime.channels_last=true"],
}


def framework_run(
    model: str, epochs: int, out_dir: Path, extra: list[str] | None = None, device: str = "cpu"
) -> dict:
    """One `python -m vae_lab.train` run (plus `extra` overrides): timing.json, start-up."""
    run_dir = out_dir / f"{model}-{time.time_ns()}"
    trainer = "trainer=cpu" if device == "cpu" else "trainer=gpu"
    cmd = [
        sys.executable, "-m", "vae_lab.train", f"model={model}", trainer,
        f"trainer.max_epochs={epochs}", f"hydra.run.dir={run_dir}",
        "+callbacks.epoch_timer._target_=vae_lab.callbacks.timing.EpochTimer", *(extra or []),
    ]  # fmt: skip
    started = time.time()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    timing = json.loads((run_dir / "timing.json").read_text())
    timing["startup_s"] = timing["first_step_unix_time"] - started
    return timing


def plain_run(model: str, epochs: int, flush_denormal: bool = True, device: str = "cpu") -> dict:
    """The same networks, data and optimizer in a hand-written loop.

    With `flush_denormal` as the framework sets it by default (the fair comparison of
    framework overhead); without it, the loop as most users write it.
    """
    torch.set_flush_denormal(flush_denormal)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", "paths.output_dir=unused"])
    datamodule = instantiate(cfg.data)
    datamodule.load()
    # Instantiating the data module imported Lightning, which turns on its NVML-based GPU
    # check for this process; a hand-written loop never imports Lightning, so undo it
    # (as `vae_lab.train` does for its CPU runs), or Adam would pay ~100 us per step here.
    stop_nvml_polling(device)
    images = datamodule.splits["train"][0].to(device).float() / 255  # (N, 1, 28, 28), [0, 1]
    shape = list(images.shape[1:])
    torch.manual_seed(0)
    encoder = instantiate(cfg.model.encoder, input_shape=shape, _convert_="all").to(device)
    decoder = instantiate(cfg.model.decoder, output_shape=shape, _convert_="all").to(device)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.optimizer.lr)
    batch_size = cfg.data.batch_size
    seconds = []
    for _ in range(epochs):
        start = time.time()
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(images), batch_size):
            x = images[order[i : i + batch_size]]
            q = encoder(x)
            logits = decoder(q.rsample())
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
            kl = 0.5 * (q.mean**2 + q.variance - 1 - q.variance.log()).sum(-1)
            loss = (bce.flatten(1).sum(-1) + kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.time() - start)
    return {"train_s_per_epoch": seconds, "steps_per_epoch": -(-len(images) // batch_size)}


def lightning_import_s() -> float:
    start = time.time()
    subprocess.run([sys.executable, "-c", "import lightning"], check=True)
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench.json")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch finds no GPU here; leave --device out for the CPU")

    lightning_import_s()  # warms the file cache, as the framework runs find it
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vae_lab_bench_") as tmp:
        for model in args.models:
            framework, plain, naive, startup, rss, imports = [], [], [], [], [], []
            pair_ratios: list[float] = []
            variants = [v for v in args.variants if v != "channels_last" or model == "conv"]
            switched: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.repeats):  # alternate, so drifts in machine speed hit both
                for v in variants:
                    timing = framework_run(model, args.epochs, Path(tmp), VARIANTS[v], args.device)
                    switched[v] += timing["train_s_per_epoch"][1:]
                imports.append(lightning_import_s())  # beside each start-up: same machine state
                f = framework_run(model, args.epochs, Path(tmp), device=args.device)
                framework += f["train_s_per_epoch"][1:]
                startup.append(f["startup_s"])
                rss.append(f["peak_rss_mb"])
                p = plain_run(model, args.epochs, device=args.device)["train_s_per_epoch"][1:]
                plain += p
                # A ratio per adjacent pair: a drift in machine speed between repeats
                # (seen here: 2x over minutes on a shared host) cancels out.
                pair_ratios.append(
                    statistics.median(f["train_s_per_epoch"][1:]) / statistics.median(p)
                )
                naive += plain_run(model, args.epochs, False, args.device)["train_s_per_epoch"][1:]
            steps, f_s, p_s = (
                f["steps_per_epoch"],
                statistics.median(framework),
                statistics.median(plain),
            )
            images = f["images_per_epoch"]
            results[model] = {
                "framework_s_per_epoch": round(f_s, 3),
                "plain_s_per_epoch": round(p_s, 3),
                "plain_without_flush_denormal_s_per_epoch": round(statistics.median(naive), 3),
                "ratio": round(statistics.median(pair_ratios), 3),  # median over pairs
                "pair_ratios": [round(r, 3) for r in pair_ratios],
                "framework_images_per_s": round(images / f_s),
                "plain_images_per_s": round(images / p_s),
                "startup_s": round(statistics.median(startup), 2),
                "lightning_import_s": round(statistics.median(imports), 2),
                "startup_over_import_s": round(
                    statistics.median(s - i for s, i in zip(startup, imports, strict=True)), 2
                ),  # median over adjacent (import, start-up) pairs
                "peak_rss_mb": round(max(rss)),
                "steps_per_epoch": steps,
                "epochs_timed": len(framework),
                "variants_s_per_epoch": {
                    v: round(statistics.median(times), 3) for v, times in switched.items()
                },
            }
    results["machine"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "bench_process_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    columns = ("model", "framework s/ep", "plain s/ep", "ratio", "img/s", "startup s", "+import s")
    print("{:6} {:>14} {:>10} {:>6} {:>7} {:>9} {:>9} {:>7}".format(*columns, "peak MB"))
    for model in args.models:
        r = results[model]
        print(
            f"{model:6} {r['framework_s_per_epoch']:>14.2f} {r['plain_s_per_epoch']:>10.2f} "
            f"{r['ratio']:>6.3f} {r['framework_images_per_s']:>7} {r['startup_s']:>9.2f} "
            f"{r['startup_over_import_s']:>9.2f} {r['peak_rss_mb']:>7}"
        )
    for model in args.models:
        for v, s_per_epoch in results[model]["variants_s_per_epoch"].items():
            ratio = s_per_epoch / results[model]["plain_s_per_epoch"]  # of medians
            print(f"{model:6} with {v}: {s_per_epoch:.2f} s/epoch, ratio {ratio:.3f}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
