"""The data module: files found, validated, split, batched by indexing, binarized."""

from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_TEST, TINY_TRAIN, write_fashion_mnist
from vae_lab.cli.errors import UserError
from vae_lab.data import files
from vae_lab.data.batches import Batch, IndexBatches
from vae_lab.data.fashion_mnist import FashionMNISTDataModule
from vae_lab.data.idx import IdxFormatError, read_idx


def _module(root: Path, **kwargs: object) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(root=str(root), val_size=50, batch_size=32, **kwargs)  # type: ignore[arg-type]
    dm.setup("fit")
    return dm


def test_splits_shapes_and_dtypes(tiny_data: Path) -> None:
    dm = _module(tiny_data)
    assert dm.input_shape == (1, 28, 28)
    sizes = {k: len(x) for k, (x, _) in dm.splits.items()}
    assert sizes == {"train": TINY_TRAIN - 50, "val": 50, "test": TINY_TEST}
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Batch)
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (32, 1, 28, 28)
    assert batch.labels.dtype == torch.int64 and batch.labels.shape == (32,)


def test_split_is_seeded_and_disjoint(tiny_data: Path) -> None:
    a, b, c = _module(tiny_data), _module(tiny_data), _module(tiny_data, split_seed=1)
    assert torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert not torch.equal(a.splits["val"][0], c.splits["val"][0])
    # train and validation partition the training file: every image is in exactly one
    together = torch.cat([a.splits["train"][0], a.splits["val"][0]]).flatten(1)
    original = torch.cat([c.splits["train"][0], c.splits["val"][0]]).flatten(1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, original.tolist()))


def test_last_split_holds_out_the_file_tail_in_order(tiny_data: Path) -> None:
    """`val_split=last`: validation is the last val_size images of the training file, in
    file order (the VampPrior code's split), read here straight from the file."""
    from vae_lab.data.idx import read_idx

    raw = read_idx(tiny_data / "train-images-idx3-ubyte.gz", expected_ndim=3)
    dm = _module(tiny_data, val_split="last")
    assert torch.equal(dm.splits["val"][0].squeeze(1), raw[TINY_TRAIN - 50 :])
    assert torch.equal(dm.splits["train"][0].squeeze(1), raw[: TINY_TRAIN - 50])


def test_batches_cover_the_split_once_per_pass() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    batches = IndexBatches(images, torch.arange(10), batch_size=4, shuffle=True, seed=3)
    assert len(batches) == 3
    first = torch.cat([b.images.flatten() for b in batches])
    second = torch.cat([b.images.flatten() for b in batches])
    assert sorted(first.tolist()) == list(range(10)) == sorted(second.tolist())
    assert not torch.equal(first, second)  # a fresh order each pass
    assert [len(b.images) for b in batches] == [4, 4, 2]


def test_ranks_see_disjoint_equal_shards() -> None:
    images = torch.arange(11, dtype=torch.uint8).view(11, 1, 1, 1)
    seen = []
    for rank in range(2):
        loader = IndexBatches(
            images, torch.arange(11), 3, shuffle=True, seed=0, rank=rank, world_size=2
        )
        seen.append(torch.cat([b.images.flatten() for b in loader]).tolist())
    assert len(seen[0]) == len(seen[1]) == 5
    assert not set(seen[0]) & set(seen[1])


def test_batches_become_float_on_the_device(tiny_data: Path) -> None:
    dm = _module(tiny_data)
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert batch.images.dtype == torch.float32
    assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
    assert batch.images.max() > 0.5  # the bright squares survive the conversion


def test_binarized_eval_sets_are_fixed(tiny_data: Path) -> None:
    a, b = _module(tiny_data, binarize="dynamic"), _module(tiny_data, binarize="dynamic")
    for split in ("val", "test"):
        values = set(a.splits[split][0].unique().tolist())
        assert values <= {0, 255} and len(values) == 2
        assert torch.equal(a.splits[split][0], b.splits[split][0])


def test_found_in_torchvision_layout_and_raw(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", n_train=20, n_test=10)
    located = files.locate(str(tmp_path), "unused", download=False)
    assert located["test"].images.name == "t10k-images-idx3-ubyte"
    assert located["train"].images.name == "train-images-idx3-ubyte.gz"


def test_missing_data_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"looked in: .*empty.*make data"):
        files.locate(str(tmp_path / "empty"), "unused", download=False)


def test_mismatched_counts_are_rejected(tmp_path: Path, tiny_data: Path) -> None:
    shutil.copytree(tiny_data, tmp_path / "d")
    other = write_fashion_mnist(tmp_path / "other", n_train=TINY_TRAIN + 1)
    shutil.copy(other / "train-labels-idx1-ubyte.gz", tmp_path / "d")
    with pytest.raises(IdxFormatError, match="do not belong together"):
        _module(tmp_path / "d")


def test_val_size_out_of_range(tiny_data: Path) -> None:
    with pytest.raises(UserError, match=r"data\.val_size"):
        FashionMNISTDataModule(root=str(tiny_data), val_size=TINY_TRAIN).setup("fit")


@pytest.mark.skipif(
    not files._find_in(files.SYSTEM_DIR), reason="system Fashion-MNIST not installed"
)
def test_real_fashion_mnist_reads_whole() -> None:
    dm = FashionMNISTDataModule()  # no root: the system data package
    dm.setup("fit")
    assert dm.input_shape == (1, 28, 28)
    assert len(dm.splits["train"][0]) + len(dm.splits["val"][0]) == 60_000
    assert len(dm.splits["test"][0]) == 10_000
    assert torch.bincount(dm.splits["test"][1]).tolist() == [1000] * 10


@pytest.fixture
def local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Fashion-MNIST mirror on 127.0.0.1 serving tiny `.gz` files, and torchvision's
    downloader pointed at it (its list of mirrors and checksums): the real download code,
    without the network this machine lacks. Yields the directory the mirror serves."""
    from torchvision.datasets import FashionMNIST

    served = tmp_path / "mirror"
    written = write_fashion_mnist(tmp_path / "written", n_train=20, n_test=10)
    served.mkdir()
    resources = []
    for stem in (s for pair in files.SPLIT_FILES.values() for s in pair):
        gz = written / f"{stem}.gz"
        data = gz.read_bytes() if gz.is_file() else gzip.compress((written / stem).read_bytes())
        (served / f"{stem}.gz").write_bytes(data)
        resources.append((f"{stem}.gz", hashlib.md5(data).hexdigest()))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    monkeypatch.setattr(files, "SYSTEM_DIR", tmp_path / "no-system-package")
    try:
        yield written
    finally:
        server.shutdown()
        server.server_close()


def test_download_fills_the_cache_when_asked(local_mirror: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="not found"):
        files.locate(None, str(cache), download=False)
    dm = FashionMNISTDataModule(cache_dir=str(cache), download=True, val_size=5)
    dm.prepare_data()  # fetched over HTTP, checked against the md5s, unpacked
    dm.setup("fit")
    assert (cache / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    expected = read_idx(local_mirror / "t10k-images-idx3-ubyte", 3).unsqueeze(1)
    assert torch.equal(dm.splits["test"][0], expected)  # the images the mirror served


def test_a_failed_download_is_one_clear_error(
    local_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import FashionMNIST

    (name, _), *rest = FashionMNIST.resources
    monkeypatch.setattr(FashionMNIST, "resources", [(name, "0" * 32), *rest])  # corrupted
    with pytest.raises(UserError, match=r"downloading Fashion-MNIST into .*cache failed"):
        files.locate(None, str(tmp_path / "cache"), download=True)


def test_dynamic_binarization_draws_fresh_training_pixels(tiny_data: Path) -> None:
    class FakeModule:
        dtype = torch.float32

    class FakeTrainer:  # only what on_after_batch_transfer reads
        training = True
        lightning_module = FakeModule()

    dm = _module(tiny_data, binarize="dynamic")
    raw = next(iter(dm.val_dataloader()))
    dm.trainer = FakeTrainer()  # type: ignore[assignment]
    raw = Batch(torch.full_like(raw.images, 128), raw.labels)  # every pixel p = 0.5
    first, second = dm.on_after_batch_transfer(raw, 0), dm.on_after_batch_transfer(raw, 0)
    assert set(first.images.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first.images, second.images)
