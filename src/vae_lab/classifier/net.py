"""A small CNN for Fashion-MNIST, and its penultimate layer as a feature extractor.

FID and KID compare two sets of images through features; Inception's are for ImageNet
photographs (and cannot be downloaded here), so the features are those of a classifier
trained on Fashion-MNIST itself (Lesort et al. 2019, "Evaluation of generative models").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FashionCNN(nn.Module):
    """Stages of conv 3x3 - max pool 2 - batch norm - ReLU, then a hidden layer (the
    features) and a linear layer to the class logits. Shapes come from `input_shape`."""

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (32, 64),
        features: int = 128,
        classes: int = 10,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        c_in, height, width = input_shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.MaxPool2d(2),  # before the element-wise layers: a quarter of their work
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            c_in, height, width = c_out, height // 2, width // 2
        self.convs = nn.Sequential(*layers, nn.Flatten())  # (N, c * h * w)
        self.hidden = nn.Sequential(nn.Linear(c_in * height * width, features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, classes))
        self.num_features = features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer's activations, (N, features), for images (N, C, H, W) in [0, 1]."""
        return self.hidden(self.convs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, (N, classes)."""
        return self.head(self.features(x))


class Features(nn.Module):
    """The classifier's penultimate layer as the feature extractor torchmetrics' FID and
    KID take (`feature=`): forward gives (N, num_features); always in eval mode."""

    def __init__(self, classifier: FashionCNN) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features  # read by torchmetrics (1.3+)

    def train(self, mode: bool = True) -> Features:
        return super().train(False)  # batch norm and dropout must stay fixed while measuring

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        param = next(self.classifier.parameters())
        return self.classifier.features(x.to(param.device, param.dtype))
