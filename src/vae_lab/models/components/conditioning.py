"""What an encoder and decoder are conditioned on, besides x and z: nothing, or the label.

A conditioning turns a batch's labels into a vector c of `dim` numbers per image (or None),
which the encoder and decoder take as a second input: q(z|x, c) and p(x|z, c). With the
class label as c this is the conditional VAE of Sohn et al. 2015 (their Sec. 4: both
networks see y, the prior over z stays p(z)), so `decode(z, y)` draws an image of class y.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn


class Conditioning(nn.Module, ABC):
    """Labels -> the condition c (B, dim) that encoder and decoder see, or None."""

    conditions: bool  # whether the encoder and decoder get a condition at all
    dim: int  # numbers per image handed to them
    num_classes: int  # classes a label can name (from the data)

    @abstractmethod
    def forward(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """c for these labels (B,), or None for no condition."""


class NoConditioning(Conditioning):
    """An unconditional VAE: q(z|x), p(x|z)."""

    conditions, dim = False, 0

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes  # what the data has; unused

    def forward(self, labels: torch.Tensor | None) -> None:
        return None


class LabelConditioning(Conditioning):
    """The class label, one-hot: c = onehot(y), `num_classes` numbers (from the data)."""

    conditions = True

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(
                f"conditioning on the label needs 2 or more classes, got {num_classes}"
            )
        self.num_classes = num_classes
        self.dim = num_classes

    def forward(self, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError(
                "this model is class-conditional (conditioning=label): pass the labels, "
                f"class indices in [0, {self.num_classes})"
            )
        # no range check here: it would read the labels back from a GPU every step
        # (F.one_hot checks them on the CPU; on a GPU an index out of range is a device error)
        return F.one_hot(labels.long(), self.num_classes).float()


def join(v: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """v (..., n) with the condition c (B, m) appended: (..., n + m); c broadcasts over the
    leading sample dims of v, e.g. z of shape (K, B, D) for K samples per image."""
    if c is None:
        return v
    return torch.cat([v, c.to(v.dtype).expand(*v.shape[:-1], c.shape[-1])], dim=-1)
