"""Image-classification data for the co-search: scikit-learn's digits and CIFAR-10.

- ``digits`` (the embedded default): the 1,797 8x8 grey digits shipped with scikit-learn,
  split into train and test with a fixed, stratified seed.
- ``cifar10``: the standard "python version" of CIFAR-10 (``data_batch_1`` ..
  ``data_batch_5`` and ``test_batch`` pickles) read from a local ``task.root`` (or its
  ``cifar-10-batches-py`` folder). Pickles are read with a restricted unpickler that only
  rebuilds dicts, lists, bytes and numpy arrays: a foreign file can be refused, never run.

The co-search trains weights on one part of the training split and architecture and
accelerator parameters on the other (``val_fraction``); `CoSearchDataModule` serves both as
one combined loader (``{"train": batch, "val": batch}``) for Lightning. The final network is
retrained on the whole training split and tested on the test split (`ClassifierDataModule`).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dataset_gen.space import SpaceError

__all__ = ["ImageData", "load_digits_data", "load_cifar10", "load_data", "split_indices",
           "CoSearchDataModule", "ClassifierDataModule", "DATASETS"]

DATASETS: tuple[str, ...] = ("digits", "cifar10")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"


@dataclass(frozen=True)
class ImageData:
    """A normalised image-classification dataset: ``x`` is ``(n, channels, size, size)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    augment: bool = False

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def size(self) -> int:
        return int(self.x_train.shape[2])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "train": len(self.y_train), "test": len(self.y_test),
                "channels": self.channels, "size": self.size, "classes": self.num_classes}


def _normalise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel standardisation with the training split's statistics."""
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits, split stratified into train and test.

    Parameters
    ----------
    test_fraction : float
        Share of the 1,797 images held out for testing, in (0, 1).
    seed : int
        Seed of the split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise SpaceError(f"data.test_fraction = {test_fraction!r}: expected a number in (0, 1)")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_train, x_test = _normalise(x_train, x_test)
    return ImageData("digits", x_train, y_train, x_test, y_test, 10)


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds the CIFAR-10 pickles' contents (dicts, lists, bytes, numpy arrays) and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the CIFAR-10 format")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpaceError(f"CIFAR-10 file {str(path)!r} not found: task.root must hold data_batch_1..5 and "
                         "test_batch (the 'python version' of CIFAR-10)") from None
    try:
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not CIFAR-10"
        raise SpaceError(f"CIFAR-10 file {str(path)!r} is not a CIFAR-10 python batch: {error}") from None
    if not isinstance(batch, dict):
        raise SpaceError(f"CIFAR-10 file {str(path)!r}: expected a dict with 'data' and 'labels'")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise SpaceError(f"CIFAR-10 file {str(path)!r}: missing key(s) {sorted({'data', 'labels'} - set(batch))}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise SpaceError(f"CIFAR-10 file {str(path)!r}: data has shape {data.shape} with {len(labels)} labels; "
                         "expected (n, 3072) uint8 and n labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise SpaceError(f"CIFAR-10 file {str(path)!r}: labels must lie in [0, 9]")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path) -> ImageData:
    """CIFAR-10 in its standard python format from a local folder.

    Parameters
    ----------
    root : path-like
        A folder holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, or holding
        ``cifar-10-batches-py/`` with them (as the official tarball unpacks).

    Returns
    -------
    ImageData
        ``(n, 3, 32, 32)`` float32 images standardised per channel; training augmentation
        (random crop with 4-pixel padding, horizontal flip) enabled.
    """
    if root is None or str(root) == "":
        raise SpaceError("task.root: required for cifar10 (the folder with data_batch_1..5 and test_batch)")
    folder = Path(root).expanduser()
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise SpaceError(f"task.root = {str(root)!r}: not a folder")
    parts = [_read_cifar_batch(folder / name) for name in CIFAR_TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(folder / CIFAR_TEST_FILE)
    x_train, x_test = _normalise(x_train, x_test.astype(np.float32) / 255.0)
    return ImageData("cifar10", x_train, y_train, x_test, y_test, 10, augment=True)


def _subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(y):
        return x, y
    if limit < 1:
        raise SpaceError(f"data limit = {limit!r}: expected a positive integer or null")
    keep = np.sort(np.random.default_rng(seed).choice(len(y), size=limit, replace=False))
    return x[keep], y[keep]


def load_data(name: str, root: str | None = None, limit_train: int | None = None, limit_test: int | None = None,
              test_fraction: float = 0.2, augment: bool | None = None, seed: int = 0) -> ImageData:
    """Load a dataset by name (``data`` config node), optionally subsampled.

    Parameters
    ----------
    name : {"digits", "cifar10"}
    root : str, optional
        CIFAR-10's folder (ignored for digits).
    limit_train, limit_test : int, optional
        Keep at most this many training / test images (uniformly, seeded): quick runs.
    test_fraction : float
        digits only: the share held out for testing.
    augment : bool, optional
        Override the dataset's default training augmentation (on for CIFAR-10).
    seed : int
        Seed of splits and subsampling.
    """
    if name == "digits":
        data = load_digits_data(test_fraction, seed)
    elif name == "cifar10":
        data = load_cifar10(root)
    else:
        raise SpaceError(f"data.name = {name!r}: expected one of {list(DATASETS)}")
    x_train, y_train = _subsample(data.x_train, data.y_train, limit_train, seed)
    x_test, y_test = _subsample(data.x_test, data.y_test, limit_test, seed + 1)
    return ImageData(data.name, x_train, y_train, x_test, y_test, data.num_classes,
                     data.augment if augment is None else bool(augment))


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the training set into weight-training and architecture parts."""
    if not 0 < val_fraction < 1:
        raise SpaceError(f"data.val_fraction = {val_fraction!r}: expected a number in (0, 1)")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(members) * val_fraction))
        cut = min(max(cut, 1), len(members) - 1) if len(members) > 1 else 0
        val.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class _Augmented(Dataset):
    """Random crop (zero padding of 4) and horizontal flip, per image, on tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int = 4) -> None:
        self.x, self.y, self.pad = x, y, pad

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.x[i]  # (C, H, W)
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        size = image.shape[-1]
        padded = torch.nn.functional.pad(image, (self.pad,) * 4)
        top, left = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,)))
        return padded[:, top:top + size, left:left + size], self.y[i]


def _dataset(x: np.ndarray, y: np.ndarray, augment: bool) -> Dataset:
    tx, ty = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    return _Augmented(tx, ty) if augment else TensorDataset(tx, ty)


class CoSearchDataModule(L.LightningDataModule):
    """Weight batches from one part of the training split, architecture batches from the other.

    ``train_dataloader`` returns ``{"train": loader, "val": loader}``; Lightning combines them
    (``max_size_cycle``: an epoch is one pass over the larger part).
    """

    def __init__(self, data: ImageData, batch_size: int = 64, val_fraction: float = 0.5, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise SpaceError(f"data.batch_size = {batch_size!r}: expected a positive integer")
        self.data = data
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_index, self.val_index = split_indices(data.y_train, val_fraction, seed)

    def _loader(self, index: np.ndarray, shuffle: bool, augment: bool) -> DataLoader:
        dataset = _dataset(self.data.x_train[index], self.data.y_train[index], augment)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          generator=generator if shuffle else None, drop_last=shuffle and len(index) > self.batch_size)

    def train_dataloader(self) -> dict[str, DataLoader]:
        return {"train": self._loader(self.train_index, True, self.data.augment),
                "val": self._loader(self.val_index, True, False)}

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_index, False, False)


class ClassifierDataModule(L.LightningDataModule):
    """Plain training of a fixed network: ``train`` indices of the training split, then
    evaluation on ``eval`` indices of it (a validation part) or, by default, the test split."""

    def __init__(self, data: ImageData, batch_size: int = 64, train_index: Sequence[int] | None = None,
                 eval_index: Sequence[int] | None = None, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.train_index = np.arange(len(data.y_train)) if train_index is None else np.asarray(train_index)
        self.eval_index = None if eval_index is None else np.asarray(eval_index)

    def train_dataloader(self) -> DataLoader:
        x, y = self.data.x_train[self.train_index], self.data.y_train[self.train_index]
        return DataLoader(_dataset(x, y, self.data.augment), batch_size=self.batch_size, shuffle=True,
                          num_workers=self.num_workers, generator=torch.Generator().manual_seed(self.seed),
                          drop_last=len(y) > self.batch_size)

    def test_dataloader(self) -> DataLoader:
        if self.eval_index is None:
            x, y = self.data.x_test, self.data.y_test
        else:
            x, y = self.data.x_train[self.eval_index], self.data.y_train[self.eval_index]
        return DataLoader(_dataset(x, y, False), batch_size=max(self.batch_size, 256), shuffle=False,
                          num_workers=self.num_workers)
