"""Shipped pretrained models (vae_lab.pretrained): one made by the real `ship` command from
the session's tiny run into a registry folder of the test's own, then listed, loaded,
evaluated, sampled and refused by name through the commands' real entry points; and every
model that really ships, measured again on the real Fashion-MNIST against its card."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import vae_lab
import vae_lab.pretrained as pretrained
from tests.conftest import one_line_error, run_in_process, tiny_overrides
from tests.test_imports import modules
from vae_lab.cli.errors import USER_ERROR_EXIT
from vae_lab.data import files
from vae_lab.pretrained import check
from vae_lab.pretrained.__main__ import main
from vae_lab.pretrained.ship import KEEP

NAME = "tiny"
CHECK = ["--check-limit", "50", "--check-k", "5"]  # of the tiny data's 100 test images
STATEMENT = [
    *("--description", "a tiny MLP VAE, one epoch of 4 steps"),
    *("--published", "none: a test"),
    *("--published-nll", "999.0"),
    *("--retrain", "python -m vae_lab.train latent_dim=4"),
    *("--train-hours", "0.001"),
    *("--machine", "the test's"),
]
SHIPPED = pretrained.names()  # the real package's, read before any test points ROOT elsewhere
HEAVY = {"torch", "lightning", "hydra", "omegaconf"}


def _run_at_import(module: str) -> set[str]:
    """The modules that importing `module` runs: it, its parent packages, and what each
    imports at the top of its file (not in a function, not under TYPE_CHECKING), followed
    through vae_lab."""
    known = modules()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for found in [name, *parents]:
            if found in seen:
                continue
            seen.add(found)
            if found not in known:
                continue
            for node in ast.parse(known[found].read_text()).body:
                if isinstance(node, ast.Import):
                    todo += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    todo += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return {name for name in seen if name in known or "." not in name}


def test_importing_the_registry_imports_neither_torch_nor_lightning() -> None:
    # vae_lab.run.checkpoints imports it: a listing needs no deep-learning stack
    ran = _run_at_import("vae_lab.pretrained")
    assert "vae_lab.cli.errors" in ran
    assert not {name.split(".")[0] for name in ran} & HEAVY, sorted(ran)


def _evaluate(ckpt: str | Path, cwd: Path, data: Path, *settings: str) -> dict[str, Any]:
    """`python -m vae_lab.evaluate ckpt_path=CKPT SETTINGS` in `cwd`: its metrics.json."""
    cwd.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        run_in_process("evaluate", [f"ckpt_path={ckpt}", f"data.root={data}", *settings], cwd, mp)
    (out,) = cwd.glob("outputs/evaluate/*/*/metrics.json")
    return dict(json.loads(out.read_text()))


def _ship_args(source: Path, metrics: Path, into: Path, data: Path, *more: str) -> list[str]:
    return ["ship", str(source), "--name", NAME, "--metrics", str(metrics), *STATEMENT, *CHECK,
            "--data-root", str(data), "--into", str(into), *more]  # fmt: skip


@pytest.fixture(scope="module")
def made(
    trained_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """(the registry folder with `tiny` shipped into it, the source checkpoint, its metrics.json
    from evaluate), made once by the real commands."""
    work = tmp_path_factory.mktemp("ship")
    run = shutil.copytree(trained_run, work / "run")  # evaluate writes beside the run
    metrics = _evaluate(run, work / "evaluated", tiny_data, "eval.k=5")
    metrics_file = work / "metrics.json"
    metrics_file.write_text(json.dumps(metrics))
    registry = work / "registry"
    source = run / "checkpoints" / "last.ckpt"
    main(_ship_args(source, metrics_file, registry, tiny_data))
    return registry, source, metrics_file


@pytest.fixture
def registry(made: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped models are the made registry's, for this test."""
    monkeypatch.setattr(pretrained, "ROOT", made[0])
    yield made[0]


def _files(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")}


def test_ship_writes_the_weights_without_training_state_and_a_card(
    registry: Path, made: tuple[Path, Path, Path], trained_run: Path
) -> None:
    _, source, metrics_file = made
    assert pretrained.names() == [NAME]
    model = pretrained.checkpoint(NAME)
    assert model == registry / NAME / "model.ckpt"
    assert sorted(p.name for p in registry.iterdir()) == [NAME]  # no staging folder left
    shipped = torch.load(model, weights_only=True)
    original = torch.load(source, weights_only=True)
    assert "optimizer_states" in original  # what there was to strip
    assert set(shipped) == {k for k in KEEP if k in original}
    assert model.stat().st_size < source.stat().st_size
    assert original["hyper_parameters"]["config"]["data"]["root"]  # the tiny data's
    assert shipped["hyper_parameters"]["config"]["data"]["root"] is None  # the user's, then
    card = pretrained.card(NAME)
    metrics = json.loads(metrics_file.read_text())
    assert card["name"] == NAME and card["retrain"] == "python -m vae_lab.train latent_dim=4"
    assert card["published"] == {"row": "none: a test", "iw_nll": 999.0}
    full = card["full_protocol"]
    assert (full["iw_nll"], full["elbo"], full["k"]) == (metrics["iw_nll"], metrics["elbo"], 5)
    assert full["best_epoch"] == original["epoch"] and full["epochs_trained"] == 1
    assert card["evaluate"] == f"python -m vae_lab.evaluate ckpt_path={NAME} eval.k=5"
    assert card["check"]["limit"] == 50 and card["check"]["k"] == 5
    assert card["checkpoint"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def test_the_listing_shows_each_shipped_model_and_says_when_none_ships(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    main([])
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith(f"{NAME} ")]
    card = pretrained.card(NAME)
    shown = [
        "a tiny MLP VAE",
        f"{card['full_protocol']['iw_nll']:.2f} (k=5, 100 images)",
        "999.00",
        f"{card['check']['iw_nll']:.2f} (k=5, first 50, seed 0)",
        card["retrain"],
    ]
    assert all(part in row for part in shown), row
    monkeypatch.setattr(pretrained, "ROOT", tmp_path / "empty")
    main(["list"])
    assert "No pretrained model ships with this version of vae_lab yet" in capsys.readouterr().out


def test_load_by_name_gives_the_source_checkpoints_weights(
    registry: Path, made: tuple[Path, Path, Path]
) -> None:
    model = vae_lab.load(NAME)
    original = torch.load(made[1], weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def test_evaluate_by_name_measures_what_the_source_does_and_writes_nothing_beside_it(
    registry: Path,
    made: tuple[Path, Path, Path],
    tiny_data: Path,
    tmp_path: Path,
    capsys: Any,
) -> None:
    before = _files(registry)
    settings = check.command(NAME, pretrained.card(NAME)["check"]).split()[4:]  # eval.split=...
    by_name = _evaluate(NAME, tmp_path / "a", tiny_data, *settings)
    assert "Nothing written beside" in capsys.readouterr().out
    assert _files(registry) == before
    assert by_name["run_dir"] is None and by_name["images"] == 50
    source = shutil.copy(made[1], tmp_path / "source.ckpt")  # evaluate logs beside its file
    by_path = _evaluate(source, tmp_path / "b", tiny_data, *settings)
    assert by_name["iw_nll"] == pytest.approx(by_path["iw_nll"], abs=1e-6)
    card = pretrained.card(NAME)  # the check figure is evaluate's, measured by ship
    assert card["check"]["iw_nll"] == pytest.approx(by_name["iw_nll"], abs=1e-6)
    assert card["check"]["elbo"] == pytest.approx(by_name["elbo"], abs=1e-6)


def test_sample_by_name(
    registry: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s.png"
    args = [f"ckpt_path={NAME}", f"data.root={tiny_data}", f"sample.out={out}", "sample.n=4"]
    run_in_process("sample", args, tmp_path, monkeypatch)
    assert out.stat().st_size > 0


def test_an_unknown_name_is_one_line_naming_the_listing(
    registry: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    args = ["ckpt_path=nonesuch", f"data.root={tiny_data}"]
    line = one_line_error("evaluate", args, tmp_path, monkeypatch, capsys)
    assert "checkpoint nonesuch does not exist" in line
    assert "`python -m vae_lab.pretrained` lists the shipped models" in line


def test_training_cannot_resume_from_a_shipped_model(
    registry: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    args = [*tiny_overrides(tiny_data, tmp_path / "run"), f"ckpt_path={NAME}", "latent_dim=4"]
    line = one_line_error("train", args, tmp_path, monkeypatch, capsys)
    assert f"error: {NAME} is a shipped model" in line and "cannot be resumed" in line
    assert not (tmp_path / "run").exists()


def test_ship_replaces_a_model_only_with_force(
    made: tuple[Path, Path, Path], tiny_data: Path, tmp_path: Path, capsys: Any
) -> None:
    _, source, metrics = made
    into = tmp_path / "registry"
    main(_ship_args(source, metrics, into, tiny_data))
    (into / NAME / "card.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(_ship_args(source, metrics, into, tiny_data))
    main(_ship_args(source, metrics, into, tiny_data, "--force"))
    assert json.loads((into / NAME / "card.json").read_text())["name"] == NAME
    assert sorted(p.name for p in into.iterdir()) == [NAME]
    assert "Shipped tiny into" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("missing", "does not exist"),
        ("text", "is not a readable checkpoint: it is a text file"),
        ("slash", "--name 'a/b' is not a model name"),
        ("exists", "exists; pass --force to replace it"),
        ("other metrics", "measured the checkpoint of epoch 99, step 7"),
        ("no metrics", "--metrics"),
    ],
)
def test_a_bad_ship_is_one_line(
    case: str,
    says: str,
    made: tuple[Path, Path, Path],
    tiny_data: Path,
    tmp_path: Path,
    capsys: Any,
) -> None:
    _, source, metrics = made
    into = tmp_path / "registry"
    args = _ship_args(source, metrics, into, tiny_data)
    if case == "missing":
        args[1] = str(tmp_path / "nowhere.ckpt")
    elif case == "text":
        args[1] = str(tmp_path / "notes.ckpt")
        Path(args[1]).write_text("not a checkpoint\n")
    elif case == "slash":
        args[args.index("--name") + 1] = "a/b"
    elif case == "exists":
        (into / NAME).mkdir(parents=True)
    elif case == "other metrics":
        other = {**json.loads(metrics.read_text()), "epoch": 99, "global_step": 7}
        args[args.index("--metrics") + 1] = str(tmp_path / "other.json")
        (tmp_path / "other.json").write_text(json.dumps(other))
    elif case == "no metrics":
        args[args.index("--metrics") + 1] = str(tmp_path / "none.json")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == USER_ERROR_EXIT, err
    (line,) = err.splitlines()
    assert line.startswith("error: ") and says in line, line
    assert not into.exists() or [p.name for p in into.iterdir()] == (
        [NAME] if case == "exists" else []
    )


@pytest.mark.skipif(
    not files._find_in(files.SYSTEM_DIR), reason="system Fashion-MNIST not installed"
)
@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_gives_the_check_figure_on_its_card(name: str) -> None:
    card = pretrained.card(name)
    model = pretrained.checkpoint(name)
    assert card["checkpoint"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    measured = check.measure(model, card["check"], data_root=files.SYSTEM_DIR)
    assert measured["iw_nll"] == pytest.approx(card["check"]["iw_nll"], abs=0.02)
    assert measured["elbo"] == pytest.approx(card["check"]["elbo"], abs=0.02)
