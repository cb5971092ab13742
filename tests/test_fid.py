"""FID and KID through torchmetrics with our feature extractors, against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import ComposeFn
from vae_lab.evaluation.fid import FeatureDistances, independent_pixels, random_subset


class LinearFeatures(nn.Module):
    """Fixed linear features f = W x of the pixels. Adding c to every pixel moves the
    features' mean by c W 1 and leaves their covariance as it is, so
    FID(x, x + c) = ||c W 1||^2 exactly (the trace terms cancel)."""

    def __init__(self, pixels: int = 16, features: int = 6) -> None:
        super().__init__()
        self.weight = torch.randn(features, pixels, generator=torch.Generator().manual_seed(0))
        self.num_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).double() @ self.weight.double().T


@pytest.fixture
def images() -> torch.Tensor:
    return 0.5 * torch.rand(1000, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift(images: torch.Tensor) -> None:
    features = LinearFeatures()
    distances = FeatureDistances(features, images, kid_subset_size=300, kid_subsets=20)
    same = distances(images)
    assert same.fid == pytest.approx(0.0, abs=1e-6)
    assert abs(same.kid) < same.kid_std  # unbiased: ~0, within its spread over subsets
    row_sums = features.weight.double().sum(dim=1)  # W 1
    fids, kids = [], []
    for c in (0.1, 0.2, 0.4):
        shifted = distances(images + c)
        assert shifted.fid == pytest.approx(float((c * row_sums).square().sum()), rel=1e-5)
        fids.append(shifted.fid)
        kids.append(shifted.kid)
    assert fids == sorted(fids) and kids == sorted(kids) and kids[0] > 10 * same.kid_std


def test_the_real_features_are_kept_between_sets(images: torch.Tensor) -> None:
    distances = FeatureDistances(LinearFeatures(), images, kid_subset_size=300, kid_subsets=5)
    first = distances(images + 0.1)
    distances(images)  # another set in between
    assert distances(images + 0.1) == first  # KID's subsets are drawn with the same seed


def test_the_ceiling_generator_has_the_pixel_statistics_and_nothing_else() -> None:
    g = torch.Generator().manual_seed(0)
    real = (torch.rand(4000, 1, 4, 4, generator=g) * 100 + 50).to(torch.uint8)
    fake = independent_pixels(real, 4000, g)
    assert fake.shape == (4000, 1, 4, 4) and 0 <= float(fake.min()) <= float(fake.max()) <= 1
    torch.testing.assert_close(fake.mean(0), real.float().mean(0) / 255, atol=0.01, rtol=0)
    correlation = torch.corrcoef(fake.flatten(1).T)
    assert float((correlation - torch.eye(16)).abs().max()) < 0.1  # independent pixels
    subset = random_subset(real, 10, g)
    assert subset.shape == (10, 1, 4, 4) and float(subset.max()) <= 1


def test_class_accuracy_counts_the_samples_shown_as_their_class() -> None:
    from vae_lab.evaluation.quality import class_accuracy

    # one bright pixel per image at its class's position; an identity layer reads it back
    images = torch.eye(3).repeat(2, 1).view(6, 1, 1, 3)
    reader = nn.Sequential(nn.Flatten(), nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        reader[1].weight.copy_(torch.eye(3))
    assert class_accuracy(reader, images, torch.tensor([0, 1, 2, 0, 1, 2])) == 1.0
    assert class_accuracy(reader, images, torch.tensor([0, 1, 2, 1, 0, 0])) == pytest.approx(3 / 6)


def test_a_conditional_models_samples_are_drawn_for_every_class_in_turn(
    compose_cfg: ComposeFn,
) -> None:
    from vae_lab.evaluation.quality import prior_images
    from vae_lab.models.build import build_vae

    model = build_vae(compose_cfg("conditioning=label", "latent_dim=3"), (1, 28, 28)).eval()
    images, labels = prior_images(model, 25, seed=7, batch=10)
    assert labels is not None and labels.tolist() == [i % 10 for i in range(25)]
    torch.manual_seed(7)  # the same prior draws, decoded by hand with those labels
    z = torch.cat([model.prior.sample(10), model.prior.sample(10), model.prior.sample(5)])
    expected = model.decode(z, labels).clamp(0, 1)
    torch.testing.assert_close(images, expected)
    assert not torch.allclose(images, model.decode(z, (labels + 1) % 10).clamp(0, 1))
