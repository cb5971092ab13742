"""Shared fixtures: tiny IDX files written by the tests, and the real config, shrunk.

Tiers (markers in pyproject.toml): a test that trains a model of its own or runs long is
`slow`, one that starts Python processes is `cli`, one that needs the private SLURM cluster
is `slurm`; the rest is the fast tier, `make test`. The fast tier trains one tiny model
(`trained_run`) and one tiny classifier (`tiny_classifier`), once per session: read them,
or copy them before writing into them, rather than training another."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from inspect import CO_OPTIMIZED
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from vae_lab.cli.entry import CONFIG_DIR
from vae_lab.data.idx import write_idx

TINY_TRAIN, TINY_TEST = 300, 100

if "PYTEST_XDIST_WORKER" in os.environ:
    # Workers side by side on the cores: the commands a test starts (which inherit this)
    # get one OpenMP thread each too, as the workers' torch has (`one_thread`).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _images(
    n: int, seed: int, shape: tuple[int, int] = (28, 28)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky images whose class decides where a bright square sits: learnable, not noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 60, (n, *shape), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        r, c = 2 + 2 * (label // 5) * 4, 2 + (label % 5) * 5
        images[i, r : r + 8, c : c + 6] = 230
    return images, labels.to(torch.uint8)


def write_fashion_mnist(root: Path, n_train: int = TINY_TRAIN, n_test: int = TINY_TEST) -> Path:
    """Write the four Fashion-MNIST files (train gzip-compressed, test raw) into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed, suffix in (("train", n_train, 0, ".gz"), ("t10k", n_test, 1, "")):
        images, labels = _images(n, seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion-mnist"))


def tiny_overrides(data_root: Path, output_dir: Path) -> list[str]:
    """Overrides that shrink a run to seconds on the CPU, writing under `output_dir`."""
    return [
        f"data.root={data_root}",
        "data.val_size=50",
        "data.batch_size=32",
        "data.eval_batch_size=50",
        f"paths.output_dir={output_dir}",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0",
    ]


ComposeFn = Callable[..., DictConfig]

# Quick runs of the tiny data: 2 steps per epoch, one validation and test batch, a small IW
# bound, no embedding projector.
QUICK = (
    "latent_dim=3",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "eval.k=3",
    "callbacks.embedding_projector=null",
)


def compose_tiny(data_root: Path, output_dir: Path, *overrides: str) -> DictConfig:
    """configs/train.yaml with the tiny overrides plus `overrides`, without Hydra's node."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*tiny_overrides(data_root, output_dir), *overrides])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.fixture(scope="session")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast tier's one tiny end-to-end training: a run directory with checkpoints of one
    epoch of 4 steps (latent_dim=4, the default MLP and Bernoulli), its events, pictures,
    metrics.json and the epoch timer's timing.json, trained once per session (per xdist
    worker) and shared. Copy it before resuming or evaluating from it: both write into the
    run directory."""
    from vae_lab.train import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    timer = "+callbacks.epoch_timer._target_=vae_lab.callbacks.timing.EpochTimer"
    train(compose_tiny(tiny_data, run_dir, "trainer.max_epochs=1", "latent_dim=4", timer))
    return run_dir


@pytest.fixture
def compose_cfg(tiny_data: Path, tmp_path: Path) -> ComposeFn:
    """Compose configs/train.yaml with the tiny overrides plus the test's own."""

    def _compose(*overrides: str, tiny: bool = True) -> DictConfig:
        if tiny:
            return compose_tiny(tiny_data, tmp_path / "run", *overrides)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
        with open_dict(cfg):
            cfg.pop("hydra", None)
        return cfg

    return _compose


def _entry_points() -> dict[str, Callable[[], None]]:
    from vae_lab import evaluate, report, sample
    from vae_lab.classifier.__main__ import main as classifier
    from vae_lab.train import cli

    return {
        "evaluate": evaluate.main,
        "sample": sample.main,
        "train": cli,
        "classifier": classifier,
        "report": report.main,
    }


COMMANDS = ("evaluate", "sample", "train")  # the commands that take a checkpoint


def run_in_process(
    command: str, args: Sequence[str], cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run `python -m vae_lab.<command> ARGS` through its real entry point in this process,
    in `cwd` (fast: no new interpreter). A SystemExit it ends with propagates."""
    from hydra.core.global_hydra import GlobalHydra

    from vae_lab.cli.entry import TOKEN_VAR

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"vae_lab.{command}", *args])
    monkeypatch.setenv(TOKEN_VAR, "test")  # cli() sets it; monkeypatch puts it back
    try:
        _entry_points()[command]()
    finally:
        GlobalHydra.instance().clear()


def one_line_error(
    command: str,
    args: Sequence[str],
    cwd: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run the command as `run_in_process` does; check that it ends with one `error:` line
    and exit status 2, no traceback, and return that line."""
    from vae_lab.cli.errors import USER_ERROR_EXIT

    with pytest.raises(SystemExit) as exit_info:
        run_in_process(command, args, cwd, monkeypatch)
    err = capsys.readouterr().err
    assert exit_info.value.code == USER_ERROR_EXIT, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def run_cli(
    args: Sequence[str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m vae_lab.train ARGS` as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "vae_lab.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """torch on one thread in the test process (commands started as processes choose their
    own). Tiny models gain nothing from a second, and on a machine whose cores are taken by
    other work (another test, an xdist worker), OpenMP threads waiting for each other make
    every op slow: a 3-image MLP step took 0.16 s on 2 threads here, 2 ms on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compose_classifier(data_root: Path, out_dir: Path, *overrides: str) -> DictConfig:
    """configs/classifier.yaml shrunk to the tiny data set, writing into `out_dir`."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "classifier",
            overrides=[
                f"data.root={data_root}",
                "data.val_size=50",
                "data.batch_size=32",
                f"out_dir={out_dir}",
                "epochs=2",
                "runtime.num_threads=1",
                *overrides,
            ],
        )


@pytest.fixture(scope="session")
def tiny_classifier(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The weights file of a classifier trained for a few steps on the tiny data set."""
    from vae_lab.classifier.__main__ import run

    threads = torch.get_num_threads()  # the command sets it for the process: put it back
    try:
        return run(compose_classifier(tiny_data, tmp_path_factory.mktemp("classifier")))
    finally:
        torch.set_num_threads(threads)


# --- `--check-modules`: every module of vae_lab exercised by the tests that ran --------------

SRC = Path(__file__).resolve().parents[1] / "src" / "vae_lab"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--check-modules",
        action="store_true",
        help="fail unless the tests that ran called code of every module under src/vae_lab "
        "(`make test-modules` checks the fast tier)",
    )


def _modules_with_code() -> dict[str, str]:
    """{file: module} for each module under src/vae_lab that defines a function."""
    import ast

    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(tree)):
            parts = path.relative_to(SRC.parent).with_suffix("").parts
            modules[str(path)] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return modules


_called: set[str] = set()
_MISSED = pytest.StashKey[list[str]]()


def _trace(frame, event, arg):  # type: ignore[no-untyped-def]
    # Called at each new Python frame; returning None traces no lines inside it. Functions
    # only: a module's or class's body runs when it is imported, which exercises nothing.
    if frame.f_code.co_flags & CO_OPTIMIZED:
        _called.add(frame.f_code.co_filename)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--check-modules"):
        import threading

        threading.settrace(_trace)
        sys.settrace(_trace)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not config.getoption("--check-modules"):
        return
    sys.settrace(None)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller checks the union
        workeroutput["called"] = sorted(_called)
        return
    missed = [m for f, m in _modules_with_code().items() if f not in _called]
    config.stash[_MISSED] = missed
    if missed and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    missed = config.stash.get(_MISSED, None)
    if missed is None:
        return
    terminalreporter.write_line(
        f"--check-modules: no test called a function of {', '.join(missed)}"
        if missed
        else "--check-modules: the tests called functions of every module of vae_lab",
        red=bool(missed),
    )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:  # xdist's hook, on the controller
    _called.update(getattr(node, "workeroutput", {}).get("called", []))
