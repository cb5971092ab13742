"""Keep a long run's state in the repository, so that another machine can finish it.

    python scripts/keep_run.py <run dir> <dest under runs/> --note "what the run is"

Copies what resuming and reporting need, and nothing else: `config.yaml`, `hparams.yaml`,
`train.log`, `.hydra/`, `metrics.json` where the run finished and evaluate's
`evaluate_<split>.json` where it was evaluated, `checkpoints/last.ckpt` (weights,
optimizer, warm-up and early-stopping state: what `ckpt_path=<dir>` resumes from; left out
with `--finished`), the best checkpoint's weights without its optimizer state (left out
with `--shipped`, where `vae_lab.pretrained` carries them), and `validation_curve.json`
(every `val/*` scalar by epoch, read from all of the run's TensorBoard event files, one per
resume). The event files themselves (tens of MB of images) stay behind. A resume writes
into its run directory, so copy the kept folder out of the clone before resuming from it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lab.pretrained.ship import KEEP  # what loading needs: no optimizer, loop or callbacks

FILES = ("config.yaml", "hparams.yaml", "train.log", "metrics.json")


def validation_curve(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Each `val/*` scalar by epoch over every event file of `run` (a later file, written
    after a resume, replaces the epochs it repeats)."""
    curves: dict[str, dict[int, float]] = {}
    for path in sorted(run.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        if "epoch" not in tags:
            continue
        epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")}
        for tag in (t for t in tags if t.startswith("val/")):
            for e in events.Scalars(tag):
                if e.step in epoch_at:
                    curves.setdefault(tag, {})[epoch_at[e.step]] = round(e.value, 4)
    return {tag: sorted(by_epoch.items()) for tag, by_epoch in curves.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--note", required=True, help="the command and what the run is")
    parser.add_argument("--finished", action="store_true", help="leave last.ckpt out")
    parser.add_argument("--shipped", action="store_true", help="leave the best weights out")
    args = parser.parse_args()
    run, dest = args.run, args.dest
    if not (run / "checkpoints" / "last.ckpt").is_file():
        parser.error(f"{run} has no checkpoints/last.ckpt: not a run directory of vae_lab.train")
    here, there = run.resolve(), dest.resolve()
    if here == there or here in there.parents or there in here.parents:
        parser.error(f"{dest} is {run} or holds it: keep the run in a folder of its own")
    kept = dest / "validation_curve.json"  # of the run's earlier life, before it was resumed
    earlier = json.loads(kept.read_text())["validation_by_epoch"] if kept.is_file() else {}
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "checkpoints").mkdir(parents=True)
    for path in [*(run / name for name in FILES), *run.glob("evaluate_*.json")]:
        if path.is_file():
            shutil.copy2(path, dest / path.name)
    shutil.copytree(run / ".hydra", dest / ".hydra")
    if not args.finished:
        shutil.copy2(run / "checkpoints" / "last.ckpt", dest / "checkpoints" / "last.ckpt")
    for best in [] if args.shipped else run.glob("checkpoints/best-epoch*.ckpt"):
        ckpt = torch.load(best, map_location="cpu", weights_only=True)
        weights = {k: v for k, v in ckpt.items() if k in KEEP}
        torch.save(weights, dest / "checkpoints" / best.name)
    curves = {tag: dict(map(tuple, points)) for tag, points in earlier.items()}
    for tag, points in validation_curve(run).items():  # the events win where both have one
        curves.setdefault(tag, {}).update(points)
    by_epoch = {tag: sorted(points.items()) for tag, points in curves.items()}
    curve = {"run": args.note, "validation_by_epoch": by_epoch}
    (dest / "validation_curve.json").write_text(json.dumps(curve) + "\n")
    epochs = len(curve["validation_by_epoch"].get("val/elbo", []))
    print(f"kept {run} in {dest}: {epochs} validation epochs")


if __name__ == "__main__":
    main()
