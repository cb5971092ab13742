"""Sample quality: FID and KID in a Fashion-MNIST classifier's features, with two yardsticks.

FID (Heusel et al. 2017) fits a Gaussian to each set's features and gives the Frechet
distance ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)); KID (Binkowski et al. 2018)
is the unbiased MMD^2 of the two sets under the kernel (a.b / d + 1)^3, averaged over random
subsets, so about 0 (slightly negative, even) for two sets from one distribution. Both come
from torchmetrics, given the classifier's penultimate layer as their feature extractor. FID
is biased by the sample size (Chong & Forsyth 2020), so every set compared has the same
number of images, and a number means little alone: beside it stand the same distances for

- the floor: training images against the test images (real against real);
- the ceiling: a fixed bad generator, every pixel drawn independently with the test set's
  per-pixel mean and standard deviation (the right blur of colour, no garment).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

BATCH = 1000  # images per forward pass of the feature extractor


class Distances(NamedTuple):
    fid: float
    kid: float  # mean over subsets
    kid_std: float  # its standard deviation over subsets


def _chunks(images: torch.Tensor, device: torch.device) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), BATCH):
        yield images[start : start + BATCH].to(device, torch.float32)


class FeatureDistances:
    """FID and KID of image sets (N, C, H, W) in [0, 1] against one real set, whose features
    are computed once and kept (`reset_real_features=False`)."""

    def __init__(
        self,
        features: nn.Module,
        real: torch.Tensor,
        kid_subset_size: int,
        seed: int = 0,
        kid_subsets: int = 100,
    ) -> None:
        channels, height, width = real.shape[1:]
        shape = (channels, height, width)
        # normalize=True: float images in [0, 1] go to the extractor as they are (1.4+)
        self.fid = FrechetInceptionDistance(
            feature=features, reset_real_features=False, normalize=True, input_img_size=shape
        )
        with warnings.catch_warnings():  # that it keeps every feature: 10k x 128 floats here
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.kid = KernelInceptionDistance(
                feature=features,
                reset_real_features=False,
                normalize=True,
                subsets=kid_subsets,
                subset_size=kid_subset_size,
            )
        # the metrics' states beside the extractor's output (a GPU's, when it runs there)
        device = next(features.parameters(), torch.empty(0)).device
        self.fid, self.kid = self.fid.to(device), self.kid.to(device)
        self.seed, self.device = seed, device
        for chunk in _chunks(real, device):
            self.fid.update(chunk, real=True)
            self.kid.update(chunk, real=True)

    def __call__(self, fake: torch.Tensor) -> Distances:
        for chunk in _chunks(fake, self.device):
            self.fid.update(chunk, real=False)
            self.kid.update(chunk, real=False)
        fid = float(self.fid.compute())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # KID's subsets: the same draw for every set
            kid, kid_std = (float(v) for v in self.kid.compute())
        self.fid.reset()
        self.kid.reset()
        return Distances(fid, kid, kid_std)


def independent_pixels(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n images whose pixels are independent N(per-pixel mean, per-pixel std^2) of `images`,
    clipped to [0, 1]: the ceiling's bad generator."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean, std = x.mean(dim=0), x.std(dim=0)
    noise = torch.randn((n, *x.shape[1:]), generator=generator)
    return (mean + std * noise).clamp(0.0, 1.0)


def random_subset(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n images drawn without replacement, as floats in [0, 1]."""
    index = torch.randperm(len(images), generator=generator)[:n]
    return images[index].float() / 255.0


def reference_points(
    distances: Callable[[torch.Tensor], Distances],
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    n: int,
    seed: int,
) -> dict[str, Distances]:
    """The floor (n training images) and the ceiling (n independent-pixel images)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "floor": distances(random_subset(train_images, n, generator)),
        "ceiling": distances(independent_pixels(test_images, n, generator)),
    }
