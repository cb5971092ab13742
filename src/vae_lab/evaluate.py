"""`python -m vae_lab.evaluate`: the numbers a paper would print, for a trained checkpoint.

    python -m vae_lab.evaluate ckpt_path=outputs/runs/<date>/<time> eval.k=5000

Rebuilds the model from the checkpoint's saved config, evaluates a whole split (test by
default), prints a table, writes `metrics.json` in its own output directory and logs the
figures to TensorBoard beside the run (tags `evaluate/<split>_*`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from vae_lab.config import check_eval
from vae_lab.errors import UserError, report_and_exit
from vae_lab.train import CONFIG_DIR, discard_if_unused

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as `cfg` says; return what `metrics.json` holds."""
    import torch
    from hydra.core.hydra_config import HydraConfig

    from vae_lab.data.batches import IndexBatches
    from vae_lab.evaluation.metrics import evaluate
    from vae_lab.evaluation.trained import load_trained, split_data
    from vae_lab.outputs import write_json_atomic

    check_eval(cfg.eval, min_k=1)
    if cfg.eval.limit is not None and not cfg.eval.limit > 0:
        raise UserError(f"eval.limit must be a positive integer or null, got {cfg.eval.limit}")
    trained = load_trained(cfg)
    images, labels = split_data(trained, cfg, cfg.eval.split)
    images, labels = images[: cfg.eval.limit], labels[: cfg.eval.limit]
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    batches = IndexBatches(images, labels, batch_size=cfg.eval.batch_size, shuffle=False)
    device = next(trained.model.parameters()).device

    def progress(done: int) -> None:
        log.info(f"{done}/{len(images)} images, {time.perf_counter() - start:.0f} s")

    result = evaluate(trained.model, batches, cfg.eval.k, cfg.eval.decode_batch, device, progress)
    summary: dict[str, Any] = {
        "checkpoint": str(trained.checkpoint),
        "run_dir": str(trained.run_dir),
        "epoch": trained.epoch,
        "global_step": trained.global_step,
        "split": cfg.eval.split,
        "seed": cfg.seed,
        "device": str(device),
        "seconds": round(time.perf_counter() - start, 2),
        **result.as_dict(),
    }
    out = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
    write_json_atomic(out, summary)
    print(_table(summary))
    print(f"\nWrote {out}")
    _log_beside_run(summary, trained.run_dir)
    return summary


def _table(s: dict[str, Any]) -> str:
    bpd = f"  ({s['bpd']:.4f} bits/dim)" if s["bpd"] is not None else ""
    rows = [
        (f"NLL, importance-weighted, k={s['k']}", f"{s['iw_nll']:.2f} nats{bpd}"),
        ("negative ELBO", f"{-s['elbo']:.2f} nats"),
        ("  reconstruction -log p(x|z)", f"{s['recon']:.2f} nats"),
        ("  KL(q(z|x) || p(z))", f"{s['kl']:.2f} nats"),
        (
            "active units (Var_x E[z_d|x] > 0.01)",
            f"{s['active_units']} / {len(s['mean_variance_per_dim'])}",
        ),
    ]
    head = (
        f"{s['checkpoint']} (epoch {s['epoch']}, step {s['global_step']}): "
        f"{s['split']} split, {s['images']} images, {s['seconds']:.1f} s on {s['device']}"
    )
    width = max(len(name) for name, _ in rows)
    return "\n".join([head, *(f"  {name:<{width}}  {value}" for name, value in rows)])


def _log_beside_run(s: dict[str, Any], run_dir: Path) -> None:
    """Scalars, a KL-per-dim histogram and the table as text, in the run's TensorBoard dir,
    at the checkpoint's step. A run dir that cannot be written only costs the TB copy."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    prefix, step = f"evaluate/{s['split']}", s["global_step"]
    try:
        writer = SummaryWriter(log_dir=str(run_dir))
    except OSError as e:
        print(f"warning: not logged to TensorBoard: cannot write in {run_dir} ({e})")
        return
    with writer:
        writer.add_scalar(f"{prefix}_iw_nll_k{s['k']}", s["iw_nll"], step)
        if s["bpd"] is not None:
            writer.add_scalar(f"{prefix}_bpd_k{s['k']}", s["bpd"], step)
        for name in ("elbo", "recon", "kl", "active_units"):
            writer.add_scalar(f"{prefix}_{name}", s[name], step)
        if s["kl_per_dim"] is not None:  # a prior whose KL splits by dim
            writer.add_histogram(f"{prefix}_kl_per_dim", torch.tensor(s["kl_per_dim"]), step)
        writer.add_text(f"{prefix}_table", "    " + _table(s).replace("\n", "\n    "), step)
    print(f"Logged to TensorBoard in {run_dir} (tags {prefix}_*)")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def _main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except UserError as e:
        discard_if_unused()
        report_and_exit(e)


def main() -> None:
    """The command; Hydra's composition errors (unknown key, wrong type) as one line."""
    from vae_lab.hydra_errors import reported

    with reported():
        _main()


if __name__ == "__main__":
    main()
