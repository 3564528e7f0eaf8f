"""The split, the two reading paths and the refusal of foreign data."""

import numpy as np
import pandas as pd
import pytest
import torch

from dataset_gen.common.errors import UserError
from dataset_gen.reader import read_dataset, read_metadata
from dataset_gen.simulator import SIMULATOR_VERSION
from evaluator.data import (
    PairsDataModule,
    TooFewRowsError,
    assign_split,
    encode_frame,
    log_targets,
    pair_hash,
)
from evaluator.dataset import ForeignDatasetError, check_dataset
from evaluator.features import D_PAIR
from evaluator.network import TARGET_MATRIX_COLUMNS


@pytest.fixture(scope="module")
def frame(small_dataset):
    return read_dataset(small_dataset)


def test_the_split_depends_only_on_each_rows_inputs(frame):
    split = assign_split(frame)
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert np.array_equal(assign_split(shuffled), split[shuffled.index.to_numpy()])
    # Result columns and row ids do not count; int and float spellings of a value agree.
    inputs_only = frame.drop(columns=["row_id", "feasible", "total_cycles", "energy_pj"])
    assert np.array_equal(assign_split(inputs_only), split)
    as_floats = frame.astype({"pe_rows": "float64", "in_h": "float64", "ifmap_kb": "float64"})
    assert np.array_equal(assign_split(as_floats), split)


def test_identical_pairs_always_share_a_split(frame):
    duplicated = pd.concat([frame.head(50), frame.head(50)], ignore_index=True)
    split = assign_split(duplicated)
    assert np.array_equal(split[:50], split[50:])


def test_the_split_follows_the_fractions_and_the_salt_changes_it(frame):
    split = assign_split(frame, (0.8, 0.1, 0.1))
    shares = np.bincount(split, minlength=3) / len(split)
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)
    assert not np.array_equal(assign_split(frame, salt=1), split)
    assert np.array_equal(pair_hash(frame, salt=7), pair_hash(frame.copy(), salt=7))
    with pytest.raises(ValueError, match="split"):
        assign_split(frame, (0.5, 0.1, 0.1))


def test_targets_are_natural_logs_defined_where_the_simulator_defines_them(frame):
    targets = log_targets(frame)
    feasible = frame["feasible"].to_numpy()
    cycles = TARGET_MATRIX_COLUMNS.index("total_cycles")
    area = TARGET_MATRIX_COLUMNS.index("area_mm2")
    stall = TARGET_MATRIX_COLUMNS.index("stall_cycles")
    assert np.allclose(targets[feasible, cycles], np.log(frame.loc[feasible, "total_cycles"]))
    assert np.isnan(targets[~feasible, cycles]).all()
    assert np.isfinite(targets[:, area]).all()  # area exists for every accelerator
    assert np.allclose(targets[feasible, stall], np.log1p(frame.loc[feasible, "stall_cycles"]))


def _rows(loader):
    batches = list(loader)
    layer = torch.cat([b["layer_x"] for b in batches])
    acc = torch.cat([b["acc_x"] for b in batches])
    rows = torch.cat([layer, acc], dim=1).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def test_in_memory_and_streaming_paths_serve_the_same_rows_and_statistics(small_dataset):
    memory = PairsDataModule(str(small_dataset), batch_size=256, eval_batch_size=500, in_memory=True)
    stream = PairsDataModule(str(small_dataset), batch_size=256, eval_batch_size=500, in_memory=False,
                             buffer_rows=700)
    memory.setup()
    stream.setup()
    assert not memory.streaming and stream.streaming
    assert memory.rows == stream.rows and sum(memory.rows.values()) == 3000
    for name in memory.statistics:
        assert torch.allclose(memory.statistics[name], stream.statistics[name], rtol=1e-4, atol=1e-5), name
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert np.array_equal(_rows(getattr(memory, loader)()), _rows(getattr(stream, loader)()))
    assert len(stream.train_dataloader()) == len(list(stream.train_dataloader())) == -(-memory.rows["train"] // 256)


def test_the_data_module_refuses_a_dataset_from_another_space(small_dataset, other_space_dataset):
    expected = read_metadata(small_dataset)["space_hash"]
    with pytest.raises(ForeignDatasetError, match=expected) as error:
        PairsDataModule(str(other_space_dataset), expect_space_hash=expected).setup()
    assert read_metadata(other_space_dataset)["space_hash"] in str(error.value)


def test_a_dataset_from_another_simulator_version_is_refused_naming_both(small_dataset):
    with pytest.raises(ForeignDatasetError, match=f"'{SIMULATOR_VERSION}'.*'0.0.1'"):
        check_dataset(small_dataset, expect_simulator_version="0.0.1")
    assert check_dataset(small_dataset)["simulator_version"] == SIMULATOR_VERSION


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_dataset_without_a_feasible_pair_is_refused_before_training_with_its_counts(unmappable_dataset, in_memory):
    assert not read_dataset(unmappable_dataset)["feasible"].any()
    data = PairsDataModule(str(unmappable_dataset), in_memory=in_memory)
    with pytest.raises(TooFewRowsError, match=r"60 rows, 0 feasible.*at least 2 feasible rows in every split") as error:
        data.setup()
    assert isinstance(error.value, UserError)
    assert data.statistics is None  # refused before anything was encoded or fitted


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_dataset_too_small_for_the_split_is_refused_with_its_counts(ten_pairs_dataset, in_memory):
    frame = read_dataset(ten_pairs_dataset)
    split = assign_split(frame)
    per_split = [int(frame["feasible"][split == index].sum()) for index in range(3)]
    assert len(frame) == 10 and min(per_split) < 2  # validation or test holds fewer than 2 feasible pairs
    feasible = int(frame["feasible"].sum())
    with pytest.raises(TooFewRowsError, match=rf"10 rows, {feasible} feasible.*at least 2 feasible rows"):
        PairsDataModule(str(ten_pairs_dataset), in_memory=in_memory).setup()


def test_an_empty_split_encodes_to_no_rows(ten_pairs_dataset):
    # A split with no share is empty; encoding it must give zero rows, not a traceback.
    frame = read_dataset(ten_pairs_dataset).iloc[:0]
    assert encode_frame(frame)["pair_x"].shape == (0, D_PAIR)


def test_a_split_with_no_share_may_be_empty(ten_pairs_dataset):
    # Only splits with a positive share need rows: all in train, none asked for elsewhere.
    frame = read_dataset(ten_pairs_dataset)
    assert frame["feasible"].any()
    data = PairsDataModule(str(ten_pairs_dataset), split=(1.0, 0.0, 0.0))
    data.setup()
    assert data.rows == {"train": 10, "val": 0, "test": 0}
    assert data.statistics["pair_mean"].isfinite().all()
