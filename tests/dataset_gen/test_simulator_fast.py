"""The fast engine gives exactly the reference engine's results: every field, every mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dataset_gen.simulator import RESULT_FIELDS, candidate_mappings, simulate, simulate_batch
from dataset_gen.space import PE_KINDS, DATAFLOWS, LOOP_ORDERS, Accelerator, Layer, Mapping, SpaceError


@st.composite
def small_pairs(draw) -> tuple[Layer, Accelerator]:
    """Small layers and accelerators where tiling, edge tiles, stalls and infeasibility occur."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    in_c = groups * draw(st.sampled_from([1, 2, 3, 4, 5, 9, 17]))  # 5, 9, 17: uneven lane packing
    out_c = groups * draw(st.integers(1, 4))
    if draw(st.booleans()) and draw(st.booleans()):  # depthwise
        groups, out_c = in_c, in_c
    pad = draw(st.integers(0, 2))
    k_h, k_w = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    in_h = draw(st.integers(max(1, k_h - 2 * pad), 9))
    in_w = draw(st.integers(max(1, k_w - 2 * pad), 7))
    layer = Layer(in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, k_h=k_h, k_w=k_w,
                  stride=draw(st.integers(1, 3)), pad=pad, groups=groups, batch=draw(st.integers(1, 3)),
                  w_bits=draw(st.sampled_from([0, 0, 2, 4, 8, 16, 32])),
                  a_bits=draw(st.sampled_from([0, 0, 2, 4, 8, 16, 32])))
    buffer_kb = st.sampled_from([0.0625, 0.125, 0.25, 0.5, 2.0])
    accelerator = Accelerator(
        pe_rows=draw(st.integers(1, 6)), pe_cols=draw(st.integers(1, 6)),
        dataflow=draw(st.sampled_from(DATAFLOWS)), rf_bytes=draw(st.sampled_from([2, 4, 7, 8, 16, 64])),
        ifmap_kb=draw(buffer_kb), filter_kb=draw(buffer_kb), ofmap_kb=draw(buffer_kb),
        dram_bw=draw(st.sampled_from([0.01, 0.3, 1.0, 2.5, 8.0, 64.0])),
        word_bits=draw(st.sampled_from([8, 16, 32])), freq_mhz=draw(st.sampled_from([100.0, 733.0])),
        pe_kind=draw(st.sampled_from(PE_KINDS)))
    return layer, accelerator


def frame_of(pairs: list[tuple[Layer, Accelerator]]) -> pd.DataFrame:
    return pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()} for layer, accelerator in pairs],
                        index=pd.RangeIndex(100, 100 + len(pairs)))


def assert_same(reference: pd.DataFrame, fast: pd.DataFrame) -> None:
    """Identical frames: same dtypes, same integers, same float bits, same strings."""
    pd.testing.assert_frame_equal(reference, fast, check_exact=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(small_pairs(), min_size=1, max_size=4), st.sampled_from(["latency", "energy", "edp"]))
def test_search_results_and_chosen_mapping_are_identical(pairs, objective):
    frame = frame_of(pairs)
    reference = simulate_batch(frame, objective=objective, engine="reference")
    assert_same(reference, simulate_batch(frame, objective=objective, engine="fast"))


@settings(max_examples=30, deadline=None)
@given(st.lists(small_pairs(), min_size=1, max_size=6))
def test_scalesim_mapping_is_identical(pairs):
    frame = frame_of(pairs)
    assert_same(simulate_batch(frame, "scalesim", engine="reference"), simulate_batch(frame, "scalesim"))


@settings(max_examples=80, deadline=None)
@given(st.lists(small_pairs(), min_size=1, max_size=6), st.sampled_from(LOOP_ORDERS),
       st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))
def test_any_explicit_mapping_is_identical(pairs, order, tile_p, tile_c, tile_k):
    frame = frame_of(pairs)
    mapping = Mapping(order, tile_p, tile_c, tile_k)
    assert_same(simulate_batch(frame, mapping, engine="reference"), simulate_batch(frame, mapping))


@settings(max_examples=20, deadline=None)
@given(small_pairs())
def test_every_candidate_is_identical(pair):
    layer, accelerator = pair
    frame = frame_of([pair])
    for mapping in candidate_mappings(layer, accelerator)[::7]:
        fast = simulate_batch(frame, mapping)
        assert fast.iloc[0].to_dict() == pytest.approx(simulate(layer, accelerator, mapping).to_dict(), nan_ok=True)
        assert_same(simulate_batch(frame, mapping, engine="reference"), fast)


def test_many_tiles_groups_and_images_are_identical():
    # Long nests: every transition class of every loop order occurs many times.
    layer = Layer(in_h=13, in_w=6, in_c=12, out_c=9, k_h=3, k_w=2, stride=2, pad=1, groups=3, batch=2)
    pairs = [(layer, Accelerator(pe_rows=3, pe_cols=2, dataflow=df, rf_bytes=16, ifmap_kb=0.25,
                                 filter_kb=0.125, ofmap_kb=0.0625, dram_bw=bw, word_bits=16))
             for df in DATAFLOWS for bw in (0.5, 3.0)]
    frame = frame_of(pairs)
    for order in LOOP_ORDERS:
        mapping = Mapping(order, 2, 3, 2)
        assert_same(simulate_batch(frame, mapping, engine="reference"), simulate_batch(frame, mapping))
    assert_same(simulate_batch(frame, engine="reference"), simulate_batch(frame))


def test_missing_optional_columns_take_defaults_and_large_batches_chunk():
    frame = pd.DataFrame({"in_h": [5, 7] * 700, "in_w": [5, 3] * 700, "in_c": [4, 2] * 700,
                          "out_c": [6, 2] * 700})
    fast = simulate_batch(frame)
    assert list(fast.columns) == list(RESULT_FIELDS) and fast["feasible"].all()
    expected = simulate(Layer(7, 3, 2, 2), Accelerator())
    assert fast.iloc[1].to_dict() == expected.to_dict()
    assert fast.iloc[1399].to_dict() == expected.to_dict()


def test_more_bandwidth_never_slows_a_fixed_mapping():
    rng = np.random.default_rng(7)
    layer = Layer(in_h=12, in_w=12, in_c=16, out_c=24, k_h=3, k_w=3, pad=1, batch=2)
    base = {**layer.to_dict(), **Accelerator(pe_rows=4, pe_cols=8, ifmap_kb=2, filter_kb=2,
                                             ofmap_kb=2).to_dict()}
    bandwidths = np.sort(rng.uniform(0.05, 40, 60))
    frame = pd.DataFrame([{**base, "dram_bw": bw} for bw in bandwidths])
    for mapping in (Mapping("pck", 3, 4, 6), Mapping("kcp", 4, 2, 8), Mapping("cpk", 1, 8, 3)):
        cycles = simulate_batch(frame, mapping)["total_cycles"].to_numpy()
        assert (cycles > 0).all() and (np.diff(cycles) <= 0).all()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(LOOP_ORDERS), st.sampled_from([1, 2, 4]), st.integers(1, 5), st.integers(1, 5),
       st.sampled_from(DATAFLOWS), st.sampled_from([4, 16, 64]), st.sampled_from([1.0, 0.2]))
def test_width_tiles_are_identical(order, tile_q, tile_c, tile_k, dataflow, rf_bytes, ifmap_kb):
    # out_w = 8 and 4 (3x3, pad 1, stride 1): every tile_q above divides both. A 1 KB ifmap
    # buffer holds a line buffer for every tile; 0.2 KB (102 words) only for small ones.
    pairs = [(Layer(in_h=h, in_w=w, in_c=5, out_c=6, k_h=3, k_w=3, pad=1, batch=b),
              Accelerator(pe_rows=3, pe_cols=2, dataflow=dataflow, rf_bytes=rf_bytes, ifmap_kb=ifmap_kb, filter_kb=1,
                          ofmap_kb=0.25, dram_bw=2.0, word_bits=16))
             for h, w, b in ((5, 8, 1), (3, 4, 2))]
    frame = frame_of(pairs)
    mapping = Mapping(order, 1, tile_c, tile_k, tile_q=tile_q)
    fast = simulate_batch(frame, mapping)
    assert_same(simulate_batch(frame, mapping, engine="reference"), fast)
    assert all(q == tile_q for q, ok in zip(fast["map_tile_q"], fast["feasible"]) if ok)


def test_a_width_tile_that_does_not_divide_a_row_is_refused_by_both_engines():
    frame = frame_of([(Layer(in_h=4, in_w=6, in_c=2, out_c=2), Accelerator())])
    for engine in ("fast", "reference"):
        with pytest.raises(SpaceError, match=r"mapping.tile_q = 4: .*out_w = 6"):
            simulate_batch(frame, Mapping("pck", 1, 2, 2, tile_q=4), engine=engine)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(small_pairs(), min_size=1, max_size=4))
def test_the_pruning_bounds_never_exceed_the_exact_fold_costs(pairs):
    # The search drops candidates by lower bounds computed before the fold model runs; a bound
    # above an exact value could drop the winner. Check them on every candidate of the pairs.
    from dataset_gen.simulator import _validated_columns, fast

    pairs_ = fast._Pairs(fast._packed_columns(_validated_columns(frame_of(pairs))))
    tiling, feasible = fast._Tiling.search(pairs_)
    combos = fast._Combos(pairs_, tiling, feasible)
    folds = fast._Folds(pairs_, tiling, combos, fast._KeyTable())
    assert (folds.compute_cycles >= fast._least_compute(pairs_, tiling, combos)).all()
    for least, exact in zip(fast._least_fold_words(pairs_, combos), folds.bound_counts()):
        assert (exact >= least).all()
