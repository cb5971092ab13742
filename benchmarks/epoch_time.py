"""Seconds per epoch: the command users type, `vae_lab.train`, against a plain PyTorch loop.

    python benchmarks/epoch_time.py [--models mlp conv] [--epochs 4] [--repeats 3] [--out F]
                                    [--variants compile bf16 channels_last] [--device cuda]

For each model, framework and plain runs alternate `--repeats` times. The framework run is
the real command (`python -m vae_lab.train model=...`, its defaults: validation, pictures,
checkpoints, logging and callbacks, on the real data) with an EpochTimer callback added;
an epoch is timed as a user waits for it, from the start of one training epoch to the start
of the next (`epoch_s`), and its training part apart. The plain loop is the loop a user
would write: the same training images as one float tensor, batches cut by indexing, the
same encoder/decoder trained with `torch.optim.Adam` at its defaults, and after each
epoch the validation images' loss. It runs again with the framework's own optimizer
config (`same optimizer`: the fused Adam of configs/optimizer/adam.yaml), which leaves the
framework's own cost. The first epoch of every run is a warm-up and not counted; medians
are reported, and each ratio is the median of the ratios of adjacent framework/plain
pairs. Start-up (command to
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


def plain_run(
    model: str,
    epochs: int,
    flush_denormal: bool = True,
    device: str = "cpu",
    same_optimizer: bool = False,
) -> dict:
    """The same networks and data in a hand-written loop: train, then the validation loss.

    With `flush_denormal` as the framework sets it by default (the fair comparison of
    framework overhead); without it, the loop as most users write it. With
    `same_optimizer`, the framework's optimizer config instead of `torch.optim.Adam(lr)`.
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
    val_images = datamodule.splits["val"][0].to(device).float() / 255
    shape = list(images.shape[1:])
    torch.manual_seed(0)
    encoder = instantiate(cfg.model.encoder, input_shape=shape, _convert_="all").to(device)
    decoder = instantiate(cfg.model.decoder, output_shape=shape, _convert_="all").to(device)
    params = [*encoder.parameters(), *decoder.parameters()]
    if same_optimizer:
        optimizer = instantiate(cfg.optimizer)(params=params)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.optimizer.lr)

    def loss_of(x: torch.Tensor) -> torch.Tensor:  # the negative ELBO, Bernoulli and N(0, I)
        q = encoder(x)
        logits = decoder(q.rsample())
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        kl = 0.5 * (q.mean**2 + q.variance - 1 - q.variance.log()).sum(-1)
        return (bce.flatten(1).sum(-1) + kl).mean()

    batch_size, eval_batch = cfg.data.batch_size, cfg.data.eval_batch_size
    seconds, train_seconds, val_losses = [], [], []
    for _ in range(epochs):
        start = time.time()
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(images), batch_size):
            loss = loss_of(images[order[i : i + batch_size]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        train_seconds.append(time.time() - start)
        with torch.no_grad():
            val_loss = sum(
                loss_of(val_images[i : i + eval_batch]) * len(val_images[i : i + eval_batch])
                for i in range(0, len(val_images), eval_batch)
            )
            val_losses.append(float(val_loss) / len(val_images))  # read, as a user prints it
        seconds.append(time.time() - start)
    return {
        "s_per_epoch": seconds,
        "train_s_per_epoch": train_seconds,
        "val_loss": val_losses,
        "steps_per_epoch": -(-len(images) // batch_size),
    }


def lightning_import_s() -> float:
    start = time.time()
    subprocess.run([sys.executable, "-c", "import lightning"], check=True)
    return time.time() - start


def _median_ratio(pairs: list[tuple[list[float], list[float]]]) -> float:
    """The median over adjacent runs of (median seconds of one) / (median of the other): a
    drift in machine speed between repeats (seen here: 2x over minutes on a shared host)
    cancels out."""
    return statistics.median(statistics.median(a) / statistics.median(b) for a, b in pairs)


def bench_model(model: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Alternate framework and plain runs of `model`; their medians and ratios."""
    runs: dict[str, list[dict]] = {"framework": [], "plain": [], "same": [], "naive": []}
    startup, imports = [], []
    variants = [v for v in args.variants if v != "channels_last" or model == "conv"]
    switched: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # alternate, so drifts in machine speed hit all alike
        for v in variants:
            timing = framework_run(model, args.epochs, tmp, VARIANTS[v], args.device)
            switched[v] += timing["epoch_s"][1:]
        imports.append(lightning_import_s())  # beside each start-up: same machine state
        f = framework_run(model, args.epochs, tmp, device=args.device)
        runs["framework"].append({**f, "s_per_epoch": f["epoch_s"]})
        startup.append(f["startup_s"])
        runs["plain"].append(plain_run(model, args.epochs, device=args.device))
        runs["same"].append(plain_run(model, args.epochs, device=args.device, same_optimizer=True))
        runs["naive"].append(plain_run(model, args.epochs, False, args.device))

    def counted(name: str, key: str = "s_per_epoch") -> list[list[float]]:
        return [run[key][1:] for run in runs[name]]  # the first epoch of a run: warm-up

    def median(name: str, key: str = "s_per_epoch") -> float:
        return round(statistics.median(s for run in counted(name, key) for s in run), 3)

    def ratio(name: str, key: str = "s_per_epoch") -> float:
        pairs = zip(counted("framework", key), counted(name, key), strict=True)
        return round(_median_ratio(list(pairs)), 3)

    f_s = median("framework")
    last = runs["framework"][-1]
    return {
        "framework_s_per_epoch": f_s,  # whole epochs: training, validation, pictures, ...
        "framework_train_s_per_epoch": median("framework", "train_s_per_epoch"),
        "plain_s_per_epoch": median("plain"),  # training and the validation loss
        "plain_train_s_per_epoch": median("plain", "train_s_per_epoch"),
        "plain_same_optimizer_s_per_epoch": median("same"),
        "plain_without_flush_denormal_s_per_epoch": median("naive"),
        "ratio": ratio("plain"),  # whole epochs, against the loop users write
        "pair_ratios": [
            round(statistics.median(a) / statistics.median(b), 3)
            for a, b in zip(counted("framework"), counted("plain"), strict=True)
        ],
        "ratio_same_optimizer": ratio("same"),  # the framework's own cost
        "train_ratio": ratio("plain", "train_s_per_epoch"),  # training alone
        "framework_images_per_s": round(last["images_per_epoch"] / f_s),
        "plain_images_per_s": round(last["images_per_epoch"] / median("plain")),
        "startup_s": round(statistics.median(startup), 2),
        "lightning_import_s": round(statistics.median(imports), 2),
        "startup_over_import_s": round(
            statistics.median(s - i for s, i in zip(startup, imports, strict=True)), 2
        ),  # median over adjacent (import, start-up) pairs
        "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs["framework"])),
        "steps_per_epoch": last["steps_per_epoch"],
        "epochs_timed": sum(len(run) for run in counted("framework")),
        "variants_s_per_epoch": {
            v: round(statistics.median(times), 3) for v, times in switched.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--epochs", type=int, default=4, help="per run; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench.json")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error(
            "--epochs must be at least 3 (the first epoch is warm-up, and a whole epoch is "
            "timed from its start to the next one's)"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch finds no GPU here; leave --device out for the CPU")

    lightning_import_s()  # warms the file cache, as the framework runs find it
    with tempfile.TemporaryDirectory(prefix="vae_lab_bench_") as tmp:
        results: dict[str, dict] = {m: bench_model(m, args, Path(tmp)) for m in args.models}
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
    columns = ("model", "framework s/ep", "plain s/ep", "ratio", "same-opt", "train", "img/s")
    print("{:6} {:>14} {:>10} {:>6} {:>8} {:>6} {:>7} {:>9} {:>9}".format(
        *columns, "startup s", "+import s"))  # fmt: skip
    for model in args.models:
        r = results[model]
        print(
            f"{model:6} {r['framework_s_per_epoch']:>14.2f} {r['plain_s_per_epoch']:>10.2f} "
            f"{r['ratio']:>6.3f} {r['ratio_same_optimizer']:>8.3f} {r['train_ratio']:>6.3f} "
            f"{r['framework_images_per_s']:>7} {r['startup_s']:>9.2f} "
            f"{r['startup_over_import_s']:>9.2f}"
        )
    for model in args.models:
        for v, s_per_epoch in results[model]["variants_s_per_epoch"].items():
            ratio = s_per_epoch / results[model]["plain_s_per_epoch"]  # of medians
            print(f"{model:6} with {v}: {s_per_epoch:.2f} s/epoch, ratio {ratio:.3f}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
