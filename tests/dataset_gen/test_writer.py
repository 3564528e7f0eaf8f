"""The dataset directory: atomic shards, readable by pandas and pyarrow, checked on every read."""

import hashlib
import json
import shutil

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from dataset_gen.cli_gen import load_config
from dataset_gen.generate import generate, generation_record, parse_config
from dataset_gen.ranges import parse_space
from dataset_gen.describe import describe_dataset
from dataset_gen.reader import check_dataset, read_dataset, read_metadata
from dataset_gen.simulator import RESULT_FIELDS, SIMULATOR_VERSION
from dataset_gen.writer import (
    CONFIG_FILE, MANIFEST, DatasetError, prepare_output, shard_metadata, write_shard,
)


def small_config(out, *overrides):
    return load_config(["space=small", "n_samples=300", "shard_rows=100", "workers=1", "progress=false",
                        "layers.input_sizes=[32]", f"out={out}", *overrides])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("writer") / "data"
    generate(small_config(out))
    return out


@pytest.fixture
def copy_of(dataset, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(dataset, out)
    return out


def rewrite_metadata(path, **changes):
    """Re-write one shard as if another run (another simulator, space...) had made it."""
    table = pq.read_table(path)
    metadata = {key.decode(): value.decode() for key, value in table.schema.metadata.items()}
    generation = json.loads(metadata["generation"])
    for key, value in changes.items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
        generation[key] = value
    metadata["generation"] = json.dumps(generation)
    write_shard(path.parent, shard_metadata(path)["shard_index"], table.replace_schema_metadata(metadata))


def test_a_dataset_is_shards_a_manifest_and_its_config_and_nothing_else(dataset):
    names = sorted(path.name for path in dataset.iterdir())
    assert names == [CONFIG_FILE, MANIFEST, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    manifest = json.loads((dataset / MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"] == 300 and manifest["n_shards"] == 3
    assert [entry["file"] for entry in manifest["shards"]] == names[2:]
    assert manifest["config"]["n_samples"] == 300 and manifest["config"]["space"]["name"] == "small"


def test_pandas_and_pyarrow_read_the_directory_despite_manifest_and_leftover_temp_files(copy_of):
    (copy_of / ".part-00007.parquet.tmp-4242").write_bytes(b"half a shard")  # as a killed run leaves
    frame = pd.read_parquet(copy_of)
    assert len(frame) == 300 and ds.dataset(copy_of).count_rows() == 300
    assert sorted(frame["row_id"]) == list(range(300))


def test_every_shard_records_its_provenance_in_its_schema_metadata(dataset):
    for index in range(3):
        meta = shard_metadata(dataset / f"part-{index:05d}.parquet")
        assert meta["simulator_version"] == SIMULATOR_VERSION
        assert meta["shard_index"] == index and meta["rows"] == 100 and meta["seed"] == 0
        assert meta["sampler"] == "uniform" and meta["package_version"] == "0.1.0"
        assert len(meta["space_hash"]) == 16 and meta["space"]["accelerator"]["dataflow"]["choices"]
        assert meta["generation"]["layers"]["pool_size"] > 0


def test_read_dataset_returns_typed_columns_in_row_order_with_metadata(dataset):
    frame = read_dataset(dataset, expect_simulator_version=SIMULATOR_VERSION)
    assert frame["row_id"].tolist() == list(range(300))
    assert set(RESULT_FIELDS) <= set(frame.columns)
    assert frame["feasible"].dtype == bool and frame["total_cycles"].dtype == "int64"
    assert frame["latency_s"].dtype == "float64" and frame["pe_rows"].dtype == "int64"
    assert frame.attrs["dance_gen"]["space_hash"] == read_metadata(dataset)["space_hash"]
    assert read_metadata(dataset)["config"]["seed"] == 0


def test_read_metadata_says_how_the_data_was_made_without_reading_rows(dataset, tmp_path):
    meta = read_metadata(dataset)
    assert (meta["rows"], meta["shards"], meta["n_shards"], meta["complete"]) == (300, 3, 3, True)
    assert (meta["mapping"], meta["objective"], meta["n_samples"], meta["sampler"]) == ("search", "latency", 300,
                                                                                        "uniform")
    assert meta["layers"]["mix"] == 0.5 and meta["layers"]["networks"] == ["resnet18", "resnet50",
                                                                           "mobilenet_v2", "vgg16"]
    assert parse_space(meta["space"]).hash == meta["space_hash"]  # the ranges travel with the data
    with pytest.raises(FileNotFoundError, match="no such dataset directory"):
        read_metadata(tmp_path / "nothing")


def test_read_dataset_refuses_another_simulator_version_naming_the_shard(copy_of):
    rewrite_metadata(copy_of / "part-00001.parquet", simulator_version="0.9.0")
    with pytest.raises(DatasetError, match=r"part-00001.parquet: simulator version '0.9.0', expected '"
                                           + SIMULATOR_VERSION.replace(".", r"\.")):
        read_dataset(copy_of, expect_simulator_version=SIMULATOR_VERSION)


def test_read_dataset_refuses_another_space_naming_the_hashes(copy_of):
    meta = read_metadata(copy_of)
    with pytest.raises(DatasetError, match=f"part-00000.parquet: space hash '{meta['space_hash']}', "
                                           "expected '0123456789abcdef'"):
        read_dataset(copy_of, expect_space_hash="0123456789abcdef")
    assert len(read_dataset(copy_of, expect_space_hash=meta["space_hash"])) == 300


def test_read_dataset_refuses_a_shard_from_another_run(copy_of):
    rewrite_metadata(copy_of / "part-00002.parquet", seed=5)
    with pytest.raises(DatasetError, match="part-00002.parquet: generated with other settings"):
        read_dataset(copy_of)


def test_read_dataset_refuses_an_incomplete_dataset_unless_asked(copy_of):
    (copy_of / "part-00001.parquet").unlink()
    with pytest.raises(DatasetError, match="incomplete, 2 of 3 shards .missing 1."):
        read_dataset(copy_of)
    assert read_dataset(copy_of, allow_incomplete=True)["row_id"].tolist() == [*range(100), *range(200, 300)]


def flip_bytes_in_the_middle(path):
    """Damage a shard as a failing disk would: its footer (and so its metadata) intact."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(byte ^ 0xFF for byte in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def test_overwrite_refuses_foreign_file_by_name_and_deletes_nothing(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    pd.DataFrame({"x": [1, 2]}).to_parquet(out / "mydata.parquet")
    (out / "notes.txt").write_text("mine")
    settings = parse_config(small_config(out))
    expected = {0: 100, 1: 100, 2: 100}
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match=r"holds files dance-gen did not write \(mydata.parquet, notes.txt\): "
                                               "move them elsewhere or choose another out"):
            prepare_output(out, generation_record(settings), overwrite, expected)
    assert sorted(path.name for path in out.iterdir()) == ["mydata.parquet", "notes.txt"]


def test_overwrite_removes_only_what_dance_gen_wrote(copy_of):
    (copy_of / ".part-00009.parquet.tmp-4242").write_bytes(b"half a shard")  # a killed run's temporary
    (copy_of / ".keep").write_text("the user's, hidden from readers")
    settings = parse_config(small_config(copy_of))
    assert prepare_output(copy_of, generation_record(settings), True, {0: 100, 1: 100, 2: 100}) == {}
    assert [path.name for path in copy_of.iterdir()] == [".keep"]


def test_a_manifest_or_config_dance_gen_did_not_write_is_refused_by_name_even_with_overwrite(tmp_path):
    settings = parse_config(small_config(tmp_path / "data"))
    for name, text in ((MANIFEST, '{"rows": 3}'), (CONFIG_FILE, "lr: 0.1\n")):
        out = tmp_path / name.strip("_.")
        out.mkdir()
        (out / name).write_text(text)
        with pytest.raises(DatasetError, match=f"did not write \\({name}\\)"):
            prepare_output(out, generation_record(settings), True, {0: 100})
        assert (out / name).read_text() == text


def test_the_manifest_records_the_sha256_of_every_shard(dataset):
    manifest = json.loads((dataset / MANIFEST).read_text())
    for entry in manifest["shards"]:
        assert entry["sha256"] == hashlib.sha256((dataset / entry["file"]).read_bytes()).hexdigest()


def test_a_damaged_shard_is_named_on_read_with_how_to_repair_it(copy_of):
    flip_bytes_in_the_middle(copy_of / "part-00001.parquet")
    assert shard_metadata(copy_of / "part-00001.parquet")["rows"] == 100  # the footer still reads
    message = r"part-00001.parquet: damaged, its bytes do not match the sha256 .* re-running the same dance-gen command"
    for read in (read_dataset, check_dataset, describe_dataset):
        with pytest.raises(DatasetError, match=message):
            read(copy_of)


def test_a_damaged_shard_of_a_manifest_without_checksums_is_found_by_reading_it_whole(copy_of):
    manifest = json.loads((copy_of / MANIFEST).read_text())
    for entry in manifest["shards"]:
        del entry["sha256"]  # as a manifest written before checksums
    (copy_of / MANIFEST).write_text(json.dumps(manifest))
    assert len(check_dataset(copy_of)) and len(read_dataset(copy_of)) == 300  # sound: accepted
    flip_bytes_in_the_middle(copy_of / "part-00002.parquet")
    for read in (read_dataset, check_dataset):
        with pytest.raises(DatasetError, match=r"part-00002.parquet: damaged, unreadable .*re-running the same dance-gen"):
            read(copy_of)


def test_a_shard_with_no_dance_metadata_is_refused(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(out / "part-00000.parquet")
    with pytest.raises(DatasetError, match="part-00000.parquet: not a dance-gen shard"):
        read_dataset(out)


def test_resuming_into_data_of_another_simulator_version_is_refused_saying_which(copy_of):
    rewrite_metadata(copy_of / "part-00000.parquet", simulator_version="0.9.0")
    (copy_of / MANIFEST).unlink()  # the shards alone tell
    settings = parse_config(small_config(copy_of))
    with pytest.raises(DatasetError, match=r"shard part-00000.parquet. holds data from another simulator "
                                           r"version \('0.9.0' there, '" + SIMULATOR_VERSION.replace(".", r"\.")):
        prepare_output(copy_of, generation_record(settings), False, {0: 100, 1: 100, 2: 100})


def test_write_shard_leaves_only_the_final_file_and_returns_its_sha256(tmp_path, dataset):
    table = pq.read_table(dataset / "part-00000.parquet")
    path, sha256 = write_shard(tmp_path, 12, table)
    assert [path.name for path in tmp_path.iterdir()] == ["part-00012.parquet"]
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pq.read_table(tmp_path / "part-00012.parquet").to_pandas().equals(table.to_pandas())
