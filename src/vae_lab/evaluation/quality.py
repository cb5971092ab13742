"""`evaluate eval.fid=true`: FID and KID of a model's prior samples, floor and ceiling beside.

The model's images are the likelihood's mean E[x|z] at z ~ p(z), the pictures `sample`
writes; they are compared with the whole 8-bit test set (the real set, its features
computed once), as are the floor and ceiling of `vae_lab.evaluation.fid`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from vae_lab.classifier import store
from vae_lab.classifier.net import Features
from vae_lab.classifier.store import Stored
from vae_lab.cli.errors import UserError
from vae_lab.evaluation.fid import FeatureDistances, reference_points
from vae_lab.models.vae import VAE


@dataclass
class SampleQuality:
    fid: float
    kid: float
    kid_std: float
    fid_floor: float  # training images against the test images
    kid_floor: float
    fid_ceiling: float  # independent pixels with the test set's per-pixel mean and std
    kid_ceiling: float
    fid_samples: int  # images in every set compared with the test set
    classifier: str  # the weights file whose features were used
    classifier_test_accuracy: float | None
    # A class-conditional model: the classifier's accuracy on its samples, each drawn for a
    # label (labels 0, 1, ..., in turn): how often a sample shows the class it was asked for.
    class_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(value: Any, name: str, example: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserError(
            f"{name} must be an integer >= {least}, got {value!r}; for example {example}"
        )
    return value


def check_fid_options(eval_cfg: DictConfig) -> None:
    """The values of `eval.fid*` that need no data to check; a UserError for a bad one."""
    if not isinstance(eval_cfg.fid, bool):
        raise UserError(f"eval.fid must be true or false, got {eval_cfg.fid!r}")
    n = _count(eval_cfg.fid_samples, "eval.fid_samples", "eval.fid_samples=10000", 2)
    subset = _count(
        eval_cfg.kid_subset_size, "eval.kid_subset_size", "eval.kid_subset_size=1000", 2
    )
    if subset > n:
        raise UserError(
            f"eval.kid_subset_size={subset} is more than eval.fid_samples={n}: KID draws its "
            "subsets from the samples; pass a smaller eval.kid_subset_size"
        )


def check_sizes(n: int, subset: int, train: int, test: int) -> None:
    """Against the data: n training images for the floor, subsets of the test set for KID."""
    if n > train:
        raise UserError(
            f"eval.fid_samples={n} is more than the {train} training images the floor compares "
            f"with the test set; pass eval.fid_samples={train} or fewer"
        )
    if subset > test:
        raise UserError(
            f"eval.kid_subset_size={subset} is more than the {test} test images; "
            f"pass eval.kid_subset_size={test} or fewer"
        )


@torch.no_grad()
def prior_images(
    model: VAE, n: int, seed: int, batch: int = 1000
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n decoded draws z ~ p(z), E[x|z] in [0, 1], (n, C, H, W) float32 on the CPU, and for a
    class-conditional model the label each was drawn for (labels in turn, so the classes
    share the n draws equally), else None."""
    torch.manual_seed(seed)
    labels = torch.arange(n) % model.conditioning.num_classes if model.conditional else None
    parts = []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        chunk = None if labels is None else labels[start : start + size]
        parts.append(model.decode(model.prior.sample(size), chunk).float().clamp(0, 1).cpu())
    return torch.cat(parts), labels


@torch.no_grad()
def class_accuracy(
    classifier: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """The fraction of images the classifier puts in the class they were drawn for."""
    param = next(classifier.parameters())
    hits = 0
    for i in range(0, len(images), 1000):
        logits = classifier(images[i : i + 1000].to(param.device, param.dtype))
        hits += int((logits.argmax(1).cpu() == labels[i : i + 1000]).sum())
    return hits / len(images)


def sample_quality(
    model: VAE,
    classifier: Stored,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    n: int,
    kid_subset_size: int,
    seed: int,
) -> tuple[SampleQuality, torch.Tensor]:
    """The figures, and the model's n images (for a picture of what was measured).
    Images arrive as uint8 (N, C, H, W); the classifier runs on the model's device."""
    net = store.load(classifier.weights, device=model.device).eval()
    features = Features(net)
    distances = FeatureDistances(features, test_images.float() / 255.0, kid_subset_size, seed)
    images, labels = prior_images(model, n, seed)
    own = distances(images)
    refs = reference_points(distances, train_images, test_images, n, seed)
    quality = SampleQuality(
        fid=own.fid,
        kid=own.kid,
        kid_std=own.kid_std,
        fid_floor=refs["floor"].fid,
        kid_floor=refs["floor"].kid,
        fid_ceiling=refs["ceiling"].fid,
        kid_ceiling=refs["ceiling"].kid,
        fid_samples=n,
        classifier=str(classifier.weights),
        classifier_test_accuracy=classifier.info.get("test_accuracy"),
        class_accuracy=None if labels is None else class_accuracy(net, images, labels),
    )
    return quality, images
