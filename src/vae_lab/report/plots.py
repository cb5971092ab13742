"""Test metrics against latent size: one line per model/likelihood (and any other swept key)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from vae_lab.report.runs import Run

PLOT_NAME = "test_metrics_vs_latent_dim.png"
METRICS = ("elbo", "recon", "kl")
LABELS = {"elbo": "ELBO (nats, higher is better)", "recon": "-log p(x|z) (nats)", "kl": "KL (nats)"}


def _line_label(run: Run, keys: Sequence[str]) -> str:
    """What tells this run's line apart: model, likelihood, and any other swept key."""
    parts = [str(run.params.get(k, "?")) for k in ("model", "likelihood")]
    parts += [f"{k}={run.overrides[k]}" for k in keys if k in run.overrides]
    return " / ".join(parts)


def plot_test_metrics(runs: Sequence[Run], keys: Sequence[str], out: Path) -> Path | None:
    """Write the PNG and return its path; None when no finished run has test metrics."""
    others = [k for k in keys if k not in ("model", "likelihood", "latent_dim")]
    lines: dict[str, list[tuple[int, Run]]] = defaultdict(list)
    for run in runs:
        latent = run.params.get("latent_dim")
        if run.status == "completed" and isinstance(latent, int) and "test/elbo" in run.metrics:
            lines[_line_label(run, others)].append((latent, run))
    if not lines:
        return None

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    finished = [run for points in lines.values() for _, run in points]
    metrics = [m for m in METRICS if any(f"test/{m}" in run.metrics for run in finished)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    latents = sorted({latent for pts in lines.values() for latent, _ in pts})
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, points in sorted(lines.items()):
            points.sort(key=lambda p: p[0])
            xs = [latent for latent, _ in points]
            ys = [run.metrics.get(f"test/{metric}", math.nan) for _, run in points]
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(latents, [str(v) for v in latents])
        ax.set_xlabel("latent_dim")
        ax.set_title(f"test {LABELS[metric]}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out / PLOT_NAME
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
