"""Batches cut from a data set held in one tensor: one gather per batch, nothing per sample.

Reference VAE implementations spend most of an epoch on per-image PIL transforms and
collation; here a batch is ``images[indices]`` on whatever device the tensor lives on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch


class Batch(NamedTuple):
    images: torch.Tensor  # (B, C, H, W): uint8 from the loader, float in [0, 1] on the device
    labels: torch.Tensor  # (B,) int64 class indices


class IndexBatches:
    """An iterable of `Batch`es over in-memory tensors, optionally shuffled and sharded.

    Shuffling draws a fresh permutation every pass, seeded by (seed, pass number), so a run
    is reproducible. Under data parallelism each of `world_size` ranks takes every
    `world_size`-th index of the same order, so ranks never see the same image twice; a
    shuffled (training) order is first truncated to equal shards, an evaluation order is
    not, so validation and test cover every image (the epoch-end mean is weighted by count).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        start_epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = start_epoch
        self.rank, self.world_size = rank, world_size

    def _per_rank(self) -> int:
        if self.shuffle:  # training: equal shards, so every rank takes the same step count
            return len(self.images) // self.world_size
        return -(-(len(self.images) - self.rank) // self.world_size)  # evaluation: every image

    def __len__(self) -> int:
        return -(-self._per_rank() // self.batch_size)  # ceil: the last batch may be short

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.images)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
            self.epoch += 1
        else:
            order = torch.arange(n)
        if self.shuffle:
            order = order[: self._per_rank() * self.world_size]
        order = order[self.rank :: self.world_size]
        order = order.to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield Batch(self.images[index], self.labels[index])
