"""Plot the validation -ELBO of published-protocol runs from their TensorBoard event files.

    python scripts/published_curves.py <N(0, I) run> <VampPrior run> [--test ROW EPOCH NATS ...]
                                       [--out docs/published_nll/validation_elbo.png]

Used for docs/published_nll/validation_elbo.png; the dotted lines are the published test
NLLs (Exemplar VAE, Table 1), the cross this project's k = 5000 test figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

PUBLISHED = {"N(0, I) prior": 228.70, "VampPrior": 227.35}


def val_nelbo(run: Path) -> dict[int, float]:
    """-val/elbo by epoch, over every event file of the run (one per resume); the epoch is
    the `epoch` scalar Lightning logs at the same step."""
    by_epoch: dict[int, float] = {}
    for path in sorted(run.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        if "val/elbo" in events.Tags()["scalars"]:
            epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")}
            for e in events.Scalars("val/elbo"):
                by_epoch[epoch_at[e.step]] = -e.value
    return by_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("standard_normal", type=Path)
    parser.add_argument("vampprior", type=Path)
    parser.add_argument(
        "--test",
        nargs=3,
        action="append",
        default=[],
        metavar=("ROW", "EPOCH", "NATS"),
        help="a k = 5000 test figure: ROW 0 (N(0, I)) or 1 (VampPrior), its epoch, its nats",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/published_nll/validation_elbo.png"))
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, run) in enumerate(
        zip(PUBLISHED, (args.standard_normal, args.vampprior), strict=True)
    ):
        curve = val_nelbo(run)
        epochs = sorted(curve)
        ax.plot(epochs, [curve[e] for e in epochs], color=f"C{i}", label=f"{label}, validation")
        ax.axhline(
            PUBLISHED[label],
            color=f"C{i}",
            ls=":",
            label=f"published test NLL ({PUBLISHED[label]})",
        )
    for row, epoch, nats in args.test:
        ax.scatter(
            [int(epoch)], [float(nats)], color=f"C{row}", marker="x", zorder=5,
            label=f"test NLL, k = 5000, epoch {epoch} ({nats})",
        )  # fmt: skip
    warmup = OmegaConf.load(args.standard_normal / "config.yaml").kl_schedule.warmup_epochs
    ax.axvline(warmup, color="grey", lw=0.8)
    ax.text(warmup + 2, 238, "KL warm-up ends", fontsize=8, color="grey")
    ax.set(ylim=(226, 240), xlabel="epoch", ylabel="nats")
    ax.set_title("experiment=published_nll: validation -ELBO (one CPU thread each)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
