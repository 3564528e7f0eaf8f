"""generate(): deterministic whatever the workers, resumable, refusing bad configs and foreign data."""

import json
import re
import shutil

import pandas as pd
import pytest
import yaml

from dataset_gen.cli_gen import load_config
from dataset_gen.common.cpus import allowed_cpus
from dataset_gen.generate import ConfigError, generate, parse_config
from dataset_gen.reader import read_dataset
from dataset_gen.simulator import RESULT_FIELDS, simulate
from dataset_gen.space import Accelerator, Layer, SpaceError
from dataset_gen.writer import CONFIG_FILE, MANIFEST, DatasetError, read_manifest


def small_config(out, *overrides):
    return load_config(["space=small", "n_samples=400", "shard_rows=90", "workers=1", "progress=false",
                        "layers.input_sizes=[32]", f"out={out}", *overrides])


def shard_bytes(out):
    return {path.name: path.read_bytes() for path in sorted(out.glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One dataset made in this process, to compare every other way of making it against."""
    out = tmp_path_factory.mktemp("generate") / "reference"
    result = generate(small_config(out))
    return out, result


def test_the_dataset_holds_every_row_once_with_inputs_results_and_mapping(reference):
    out, result = reference
    frame = read_dataset(out)
    assert frame["row_id"].tolist() == list(range(400))
    assert result.rows == result.new_rows == 400 and result.n_shards == 5 and result.resumed_rows == 0
    assert set(RESULT_FIELDS) <= set(frame.columns)
    assert result.infeasible == int((~frame["feasible"]).sum())
    assert set(frame["dataflow"]) == {"ws", "os", "is", "rs"}
    assert 0 < (frame["layer_name"] != "").mean() < 1  # the default mix: random shapes and real layers


def test_every_row_holds_what_the_simulator_says_for_its_pair(reference):
    frame = read_dataset(reference[0])
    random_shapes = frame[frame["layer_name"] == ""]  # small: the reference engine steps every tile
    for row in random_shapes.sample(12, random_state=0).to_dict("records"):
        layer = Layer(**{key: row[key] for key in ("in_h", "in_w", "in_c", "out_c", "k_h", "k_w", "stride",
                                                   "pad", "groups", "batch")})
        accelerator = Accelerator(**{key: row[key] for key in Accelerator().to_dict()})
        expected = simulate(layer, accelerator)
        for field in ("feasible", "total_cycles", "map_order", "map_tile_k", "area_mm2"):
            assert row[field] == getattr(expected, field), field
        assert row["energy_pj"] == pytest.approx(expected.energy_pj, nan_ok=True)


@pytest.mark.parametrize("sampler", ["uniform", "sobol", "lhs"])
def test_the_same_config_gives_the_same_bytes_whatever_the_number_of_workers(tmp_path, sampler):
    one = tmp_path / "one"
    two = tmp_path / "two"
    generate(small_config(one, f"sampler={sampler}", "n_samples=300", "shard_rows=60"))
    generate(small_config(two, f"sampler={sampler}", "n_samples=300", "shard_rows=60", "workers=2"))
    assert shard_bytes(one) == shard_bytes(two)
    assert len(shard_bytes(one)) == 5


def test_a_different_seed_gives_different_rows(tmp_path, reference):
    generate(small_config(tmp_path / "other", "seed=1"))
    assert not read_dataset(tmp_path / "other").equals(read_dataset(reference[0]))


def test_a_run_resumes_missing_shards_without_losing_or_duplicating_rows(tmp_path, reference):
    out = tmp_path / "data"
    shutil.copytree(reference[0], out)
    for index in (1, 3):
        (out / f"part-0000{index}.parquet").unlink()
    result = generate(small_config(out))
    assert result.resumed_rows == 220 and result.new_rows == 180 and result.rows == 400
    assert shard_bytes(out) == shard_bytes(reference[0])
    assert "after 220 rows resumed from an earlier run" in result.summary()


def test_resuming_regenerates_a_damaged_shard_bit_for_bit(tmp_path, reference):
    out = tmp_path / "data"
    shutil.copytree(reference[0], out)
    damaged = out / "part-00002.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside; the footer intact
    damaged.write_bytes(bytes(data))
    result = generate(small_config(out))
    assert (result.new_rows, result.resumed_rows, result.repaired_shards) == (90, 310, 1)
    assert shard_bytes(out) == shard_bytes(reference[0])
    assert "1 shard(s) the earlier run had finished were damaged or missing" in result.summary()


def test_resuming_a_manifest_without_checksums_verifies_the_shards_and_records_them(tmp_path, reference):
    out = tmp_path / "data"
    shutil.copytree(reference[0], out)
    manifest = read_manifest(out)
    for entry in manifest["shards"]:
        del entry["sha256"]  # as written before checksums
    (out / MANIFEST).write_text(json.dumps(manifest))
    result = generate(small_config(out))
    assert result.new_rows == 0 and result.repaired_shards == 0
    assert all(len(entry["sha256"]) == 64 for entry in read_manifest(out)["shards"])
    assert read_manifest(out)["shards"] == read_manifest(reference[0])["shards"]


def test_workers_null_takes_the_usable_cpus_and_a_count_is_capped_at_the_allowed_ones(tmp_path):
    assert 1 <= parse_config(small_config(tmp_path / "data", "workers=null")).workers <= allowed_cpus()
    assert parse_config(small_config(tmp_path / "data", "workers=4096")).workers == allowed_cpus()


def test_a_complete_dataset_is_left_as_it_is(tmp_path, reference):
    out = tmp_path / "data"
    shutil.copytree(reference[0], out)
    result = generate(small_config(out))
    assert result.new_rows == 0 and result.rows == 400


@pytest.mark.parametrize("override,message", [
    ("seed=3", "holds data generated with other settings (seed = 0 there, 3 here)"),
    ("n_samples=500", "n_samples = 400 there, 500 here"),
    ("layers.mix=0.7", "layers.mix = 0.5 there, 0.7 here"),
    ("space.accelerator.pe_rows.max=9", "holds data from another design space (space hash"),
    ("space.accelerator.pe_rows.max=9", "space.accelerator.pe_rows.max = 8 there, 9 here)"),
])
def test_generating_into_data_made_otherwise_is_refused_saying_which(tmp_path, reference, override, message):
    out = tmp_path / "data"
    shutil.copytree(reference[0], out)
    with pytest.raises(DatasetError, match=re.escape(message)):
        generate(small_config(out, override))
    result = generate(small_config(out, override, "overwrite=true"))
    assert result.new_rows == result.rows


@pytest.mark.parametrize("override,error,message", [
    ("space.accelerator.pe_rows.min=32", SpaceError, "space.accelerator.pe_rows: min = 32 > max = 8"),
    ("space.accelerator.dataflow=[]", SpaceError, "space.accelerator.dataflow: the choice list is empty"),
    ("space.accelerator.dataflow=[ws,xs]", SpaceError, "space.accelerator.dataflow[1] = 'xs': unknown dataflow"),
    ("space.layer.in_c.max=0", SpaceError, "space.layer.in_c.max = 0: outside the allowed range"),
    ("n_samples=0", ConfigError, "n_samples = 0: expected an integer in [1,"),
    ("shard_rows=-5", ConfigError, "shard_rows = -5"),
    ("n_samples=10000000", ConfigError, "shard_rows = 90: n_samples = 10000000 would make 111,112 shards, more than 100,000"),
    ("workers=0", ConfigError, "workers = 0"),
    ("sampler=halton", ConfigError, "sampler = 'halton': expected one of ['uniform', 'sobol', 'lhs']"),
    ("backend=spark", ConfigError, "backend = 'spark': expected one of ['local', 'ray']"),
    ("mapping=best", ConfigError, "mapping = 'best'"),
    ("objective=area", ConfigError, "objective = 'area'"),
    ("layers.mix=2", SpaceError, "layers.mix = 2"),
    ("layers.networks=[resnet9]", SpaceError, "layers.networks: 'resnet9' is not a known network"),
])
def test_a_bad_config_fails_before_any_work_naming_the_key(tmp_path, override, error, message):
    out = tmp_path / "never"
    with pytest.raises(error, match=re.escape(message)):
        generate(small_config(out, override))
    assert not out.exists()


def test_the_output_directory_holds_the_resolved_config(reference):
    saved = yaml.safe_load((reference[0] / CONFIG_FILE).read_text())
    assert saved["n_samples"] == 400 and saved["workers"] == 1 and saved["space"]["name"] == "small"
    assert saved["layers"]["input_sizes"] == [32]


def test_the_summary_says_rows_infeasible_share_speed_and_where(reference):
    out, result = reference
    summary = result.summary()
    assert "wrote 400 rows" in summary and "rows/s" in summary and str(out.resolve()) in summary
    assert f"{result.infeasible / 400:.1%} of them infeasible" in summary
    assert "\n" not in summary


def test_only_the_layers_of_a_users_file_with_mix_zero(tmp_path):
    topology = tmp_path / "mine.csv"
    topology.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                        "Num Filter, Strides,\nConv1, 12, 12, 3, 3, 3, 8, 1,\nConv2, 10, 10, 3, 3, 8, 8, 2,\n")
    generate(small_config(tmp_path / "data", f"layers.source={topology}", "layers.mix=0", "n_samples=50"))
    frame = read_dataset(tmp_path / "data")
    assert set(frame["layer_name"]) == {"Conv1", "Conv2"}
    assert frame.attrs["dance_gen"]["config"]["layers"]["source"] == str(topology)


def test_the_scalesim_mapping_is_recorded_in_every_row(tmp_path):
    generate(small_config(tmp_path / "data", "mapping=scalesim", "n_samples=40"))
    frame = read_dataset(tmp_path / "data")
    assert set(frame["map_kind"]) == {"scalesim"}
    assert frame.attrs["dance_gen"]["generation"]["mapping"] == "scalesim"


@pytest.mark.ray
def test_the_ray_backend_writes_the_same_bytes_as_the_local_one(tmp_path, reference):
    pytest.importorskip("ray")
    generate(small_config(tmp_path / "ray", "backend=ray", "workers=2"))
    assert shard_bytes(tmp_path / "ray") == shard_bytes(reference[0])
    assert pd.read_parquet(tmp_path / "ray")["row_id"].is_unique
