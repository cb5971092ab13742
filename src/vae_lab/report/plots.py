"""Test metrics against latent size: one line per model/likelihood (and any other swept key),
each point a group of runs that differ only in their seed: its mean, with an error bar of one
sample standard deviation where it has several."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from vae_lab.report.groups import Group

PLOT_NAME = "test_metrics_vs_latent_dim.png"
METRICS = ("elbo", "recon", "kl")
LABELS = {"elbo": "ELBO (nats, higher is better)", "recon": "-log p(x|z) (nats)", "kl": "KL (nats)"}


def _line_label(group: Group, keys: Sequence[str]) -> str:
    """What tells this group's line apart: model, likelihood, and any other swept key."""
    parts = [str(group.params.get(k, "?")) for k in ("model", "likelihood")]
    parts += [f"{k}={group.overrides[k]}" for k in keys if k in group.overrides]
    return " / ".join(parts)


def plot_test_metrics(groups: Sequence[Group], keys: Sequence[str], out: Path) -> Path | None:
    """Write the PNG and return its path; None when no group has test metrics."""
    others = [k for k in keys if k not in ("model", "likelihood", "latent_dim", "seed")]
    lines: dict[str, list[tuple[int, Group]]] = defaultdict(list)
    for group in groups:
        latent = group.params.get("latent_dim")
        if isinstance(latent, int) and group.stat("test/elbo") is not None:
            lines[_line_label(group, others)].append((latent, group))
    if not lines:
        return None

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    plotted = [group for points in lines.values() for _, group in points]
    metrics = [m for m in METRICS if any(g.stat(f"test/{m}") is not None for g in plotted)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    latents = sorted({latent for pts in lines.values() for latent, _ in pts})
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, points in sorted(lines.items()):
            points.sort(key=lambda p: p[0])
            stats = [(latent, group.stat(f"test/{metric}")) for latent, group in points]
            xs = [latent for latent, stat in stats if stat is not None]
            ys = [stat.mean for _, stat in stats if stat is not None]
            sds = [0.0 if math.isnan(stat.sd) else stat.sd for _, stat in stats if stat]
            ax.errorbar(xs, ys, yerr=sds, marker="o", capsize=3, label=label)
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
