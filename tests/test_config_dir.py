"""Where the commands find their configs, and a user's own config directory beside them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra

from vae_lab.cli.config_dir import clone_configs, config_dir

REPO = Path(__file__).resolve().parents[1]


def test_a_clone_reads_its_own_configs_folder() -> None:
    # The folder a user of the clone edits, not a copy of it.
    assert clone_configs() == REPO / "configs"
    assert config_dir() == str(REPO / "configs")


def test_a_users_config_directory_joins_through_hydra_searchpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new option of the model group, in a directory of the user's own: the documented
    # `hydra.searchpath` override makes it an option like the shipped ones.
    mine = tmp_path / "my_configs" / "model"
    mine.mkdir(parents=True)
    wide = yaml.safe_load((REPO / "configs" / "model" / "mlp.yaml").read_text())
    wide["encoder"]["hidden_sizes"] = [1024]
    (mine / "wide_mlp.yaml").write_text(yaml.safe_dump(wide))
    from vae_lab.train import cli

    argv = [f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]", "model=wide_mlp"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["vae_lab.train", *argv, "--cfg", "job"])
    try:
        cli()
    finally:
        GlobalHydra.instance().clear()
    composed = yaml.safe_load(capsys.readouterr().out)
    assert composed["model"]["encoder"]["hidden_sizes"] == [1024]
    assert composed["model"]["decoder"]["hidden_sizes"] == [256, 512]  # the rest as shipped
