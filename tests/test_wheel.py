"""The package as a user installs it: `python -m build` makes the sdist and the wheel, the
wheel goes into a fresh virtual environment outside the clone, and every command runs from
a directory that is not the clone, on the configs shipped inside the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import write_fashion_mnist

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src" / "vae_lab"


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _source_modules() -> set[str]:
    """Every module of src/vae_lab, by dotted name."""
    names = set()
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment with the built wheel installed, and its environment."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], REPO, dict(os.environ))
    wheels, sdists = list(dist.glob("vae_lab-*.whl")), list(dist.glob("vae_lab-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, str(wheels[0])], root, env)
    return env_dir, env


def test_the_wheel_installs_and_every_command_runs_outside_the_clone(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    env_dir, env = installed
    python = str(env_dir / "bin" / "python")
    work = tmp_path / "elsewhere"  # no configs/ here or above: only the wheel's
    data = write_fashion_mnist(tmp_path / "data")
    work.mkdir()

    # Imported from the environment, not from the clone, with every module of src/vae_lab
    # and the configs inside the package.
    probe = (
        "import json, pkgutil, vae_lab, vae_lab.configs;"
        "from vae_lab.cli.entry import CONFIG_DIR;"
        "walk = pkgutil.walk_packages(vae_lab.__path__, 'vae_lab.');"
        "names = ['vae_lab'] + [m.name for m in walk];"
        "print(json.dumps({'file': vae_lab.__file__, 'configs': CONFIG_DIR, 'modules': names}))"
    )
    found = json.loads(_run([python, "-c", probe], work, env))
    assert Path(found["file"]).is_relative_to(env_dir), found["file"]
    assert Path(found["configs"]).is_relative_to(env_dir), found["configs"]
    assert (Path(found["configs"]) / "model" / "conv.yaml").is_file()
    modules = {m for m in found["modules"] if not m.startswith("vae_lab.configs")}
    assert modules == _source_modules(), sorted(modules ^ _source_modules())

    tiny = [f"data.root={data}", "data.val_size=50", "trainer=cpu"]
    _run(["vae-lab-train", "debug=limit", *tiny, "hydra.run.dir=runs/mlp"], work, env)
    run = work / "runs" / "mlp"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["status"] == "completed", summary

    _run([python, "-m", "vae_lab.train", "debug=limit", *tiny, "model=conv",
          "hydra.run.dir=runs/conv"], work, env)  # fmt: skip
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    _run(["vae-lab-evaluate", ckpt, "eval.k=5", "eval.limit=20", f"data.root={data}"], work, env)
    _run(["vae-lab-sample", ckpt, "sample.out=s.png", f"data.root={data}"], work, env)
    assert (work / "s.png").stat().st_size > 0
    report = _run(["vae-lab-report", "runs"], work, env)
    assert "2 runs: 2 completed" in report, report
    _run(["vae-lab-classifier", f"data.root={data}", "data.val_size=50", "epochs=1",
          "out_dir=classifier"], work, env)  # fmt: skip
    assert list((work / "classifier").glob("*.pt"))
    loaded = _run(
        [python, "-c", f"import vae_lab; print(tuple(vae_lab.load({str(run)!r}).sample(3).shape))"],
        work,
        env,
    )
    assert loaded.strip() == "(3, 1, 28, 28)"
