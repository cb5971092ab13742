"""Train the classifier with a plain loop over in-memory uint8 tensors, and measure it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vae_lab.classifier.net import FashionCNN

log = logging.getLogger(__name__)


class FitResult(NamedTuple):
    epochs: int
    seconds: float  # wall clock
    cpu_seconds: float  # this process's CPU time: what the work cost on a shared machine
    final_train_loss: float  # mean cross-entropy over the last epoch


@torch.no_grad()
def accuracy(
    net: FashionCNN, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000
) -> float:
    """The fraction of `images` (uint8, (N, C, H, W)) whose arg-max class is the label."""
    was_training = net.training
    net.eval()
    correct = 0
    for start in range(0, len(images), batch):
        x = images[start : start + batch].float() / 255.0
        correct += int((net(x).argmax(dim=1) == labels[start : start + batch]).sum())
    net.train(was_training)
    return correct / len(images)


def fit(
    net: FashionCNN,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    flip: bool,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """AdamW with a one-cycle learning rate (warm-up, then cosine down to ~0) over all
    steps: the short schedule that gets a small CNN to its accuracy in a few epochs.
    `flip` mirrors a random half of each batch left-right (garments are near-symmetric)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    steps_per_epoch = -(-len(images) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    net.train()
    start, cpu_start, mean_loss = time.perf_counter(), time.process_time(), float("nan")
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            x = images[index].float() / 255.0
            if flip:
                mirrored = torch.rand(len(x), generator=generator) < 0.5
                x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(net(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        mean_loss = total / len(images)
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss)
    return FitResult(
        epochs, time.perf_counter() - start, time.process_time() - cpu_start, mean_loss
    )
