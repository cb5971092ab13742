"""Does a second run started beside a long one slow it more than the cores it takes?

    python benchmarks/side_by_side.py [--epochs 3] [--batches 100] [--out outputs/bench.json]
                                      [-- <train overrides>]    # default: the published recipe

Times seconds per training epoch of run A (the real command, `python -m vae_lab.train`,
with an EpochTimer) in four set-ups on this machine's cores (the ones this process may use):

- `alone_all`: A alone with every core (torch's default: one thread per core);
- `alone_half`: A alone, pinned to the first half of the cores;
- `beside_pinned`: A on the first half and B, the same run, on the other half, started
  together: each with the cores it was given (as `taskset -c` gives them);
- `beside_default`: A and B together, neither pinned: each starts a thread per core, so
  together they ask for twice the cores there are.

A pinned run's torch threads follow its CPU affinity (torch's default thread count is the
size of the affinity mask). B "takes" half the cores, so A should run at most as slowly as
it does alone on the half left to it: the figures to read are `beside_pinned / alone_half`
and `beside_default / alone_half` (1.0: B costs A nothing beyond the cores B took; above
1.0, the two runs get in each other's way). The first epoch of each run is a warm-up and
not counted; the median of the rest is reported. Key `side_by_side` of `--out`, merged
into what is there. The environment passes to the runs, and an OMP_WAIT_POLICY set there
wins over the recipe's `runtime.wait_policy: passive`; or pass `runtime.wait_policy=null`
for OpenMP's default (spin, then sleep).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_json import store

REPO = Path(__file__).resolve().parents[1]
RECIPE = ["experiment=published_nll"]
QUIET = [
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "eval.k=1",
    "callbacks.image_grids=null",
    "callbacks.latent_pictures=null",
    "callbacks.embedding_projector=null",
    "+callbacks.epoch_timer._target_=vae_lab.callbacks.timing.EpochTimer",
]


def start(
    run_dir: Path, overrides: Sequence[str], cores: set[int] | None
) -> subprocess.Popen[bytes]:
    """The real train command, pinned to `cores` (None: every core this process has)."""
    cmd = [sys.executable, "-m", "vae_lab.train", *overrides, f"hydra.run.dir={run_dir}"]

    def pin() -> None:
        if cores is not None:
            os.sched_setaffinity(0, cores)

    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin
    )


def seconds_per_epoch(run_dir: Path, proc: subprocess.Popen[bytes]) -> float:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"error: a timed run failed:\n{err.decode()[-2000:]}")
    epochs = json.loads((run_dir / "timing.json").read_text())["train_s_per_epoch"]
    return statistics.median(epochs[1:])


def together(
    tmp: Path, name: str, overrides: Sequence[str], pins: Sequence[set[int] | None]
) -> list[float]:
    """Start one run per entry of `pins` at once; their seconds per epoch, in order."""
    dirs = [tmp / f"{name}-{i}-{time.time_ns()}" for i in range(len(pins))]
    procs = [start(d, overrides, cores) for d, cores in zip(dirs, pins, strict=True)]
    return [seconds_per_epoch(d, p) for d, p in zip(dirs, procs, strict=True)]


def _wait_policy(overrides: Sequence[str]) -> str | None:
    """runtime.wait_policy as these overrides compose it (the train config's rules)."""
    from hydra import compose, initialize_config_dir

    from vae_lab.cli.entry import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=[o for o in overrides if not o.startswith("+")])
    return cfg.runtime.wait_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--batches", type=int, default=100, help="training batches per epoch")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench.json")
    parser.add_argument("overrides", nargs="*", help="train overrides (default: the recipe)")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        parser.error("needs at least 2 cores: one run per half")
    half = len(cores) // 2
    first, second = set(cores[:half]), set(cores[half : 2 * half])
    overrides = [
        *(args.overrides or RECIPE),
        *QUIET,
        f"trainer.max_epochs={args.epochs}",
        f"trainer.limit_train_batches={args.batches}",
    ]
    with tempfile.TemporaryDirectory(prefix="vae_lab_side_") as tmp_name:
        tmp = Path(tmp_name)
        (alone_all,) = together(tmp, "alone_all", overrides, [None])
        (alone_half,) = together(tmp, "alone_half", overrides, [first])
        pinned = together(tmp, "beside_pinned", overrides, [first, second])
        default = together(tmp, "beside_default", overrides, [None, None])
    figures = {
        "cores": len(cores),
        "overrides": overrides,
        "s_per_epoch": {
            "alone_all": alone_all,
            "alone_half": alone_half,
            "beside_pinned": pinned,
            "beside_default": default,
        },
        # what the runs' OpenMP read: the environment's, else the config's (None: OpenMP's own)
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or _wait_policy(overrides),
        "beside_pinned_over_alone_half": pinned[0] / alone_half,
        "beside_default_over_alone_half": default[0] / alone_half,
    }
    store(args.out, "side_by_side", figures)


if __name__ == "__main__":
    main()
