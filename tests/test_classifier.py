"""The classifier command on the tiny data set: it trains, and its file loads weights-only.
(Its bad inputs: test_errors.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from vae_lab.classifier import store
from vae_lab.classifier.net import FashionCNN, Features
from vae_lab.cli.errors import UserError
from vae_lab.data.fashion_mnist import FashionMNISTDataModule


def test_the_classifier_trains_and_its_file_is_named_by_its_content(
    tiny_classifier: Path, tiny_data: Path
) -> None:
    digest = hashlib.sha256(tiny_classifier.read_bytes()).hexdigest()
    assert tiny_classifier.name == f"fashion_cnn-{digest[:12]}.pt"
    state = torch.load(tiny_classifier, weights_only=True)  # tensors only: nothing to run
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    info = json.loads(tiny_classifier.with_suffix(".json").read_text())
    assert info["sha256"] == digest and info["config"]["epochs"] == 2
    assert info["train_seconds"] > 0 and info["train_images"] == 250

    # the accuracy beside it is the accuracy of these weights on the test split
    net = FashionCNN(**info["arch"])
    net.load_state_dict(state)
    net.eval()
    data = FashionMNISTDataModule(root=str(tiny_data), val_size=50)
    data.load()
    images, labels = data.splits["test"]
    with torch.no_grad():
        predicted = net(images.float() / 255).argmax(1)
    assert info["test_accuracy"] == float((predicted == labels).float().mean())
    assert info["test_accuracy"] > 0.5  # ten classes: it learned where the square sits


def test_the_loaded_classifier_gives_the_saved_features(tiny_classifier: Path) -> None:
    net = store.load(tiny_classifier.parent)  # a directory: its newest classifier
    x = torch.rand(5, 1, 28, 28)
    features = Features(net)
    features.train()  # torchmetrics may call .train(): the extractor stays in eval mode
    assert not net.training and features(x).shape == (5, net.num_features)
    torch.testing.assert_close(features(x), net.features(x))


def test_a_missing_or_changed_classifier_is_one_clear_error(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=r"no Fashion-MNIST classifier in .*make classifier"):
        store.read(tmp_path)
    changed = shutil.copy(tiny_classifier, tmp_path / tiny_classifier.name)
    shutil.copy(tiny_classifier.with_suffix(".json"), tmp_path)
    with Path(changed).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="does not match the hash in its name"):
        store.load(changed)
