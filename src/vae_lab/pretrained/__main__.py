"""`python -m vae_lab.pretrained`: list the shipped models; `... ship`: make one.

    python -m vae_lab.pretrained                  # one row per shipped model
    python -m vae_lab.pretrained ship runs/<run>/checkpoints/best-epoch436.ckpt \\
        --name published_nll --metrics outputs/evaluate/<date>/<time>/metrics.json \\
        --description "MLP VAE, z = 40, N(0, I) prior, binarized Fashion-MNIST" \\
        --published "Exemplar VAE (Norouzi et al. 2020), Table 1, VAE with N(0, I)" \\
        --published-nll 228.70 --train-hours 13.5 --machine "2 CPU cores" \\
        --retrain "python -m vae_lab.train experiment=published_nll"

Bad input to `ship` (a missing or foreign checkpoint, a metrics.json of another checkpoint,
a name that is a path, a name that ships already without --force) is one `error:` line and
exit status 2, as for every command of vae_lab.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import vae_lab.pretrained as pretrained
from vae_lab.cli.errors import UserError, is_environment_error, report_and_exit


def listing() -> str:
    """One row per shipped model: what it is, its full-protocol NLL beside the published
    one, its check figure and the command that retrains it; or that none ships yet."""
    names = pretrained.names()
    if not names:
        return (
            "No pretrained model ships with this version of vae_lab yet; a maintainer makes "
            "one with `python -m vae_lab.pretrained ship` (see docs/pretrained.md)."
        )
    header = ("name", "what it is", "test NLL", "published", "check", "retrain")
    rows = [header, *(_row(name, pretrained.card(name)) for name in names)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    return "\n".join(
        [
            *lines,
            "",
            "Load one with vae_lab.load(NAME); evaluate it with "
            "python -m vae_lab.evaluate ckpt_path=NAME (its card: "
            f"{pretrained.ROOT}/NAME/{pretrained.CARD})",
        ]
    )


def _row(name: str, card: dict[str, Any]) -> tuple[str, ...]:
    full, published, c = card["full_protocol"], card["published"], card["check"]
    return (
        name,
        card["description"],
        f"{full['iw_nll']:.2f} (k={full['k']}, {full['images']} images)",
        f"{published['iw_nll']:.2f}",
        f"{c['iw_nll']:.2f} (k={c['k']}, first {c['limit']}, seed {c['seed']})",
        card["retrain"],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_lab.pretrained",
        description="List the trained models that ship with vae_lab, or (ship) make one.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="one row per shipped model (what no command also does)")
    ship = commands.add_parser(
        "ship", help="make a shipped model from a trained checkpoint (maintainers)"
    )
    ship.add_argument("checkpoint", type=Path, help="the .ckpt (the run's best) or its run dir")
    ship.add_argument("--name", required=True, help="its name: a folder, e.g. published_nll")
    ship.add_argument(
        "--metrics",
        type=Path,
        required=True,
        help="the metrics.json of python -m vae_lab.evaluate on this checkpoint, eval.k=5000",
    )
    ship.add_argument("--description", required=True, help="what it is, one line")
    ship.add_argument("--published", required=True, help="the published row it reproduces")
    ship.add_argument("--published-nll", type=float, required=True, help="that row's NLL, nats")
    ship.add_argument("--retrain", required=True, help="the command that trains it again")
    ship.add_argument("--train-hours", type=float, required=True, help="wall-clock hours")
    ship.add_argument("--machine", required=True, help="where it trained, e.g. '2 CPU cores'")
    ship.add_argument(
        "--epochs-trained", type=int, help="default: the run directory's metrics.json says"
    )
    ship.add_argument("--check-k", type=int, default=100, help="the check's k (default 100)")
    ship.add_argument(
        "--check-limit", type=int, default=500, help="the check's test images (default 500)"
    )
    ship.add_argument("--data-root", help="where Fashion-MNIST is (default: as evaluate finds it)")
    ship.add_argument(
        "--into", type=Path, help=f"where the model folders are (default {pretrained.ROOT})"
    )
    ship.add_argument("--force", action="store_true", help="replace a model of that name")
    return parser


def _ship(args: argparse.Namespace) -> None:
    from vae_lab.pretrained import check
    from vae_lab.pretrained.ship import Statement, ship

    into = args.into or pretrained.ROOT
    statement = Statement(
        description=args.description,
        published=args.published,
        published_nll=args.published_nll,
        retrain=args.retrain,
        train_hours=args.train_hours,
        machine=args.machine,
        epochs_trained=args.epochs_trained,
    )
    settings = check.settings(limit=args.check_limit, k=args.check_k)
    try:
        target = ship(
            args.checkpoint, args.name, args.metrics, statement, into, args.force, settings,
            args.data_root,
        )  # fmt: skip
    except OSError as e:
        if not is_environment_error(e):
            raise
        raise UserError(
            f"cannot write into {into}: {e.strerror}; pass a writable --into DIR"
        ) from e
    card = json.loads((target / pretrained.CARD).read_text())
    full, c = card["full_protocol"], card["check"]
    print(
        f"Shipped {args.name} into {target}: model.ckpt {card['checkpoint']['bytes'] / 1e6:.1f} "
        f"MB; test NLL {full['iw_nll']:.2f} (k={full['k']}, published {args.published_nll:.2f}); "
        f"check NLL {c['iw_nll']:.3f}, ELBO {c['elbo']:.3f} ({c['command']})"
    )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "ship":
            _ship(args)
        else:
            print(listing())
    except UserError as e:
        report_and_exit(e)


if __name__ == "__main__":
    main(sys.argv[1:])
