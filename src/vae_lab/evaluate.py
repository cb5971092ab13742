"""`python -m vae_lab.evaluate`: the numbers a paper would print, for a trained checkpoint.

    python -m vae_lab.evaluate ckpt_path=outputs/runs/<date>/<time> eval.k=5000

    python -m vae_lab.evaluate ckpt_path=outputs/runs/<date>/<time> eval.fid=true

Rebuilds the model from the checkpoint's saved config, evaluates a whole split (test by
default), prints a table, writes `metrics.json` in its own output directory (and a copy,
`evaluate_<split>.json`, in the run's, where `vae_lab.report` reads it) and logs the
figures to TensorBoard beside the run (tags `evaluate/<split>_*`); for a shipped model
(`ckpt_path=<name>`, vae_lab.pretrained), which belongs to no run, `metrics.json` alone.
With `eval.fid=true` it adds FID and KID of prior samples in a Fashion-MNIST classifier's
features (vae_lab.evaluation.quality), beside the same distances for a floor and a ceiling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from vae_lab.cli.entry import command
from vae_lab.config.checks import check_evaluate

if TYPE_CHECKING:
    from vae_lab.evaluation.trained import Trained

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as `cfg` says; return what `metrics.json` holds."""
    from hydra.core.hydra_config import HydraConfig

    from vae_lab.classifier import store
    from vae_lab.evaluation.quality import check_fid_options, sample_quality
    from vae_lab.evaluation.trained import load_trained
    from vae_lab.run.outputs import write_json_atomic

    check_evaluate(cfg)
    check_fid_options(cfg.eval)
    classifier = store.read(cfg.eval.classifier) if cfg.eval.fid else None  # missing: say now
    trained = load_trained(cfg)
    start = time.perf_counter()
    fid_data = _fid_data(trained, cfg) if classifier is not None else None  # sizes: say now
    summary: dict[str, Any] = {
        "checkpoint": str(trained.checkpoint),
        "run_dir": None if trained.run_dir is None else str(trained.run_dir),
        "epoch": trained.epoch,
        "global_step": trained.global_step,
        "split": cfg.eval.split,
        "seed": cfg.seed,
        "device": str(next(trained.model.parameters()).device),
        **bounds(trained, cfg),
    }
    samples = None
    if classifier is not None and fid_data is not None:
        log.info(f"FID and KID of {cfg.eval.fid_samples} prior samples ({classifier.weights})")
        quality, samples = sample_quality(
            trained.model,
            classifier,
            *fid_data,
            cfg.eval.fid_samples,
            cfg.eval.kid_subset_size,
            cfg.seed,
        )
        summary.update(quality.as_dict())
    summary["seconds"] = round(time.perf_counter() - start, 2)
    out = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
    write_json_atomic(out, summary)
    print(_table(summary))
    print(f"\nWrote {out}")
    if trained.run_dir is None:
        print(f"Nothing written beside {trained.checkpoint}: a shipped model, in the package")
    else:
        _write_beside_run(summary, trained.run_dir, samples)
    return summary


def bounds(trained: Trained, cfg: DictConfig) -> dict[str, Any]:
    """The bounds and latent figures (`SplitMetrics`) of `trained` on the first `eval.limit`
    images of `eval.split`, z drawn after seeding torch with `seed`: what `metrics.json`
    holds beside the checkpoint's name, and what a shipped model's check figure is."""
    import torch

    from vae_lab.data.batches import IndexBatches
    from vae_lab.evaluation.bits import is_binarized
    from vae_lab.evaluation.metrics import evaluate
    from vae_lab.evaluation.trained import split_data

    images, labels = split_data(trained, cfg, cfg.eval.split)
    images, labels = images[: cfg.eval.limit], labels[: cfg.eval.limit]
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    batches = IndexBatches(images, labels, batch_size=cfg.eval.batch_size, shuffle=False)
    device = next(trained.model.parameters()).device
    binarized = is_binarized(trained.config)
    with _progress(len(images), cfg.eval.k, start) as progress:
        result = evaluate(
            trained.model, batches, cfg.eval.k, cfg.eval.decode_batch, device, progress, binarized
        )
    return result.as_dict()


@contextmanager
def _progress(total: int, k: int, start: float) -> Iterator[Callable[[int], None]]:
    """A callback told the images done: a bar with the time left on a terminal; elsewhere
    (a log, a batch job) a log line per batch with the same estimate."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc=f"IW bound, k={k}", disable=None)

    def progress(done: int) -> None:
        bar.update(done - bar.n)
        if bar.disable:
            spent = time.perf_counter() - start
            left = spent / done * (total - done)
            log.info(f"{done}/{total} images, {spent:.0f} s, about {left:.0f} s left")

    try:
        yield progress
    finally:
        bar.close()


def _fid_data(trained: Any, cfg: DictConfig) -> tuple[Any, Any]:
    """The 8-bit training and test images FID needs (whatever pixels the model was trained
    on), checked against the sizes asked for before any long work starts."""
    from vae_lab.evaluation.quality import check_sizes
    from vae_lab.evaluation.trained import split_data

    train_images, _ = split_data(trained, cfg, "train", eight_bit=True)
    test_images, _ = split_data(trained, cfg, "test", eight_bit=True)
    check_sizes(cfg.eval.fid_samples, cfg.eval.kid_subset_size, len(train_images), len(test_images))
    return train_images, test_images


def _bits_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """bits/dim of the 8-bit images, or of binarized ones, or why there is none."""
    na = s.get("not_applicable", {})
    if s.get("bpd") is not None:
        return [("bits/dim, binarized images (0/1 pixels)", f"{s['bpd']:.4f}")]
    if s.get("bpd_8bit") is not None:
        return [("bits/dim, 8-bit images (bpd_8bit)", f"{s['bpd_8bit']:.4f}")]
    return [("bits/dim, 8-bit images (bpd_8bit)", f"not applicable: {na.get('bpd_8bit', '?')}")]


def _quality_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    if "fid" not in s:
        return []
    n, accuracy = s["fid_samples"], s.get("classifier_test_accuracy")
    known = f", test accuracy {accuracy:.2%}" if accuracy is not None else ""
    return [
        (f"FID, {n} prior samples vs test", f"{s['fid']:.3f}"),
        (f"KID, {n} prior samples vs test", f"{s['kid']:.5f} +- {s['kid_std']:.5f}"),
        ("  floor: training images vs test", f"FID {s['fid_floor']:.3f}, KID {s['kid_floor']:.5f}"),
        (
            "  ceiling: independent pixels vs test",
            f"FID {s['fid_ceiling']:.3f}, KID {s['kid_ceiling']:.5f}",
        ),
        ("  features: the classifier", f"{Path(s['classifier']).name}{known}"),
        *(
            [("samples classified as their label", f"{s['class_accuracy']:.2%}")]
            if s.get("class_accuracy") is not None
            else []
        ),
    ]


def _layer_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The KL term and active units of each latent layer, top first."""
    kl, active = s.get("kl_per_layer") or {}, s.get("active_units_per_layer") or {}
    layers = sorted(kl, key=lambda name: -int(name[1:]))  # z2 before z1
    return [
        (
            f"  layer {name}: KL, active units",
            f"{kl[name]:.2f} nats, {active.get(name, '?')}",
        )
        for name in layers
    ]


def _table(s: dict[str, Any]) -> str:
    rows = [
        (f"NLL, importance-weighted, k={s['k']}", f"{s['iw_nll']:.2f} nats"),
        *_bits_rows(s),
        ("negative ELBO", f"{-s['elbo']:.2f} nats"),
        ("  reconstruction -log p(x|z)", f"{s['recon']:.2f} nats"),
        ("  KL(q(z|x) || p(z))", f"{s['kl']:.2f} nats"),
        (
            "active units (Var_x E[z_d|x] > 0.01)",
            f"{s['active_units']} / {len(s['mean_variance_per_dim'])}",
        ),
        *_layer_rows(s),
        *_quality_rows(s),
    ]
    head = (
        f"{s['checkpoint']} (epoch {s['epoch']}, step {s['global_step']}): "
        f"{s['split']} split, {s['images']} images, {s['seconds']:.1f} s on {s['device']}"
    )
    width = max(len(name) for name, _ in rows)
    return "\n".join([head, *(f"  {name:<{width}}  {value}" for name, value in rows)])


SCALARS = (
    *("elbo", "recon", "kl", "active_units"),
    *("fid", "kid", "fid_floor", "kid_floor", "fid_ceiling", "kid_ceiling"),
)


def _write_beside_run(s: dict[str, Any], run_dir: Path, samples: Any = None) -> None:
    """The summary as `evaluate_<split>.json` (what the report reads), and scalars, a
    KL-per-dim histogram, the table as text and the FID samples in the run's TensorBoard
    dir, at the checkpoint's step. A run dir that cannot be written only costs these copies."""
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from torchvision.utils import make_grid

    from vae_lab.run.outputs import write_json_atomic

    prefix, step = f"evaluate/{s['split']}", s["global_step"]
    try:
        write_json_atomic(run_dir / f"evaluate_{s['split']}.json", s)
        writer = SummaryWriter(log_dir=str(run_dir))
    except OSError as e:
        print(f"warning: not written beside the run: cannot write in {run_dir} ({e})")
        return
    with writer:
        writer.add_scalar(f"{prefix}_iw_nll_k{s['k']}", s["iw_nll"], step)
        for name in ("bpd", "bpd_8bit"):
            if s.get(name) is not None:
                writer.add_scalar(f"{prefix}_{name}_k{s['k']}", s[name], step)
        for name in (n for n in SCALARS if n in s):
            writer.add_scalar(f"{prefix}_{name}", s[name], step)
        for layer, value in (s.get("kl_per_layer") or {}).items():
            writer.add_scalar(f"{prefix}_kl_{layer}", value, step)
        for layer, count in (s.get("active_units_per_layer") or {}).items():
            writer.add_scalar(f"{prefix}_active_units_{layer}", count, step)
        if s["kl_per_dim"] is not None:  # a prior whose KL splits by dim
            writer.add_histogram(f"{prefix}_kl_per_dim", torch.tensor(s["kl_per_dim"]), step)
        writer.add_text(f"{prefix}_table", "    " + _table(s).replace("\n", "\n    "), step)
        if samples is not None:  # the first 64 of the images FID measured
            writer.add_image(f"{prefix}_fid_samples", make_grid(samples[:64], nrow=8), step)
    print(f"Logged to TensorBoard in {run_dir} (tags {prefix}_*); wrote evaluate_{s['split']}.json")


main = command(run, "evaluate")


if __name__ == "__main__":
    main()
