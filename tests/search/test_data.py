"""Data: the embedded digits and CIFAR-10's python format, read from a folder."""

import pickle

import numpy as np
import pytest
import torch

from dataset_gen.space import SpaceError
from search.data import ClassifierDataModule, CoSearchDataModule, load_cifar10, load_data, split_indices


def write_cifar(folder, per_batch=6, seed=0):
    """Tiny files in CIFAR-10's own layout: dicts with bytes keys, (n, 3072) uint8 rows."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, handle, protocol=2)
        batches[name] = (data, labels)
    return batches


def test_digits_are_split_into_normalised_train_and_test():
    data = load_data("digits", seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert len(data.y_train) + len(data.y_test) == 1797
    assert len(data.y_test) == 360
    assert abs(float(data.x_train.mean())) < 1e-4
    assert data.num_classes == 10


def test_cifar10_batches_are_read_as_images_with_their_labels(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_cifar10(tmp_path)  # the parent folder works too
    assert data.x_train.shape == (30, 3, 32, 32)
    assert data.x_test.shape == (6, 3, 32, 32)
    assert data.y_train.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    # pixel (channel 1, row 2, column 3) of the first test image, after per-channel standardisation
    raw_train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32) / 255.0
    mean, std = raw_train[:, 1].mean(), raw_train[:, 1].std() + 1e-6
    expected = (batches["test_batch"][0].reshape(-1, 3, 32, 32)[0, 1, 2, 3] / 255.0 - mean) / std
    assert data.x_test[0, 1, 2, 3] == pytest.approx(expected, rel=1e-4)
    assert data.augment


def test_cifar10_missing_files_and_foreign_pickles_are_refused(tmp_path):
    with pytest.raises(SpaceError, match="data_batch_1"):
        load_cifar10(tmp_path)
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"evil": torch.nn.Linear(1, 1)},
                    handle)
    with pytest.raises(SpaceError, match="refusing to load"):
        load_cifar10(tmp_path)


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), 10)
    train, val = split_indices(labels, 0.3, seed=1)
    assert not set(train) & set(val)
    assert len(train) + len(val) == 40
    assert np.bincount(labels[val]).tolist() == [3, 3, 3, 3]
    assert np.array_equal(val, split_indices(labels, 0.3, seed=1)[1])


def test_cosearch_loader_serves_weight_and_architecture_batches(tmp_path):
    write_cifar(tmp_path, per_batch=8)
    data = load_data("cifar10", root=str(tmp_path), seed=0)
    module = CoSearchDataModule(data, batch_size=4, val_fraction=0.5, seed=0)
    loaders = module.train_dataloader()
    x, y = next(iter(loaders["train"]))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    assert len(module.train_index) + len(module.val_index) == 40
    test = ClassifierDataModule(data, batch_size=4).test_dataloader()
    assert sum(len(b[1]) for b in test) == 8
