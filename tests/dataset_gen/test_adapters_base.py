"""The machinery every slow-tool adapter shares: error rows, retries, timeouts, one
simulation per distinct pair, the run's result cache; and the builtin adapter's equality
with the simulator it wraps."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from dataset_gen.adapters import ERROR_COLUMN, AdapterError, PairwiseAdapter, make_adapter, result_columns
from dataset_gen.adapters.cache import ResultCache
from dataset_gen.simulator import SIMULATOR_VERSION, RESULT_DTYPES, simulate, simulate_batch
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, Accelerator, Layer

FAILS_ONCE, ALWAYS_FAILS, HANGS = 13, 14, 17  # in_c values that trigger a misbehaviour


class OurSimulatorPairByPair(PairwiseAdapter):
    """Our simulator called pair by pair, misbehaving on chosen layers as a foreign tool may."""

    name = "pairwise-test"
    provides = frozenset(RESULT_DTYPES)

    def __init__(self, settings=None, cache=None):
        super().__init__(settings, cache)
        self.calls: list[int] = []

    @property
    def version(self) -> str:
        return "test 1"

    def simulate_pair(self, pair):
        self.calls.append(pair["in_c"])
        if pair["in_c"] == ALWAYS_FAILS:
            raise RuntimeError("the tool crashed")
        if pair["in_c"] == FAILS_ONCE and self.calls.count(FAILS_ONCE) == 1:
            raise RuntimeError("a transient failure")
        if pair["in_c"] == HANGS:
            time.sleep(30)
        layer = Layer(**{field: pair[field] for field in LAYER_FIELDS})
        accelerator = Accelerator(**{field: pair[field] for field in ACCELERATOR_FIELDS})
        return simulate(layer, accelerator).to_dict()


def _pairs(channels: list[int]) -> pd.DataFrame:
    accelerator = Accelerator(pe_rows=8, pe_cols=8, dataflow="ws").to_dict()
    rows = [{**Layer(in_h=14, in_w=14, in_c=c, out_c=16, k_h=3, k_w=3, pad=1).to_dict(), **accelerator}
            for c in channels]
    return pd.DataFrame(rows, index=pd.RangeIndex(100, 100 + len(rows)))[list(LAYER_FIELDS + ACCELERATOR_FIELDS)]


def test_results_have_every_dataset_column_in_the_pairs_order_and_equal_the_simulator():
    pairs = _pairs([8, 16, 32])
    results = OurSimulatorPairByPair().simulate(pairs)
    assert list(results.columns) == list(result_columns())
    assert list(results.index) == list(pairs.index)
    expected = simulate_batch(pairs)
    pd.testing.assert_frame_equal(results[list(RESULT_DTYPES)].reset_index(drop=True),
                                  expected[list(RESULT_DTYPES)].reset_index(drop=True), check_dtype=False)
    assert (results[ERROR_COLUMN] == "").all()


def test_a_failing_pair_is_an_error_row_with_the_tools_message_and_the_others_are_kept():
    results = OurSimulatorPairByPair({"retries": 1}).simulate(_pairs([8, ALWAYS_FAILS, 16]))
    assert list(results[ERROR_COLUMN] != "") == [False, True, False]
    failed = results.iloc[1]
    assert "the tool crashed" in failed[ERROR_COLUMN] and "after 2 attempts" in failed[ERROR_COLUMN]
    assert not failed["feasible"] and failed["total_cycles"] == -1 and np.isnan(failed["energy_pj"])
    assert results.iloc[0]["feasible"] and results.iloc[2]["feasible"]


def test_a_transient_failure_is_retried_and_leaves_no_error():
    adapter = OurSimulatorPairByPair({"retries": 1})
    results = adapter.simulate(_pairs([FAILS_ONCE]))
    assert results.iloc[0][ERROR_COLUMN] == "" and results.iloc[0]["feasible"]
    assert adapter.calls == [FAILS_ONCE, FAILS_ONCE]
    without_retry = OurSimulatorPairByPair({"retries": 0}).simulate(_pairs([FAILS_ONCE]))
    assert "a transient failure" in without_retry.iloc[0][ERROR_COLUMN]


def test_a_pair_over_its_time_limit_is_an_error_row_and_the_run_goes_on():
    results = OurSimulatorPairByPair({"timeout_s": 0.5}).simulate(_pairs([HANGS, 8]))
    assert results.iloc[0][ERROR_COLUMN] == "pairwise-test: timed out after 0.5 s"
    assert results.iloc[1][ERROR_COLUMN] == "" and results.iloc[1]["feasible"]


def test_identical_pairs_are_simulated_once_per_batch():
    adapter = OurSimulatorPairByPair()
    results = adapter.simulate(_pairs([8, 16, 8, 8, 16]))
    assert adapter.calls == [8, 16]
    assert results.iloc[0]["total_cycles"] == results.iloc[2]["total_cycles"] == results.iloc[3]["total_cycles"]


def test_the_run_cache_serves_earlier_results_but_never_failures(tmp_path):
    first = OurSimulatorPairByPair(cache=ResultCache(tmp_path / "_cache.sqlite"))
    expected = first.simulate(_pairs([8, 16, ALWAYS_FAILS]))
    second = OurSimulatorPairByPair(cache=ResultCache(tmp_path / "_cache.sqlite"))
    again = second.simulate(_pairs([16, 8, ALWAYS_FAILS]))
    assert second.calls == [ALWAYS_FAILS]  # the failure is tried again, the rest come from the cache
    assert again.iloc[0]["energy_pj"] == expected.iloc[1]["energy_pj"]
    other_settings = OurSimulatorPairByPair({"objective": "energy"}, cache=ResultCache(tmp_path / "_cache.sqlite"))
    other_settings.simulate(_pairs([8]))
    assert other_settings.calls == [8]  # the key holds the adapter's settings: no cross-talk


def test_the_builtin_adapter_equals_simulate_batch_and_records_its_identity():
    pairs = _pairs([8, 16, 3])
    adapter = make_adapter({"name": "builtin", "mapping": "search", "objective": "energy"})
    results = adapter.simulate(pairs)
    expected = simulate_batch(pairs, objective="energy")
    pd.testing.assert_frame_equal(results[list(RESULT_DTYPES)], expected.set_axis(pairs.index))
    assert adapter.identity() == {"name": "builtin", "version": SIMULATOR_VERSION,
                                  "settings": {"mapping": "search", "objective": "energy"}}


def test_an_unknown_simulator_is_refused_naming_the_choices():
    with pytest.raises(AdapterError, match=r"simulator.name = 'timeloop': expected one of \['builtin', "):
        make_adapter({"name": "timeloop"})
