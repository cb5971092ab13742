"""The schemas in Hydra's ConfigStore, under the names the primary configs list first in
their defaults: `train_schema`, `evaluate_schema`, `sample_schema`."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from vae_lab.config.schemas import EvaluateConfig, SampleConfig, TrainConfig


def register_schemas() -> None:
    """Store each command's schema; every command's entry point calls this once."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="sample_schema", node=SampleConfig)
