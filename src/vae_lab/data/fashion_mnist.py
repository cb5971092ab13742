"""The Fashion-MNIST LightningDataModule: the whole set in memory, batches by indexing."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch

from vae_lab.cli.errors import UserError
from vae_lab.data.batches import Batch, IndexBatches
from vae_lab.data.files import locate
from vae_lab.data.idx import IdxFormatError, read_idx

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _binarize_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Draw x ~ Bernoulli(pixel / 255) once, with a fixed seed; stored as uint8 0 or 255."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.bernoulli(images.float() / 255.0, generator=generator)
    return draws.to(torch.uint8) * 255


def _epochs_done(trainer: L.Trainer | None) -> int:
    """Epochs trained so far. Not `current_epoch`: right after a resume, while the loaders
    are built, that still names the checkpoint's finished epoch, and the resumed run would
    repeat that epoch's batch order."""
    if trainer is None:
        return 0
    return int(trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]


class FashionMNISTDataModule(L.LightningDataModule):
    """Fashion-MNIST from its IDX files, held as uint8 tensors of shape (N, 1, 28, 28).

    The 60k training images are split into train/validation by a permutation seeded with
    ``split_seed`` (kept apart from the run's seed, so runs of a sweep share one validation
    set), or with ``val_split="last"`` by taking the last ``val_size`` in file order; the
    test set is the official 10k. Training batches are shuffled with
    ``shuffle_seed``. Batches leave the loader as uint8 and become float in
    [0, 1] only on the training device (`on_after_batch_transfer`), a quarter of the bytes
    to move. With ``binarize="dynamic"`` each training batch is a fresh Bernoulli draw and
    validation/test are binarized once with ``binarize_seed`` (the protocol of published
    NLL tables).
    """

    def __init__(
        self,
        root: str | None = None,
        cache_dir: str = "data",
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        val_split: Literal["random", "last"] = "random",
        split_seed: int = 0,
        shuffle_seed: int = 0,
        binarize: Literal["none", "dynamic"] = "none",
        binarize_seed: int = 0,
        device_resident: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root, self.cache_dir, self.download = root, cache_dir, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.val_split = val_size, val_split
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.binarize, self.binarize_seed = binarize, binarize_seed
        self.device_resident = device_resident
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare_data(self) -> None:
        locate(self.root, self.cache_dir, self.download)

    def load(self) -> None:
        """Read and validate the files, then split; a no-op once done."""
        if self.splits:
            return
        files = locate(self.root, self.cache_dir, download=False)
        loaded = {}
        for split, f in files.items():
            images, labels = read_idx(f.images, expected_ndim=3), read_idx(f.labels, 1)
            if len(images) != len(labels):
                raise IdxFormatError(
                    f"{f.images} holds {len(images)} images but {f.labels} holds "
                    f"{len(labels)} labels; the files do not belong together"
                )
            loaded[split] = (images.unsqueeze(1), labels.long())  # (N, 1, H, W), (N,)
        train_images, train_labels = loaded["train"]
        if loaded["test"][0].shape[1:] != train_images.shape[1:]:
            raise IdxFormatError(
                f"train images are {tuple(train_images.shape[2:])} but test images are "
                f"{tuple(loaded['test'][0].shape[2:])}; the files do not belong together"
            )
        if not 0 < self.val_size < len(train_images):
            raise UserError(
                f"data.val_size={self.val_size} must be between 1 and {len(train_images) - 1} "
                f"(the training file holds {len(train_images)} images)"
            )
        val_idx, train_idx = self._split_indices(len(train_images))
        self.splits = {
            "train": (train_images[train_idx], train_labels[train_idx]),
            "val": (train_images[val_idx], train_labels[val_idx]),
            "test": loaded["test"],
        }
        if self.binarize == "dynamic":
            for offset, split in enumerate(("val", "test")):
                images, labels = self.splits[split]
                self.splits[split] = (_binarize_once(images, self.binarize_seed + offset), labels)

    def _split_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(validation, training) indices into the n training-file images.

        `random`: a permutation seeded with `split_seed`. `last`: the last `val_size` images
        in file order, unshuffled, as Tomczak & Welling's code (jmtomczak/vae_vampprior,
        utils/load_data.py) holds out its validation set.
        """
        if self.val_split == "last":
            order = torch.arange(n)
            return order[n - self.val_size :], order[: n - self.val_size]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        return order[: self.val_size], order[self.val_size :]

    @property
    def num_classes(self) -> int:
        """The number of classes a label can name (a class-conditional model's one-hot size)."""
        return len(CLASS_NAMES)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image, read from the data."""
        self.load()
        return tuple(self.splits["train"][0].shape[1:])

    def setup(self, stage: str | None = None) -> None:
        self.load()
        trainer = self.trainer
        if trainer is not None and self.device_resident:
            device = trainer.strategy.root_device
            if device.type != "cpu":  # the whole set is ~47 MB: keep it beside the model
                self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    def _batches(self, split: str, train: bool, shuffle: bool = False) -> IndexBatches:
        images, labels = self.splits[split]
        trainer = self.trainer
        return IndexBatches(
            images,
            labels,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.shuffle_seed,
            start_epoch=_epochs_done(trainer),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> IndexBatches:
        trainer = self.trainer
        # overfit_batches must see the same batch every epoch: no shuffling then
        overfitting = trainer is not None and trainer.overfit_batches > 0  # type: ignore[attr-defined]
        return self._batches("train", train=True, shuffle=not overfitting)

    def val_dataloader(self) -> IndexBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> IndexBatches:
        return self._batches("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Batch:
        trainer = self.trainer
        # uint8 -> [0, 1] on the device, in the model's dtype (bf16/64-bit precision too)
        dtype = trainer.lightning_module.dtype if trainer is not None else torch.float32
        images = batch.images.to(dtype).div_(255.0)
        if self.binarize == "dynamic" and trainer is not None and trainer.training:
            images = torch.bernoulli(images)
        return Batch(images, batch.labels)
