"""Per-tile fold models: compute cycles, SRAM accesses and array transfers of one tile.

One step of the DRAM-level loop nest runs one tile: ``tp`` output rows of ``tq`` pixels
each, ``tc`` input channels and ``tk`` output channels of one group. Its GEMM is
``m = tp*tq`` pixels by ``w = k_h*k_w*tc`` window by ``f = tk`` filters.

- ``ws``, ``os``, ``is``: SCALE-Sim's systolic fold model (`systolic.systolic_fold`), with
  register-file blocking (`systolic_costs`) when the mapping is our own.
- ``rs``: Eyeriss-style row stationary, modelled here (see `rs_fold`).

The access-counting rule (docs/simulator.md, "Access counting") is one for every dataflow:

- SRAM reads of the ifmap and the filter are the words the array takes from the buffers;
- every partial sum the array hands to the ofmap buffer is a write (``sram_ofmap_writes``),
  and every write that adds to an earlier partial sum of the same output is preceded by a
  read of it (``sram_ofmap_reads``): within a tile, ``writes - outputs of the tile``
  (`tile_costs` returns it); between tiles, the tile's ``tp*tq*tk`` partial sums when its
  ``c`` index is > 0 (`ofmap_readback_words`);
- array transfers (``array_hops``): every operand word or partial sum handed from one PE to
  its neighbour is one hop; the operand a PE keeps (stationary, or reused from its
  register file) is not.

All functions broadcast over NumPy int64 arrays; integers only, so both engines agree.
"""

from __future__ import annotations

import numpy as np

from . import systolic

DATAFLOW_CODES: dict[str, int] = {"ws": systolic.WS, "os": systolic.OS, "is": systolic.IS, "rs": 3}
RS = DATAFLOW_CODES["rs"]
# Register-file accesses per MAC, by dataflow code: ws/is read the stationary operand and
# update a partial sum, os reads and writes its resident partial sum, rs reads ifmap, filter
# and psum and writes the psum.
RF_ACCESSES_PER_MAC = np.array([2, 2, 2, 4], dtype=np.int64)


def _ceil_div(a, b):
    return -(-a // b)


def rf_words_required(dataflow, k_w):
    """Register-file words each PE needs: 2 (operand + psum), or ``2*k_w + 1`` for rs.

    rs keeps a filter row, an ifmap window and one partial sum, as in Eyeriss.
    """
    return np.where(np.asarray(dataflow) == RS, 2 * np.asarray(k_w, dtype=np.int64) + 1, 2)


def rs_filters_per_pe(rf_words, k_w, tk):
    """Filters an rs PE works on at once (Eyeriss' ``p``), as many as its register file holds.

    ``p`` filter rows (``p*k_w`` words), one ifmap window (``k_w``) and ``p`` partial sums:
    ``p = (rf_words - k_w) // (k_w + 1)``, at least 1, at most ``tk``.
    """
    k_w = np.asarray(k_w, dtype=np.int64)
    return np.clip((np.asarray(rf_words, dtype=np.int64) - k_w) // (k_w + 1), 1, np.maximum(tk, 1))


def rs_fold(tp, tq, tc, tk, k_h, k_w, stride, rows, cols, filters_per_pe=1):
    """Row-stationary costs of one tile (Eyeriss, Chen et al., ISCA 2016), our model.

    A PE set is ``hs = min(k_h, rows)`` PE rows by ``e = min(cols, tp)`` PE columns: PE
    ``(i, j)`` holds filter row ``i`` of ``pf`` filters (``filters_per_pe``) and convolves
    them along ifmap row ``j*stride + i``, a 1-D convolution of ``tq * k_w * pf`` MACs (one
    MAC per cycle) whose partial sums ripple up the column (``hs - 1`` extra cycles).
    ``v = rows // hs`` sets run different (channel, filter group) pairs side by side. A pass
    is one such round; passes run one after another (no overlap, as SCALE-Sim's folds):
    filter rows beyond ``rows`` fold (``ceil(k_h / hs)``), output rows beyond ``e`` fold
    (``ceil(tp / e)``), and pairs beyond ``v`` fold (``ceil(tc * ceil(tk / pf) / v)``).

    SRAM counts: each filter word is read once per tile (it stays in the PE's RF across the
    output-row folds); each pass reads, per pair, the ``(e' - 1)*stride + h'`` ifmap rows its
    set covers (diagonal multicast shares a row among PEs, and the ``pf`` filters of a pair
    share it), each ``(tq-1)*stride + k_w`` words wide; each pass writes, per channel and
    filter, its ``e' * tq`` row partial sums, ``e'`` and ``h'`` being that fold's output and
    filter rows. Array transfers: each partial sum written climbs ``hs - 1`` PEs.

    Returns
    -------
    tuple of int64 arrays
        ``(cycles, ifmap_reads, filter_reads, ofmap_writes, array_hops)``.
    """
    tp, tq, tc, tk, k_h, k_w, stride, rows, cols, pf = (
        np.asarray(x, dtype=np.int64) for x in (tp, tq, tc, tk, k_h, k_w, stride, rows, cols, filters_per_pe))
    set_rows = np.minimum(k_h, rows)
    set_cols = np.minimum(cols, tp)
    sets = rows // set_rows
    kh_folds = _ceil_div(k_h, set_rows)
    p_folds = _ceil_div(tp, set_cols)
    pairs = tc * _ceil_div(tk, pf)
    pair_folds = _ceil_div(pairs, sets)
    cycles = kh_folds * p_folds * pair_folds * (tq * k_w * pf + set_rows - 1)
    row_words = (tq - 1) * stride + k_w
    ifmap_reads = pairs * row_words * (kh_folds * stride * (tp - p_folds) + p_folds * k_h)
    filter_reads = k_h * k_w * tc * tk
    ofmap_writes = tc * tk * kh_folds * tp * tq
    return cycles, ifmap_reads, filter_reads, ofmap_writes, ofmap_writes * (set_rows - 1)


def systolic_costs(dataflow, m, w, f, rows, cols, rf_words, blocking):
    """A systolic tile's costs (ws, os, is) with register-file blocking, our counting rule.

    SCALE-Sim's fold model (`systolic.systolic_fold`) gives each PE one element of the
    stationary operand (ws: a weight, os: a partial sum, is: an input). With ``blocking``,
    a PE keeps ``b = rf_words - 1`` of them (the register file's last word holds the operand
    passing through), taken from ``b`` folds of one array dimension (the columns when there
    are several column folds, else the rows), so those folds merge into one: the merged
    fold streams ``b`` times as long, its fill and drain are paid once, and the operand it
    shares across the merged folds is read (and moved through the array) once instead of
    ``b`` times: the streamed input for ws and os column merges, the streamed filter for is
    column and os row merges, and for ws and is row merges the partial sums, which then
    accumulate in the PE before they leave (fewer ofmap writes).

    Without ``blocking`` (``b = 1``) cycles and SRAM reads are SCALE-Sim's, its ofmap writes
    too (os adds its ``rows + cols`` per fold, see `systolic`); with it, cycles are one more
    than SCALE-Sim's count (which is the index of the last cycle).

    Returns
    -------
    tuple of int64 arrays
        ``(cycles, ifmap_reads, filter_reads, ofmap_writes, real_ofmap_writes, array_hops)``;
        ``real_ofmap_writes`` without SCALE-Sim's os slip. Array hops: each MAC takes its
        two moving operands from a neighbour (ws: input and partial sum; os: input and
        weight; is: weight and partial sum), except those reused in the PE.
    """
    dataflow, m, w, f, rows, cols, rf_words = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.int64) for x in (dataflow, m, w, f, rows, cols, rf_words)))
    is_ws, is_os, is_is = dataflow == systolic.WS, dataflow == systolic.OS, dataflow == systolic.IS
    spatial_rows = np.where(is_os, m, w)
    spatial_cols = np.where(is_is, m, f)
    temporal = np.where(is_ws, m, np.where(is_os, w, f))
    row_fold = _ceil_div(spatial_rows, rows)
    col_fold = _ceil_div(spatial_cols, cols)
    if blocking:
        extra = np.maximum(rf_words - 1, 1)
        merge_cols = col_fold > 1
        block_cols = np.where(merge_cols, np.minimum(extra, col_fold), 1)
        block_rows = np.where(merge_cols, 1, np.minimum(extra, row_fold))
    else:
        block_cols = block_rows = np.ones_like(col_fold)
    groups_c = _ceil_div(col_fold, block_cols)
    groups_r = _ceil_div(row_fold, block_rows)
    overhead = np.where(is_os, rows + cols - 2, 2 * rows + cols - 2)
    # SCALE-Sim reports the index of the last cycle (one less than their number); our own
    # mappings count every cycle, so a merged fold can never beat one MAC per PE per cycle.
    cycles = groups_r * groups_c * overhead + row_fold * col_fold * temporal - (0 if blocking else 1)
    ifmap_reads = np.where(is_is, m * w, m * w * groups_c)
    filter_reads = w * f * np.where(is_ws, 1, np.where(is_os, groups_r, groups_c))
    real_writes = np.where(is_os, m * f, m * f * groups_r)
    writes = real_writes if blocking else np.where(is_os, m * f + row_fold * col_fold * (rows + cols), real_writes)
    macs = m * w * f
    hops = macs // block_cols + macs // block_rows
    return cycles, ifmap_reads, filter_reads, writes, real_writes, hops


def tile_costs(dataflow, tp, tq, tc, tk, k_h, k_w, stride, rows, cols, rf_words, blocking=True):
    """Compute cycles, SRAM accesses and array transfers of one tile, for any dataflow.

    Parameters
    ----------
    dataflow : int or array of int
        Dataflow code (`DATAFLOW_CODES`).
    tp, tq, tc, tk : int or array of int
        Tile sizes: output rows, output columns, input channels, output channels (of one
        group).
    k_h, k_w, stride : int or array of int
        Layer geometry.
    rows, cols, rf_words : int or array of int
        PE array shape and register-file words per PE.
    blocking : bool
        Register-file blocking (our mappings); False for SCALE-Sim's mapping, whose counts
        are SCALE-Sim's (it has no register-file model).

    Returns
    -------
    tuple of int64 arrays (broadcast shape)
        ``(cycles, sram_ifmap_reads, sram_filter_reads, sram_ofmap_writes,
        sram_ofmap_reads, array_hops)``: cycles, words and hops; ``sram_ofmap_reads`` are the
        read-backs within the tile (the module docstring's rule).
    """
    dataflow = np.asarray(dataflow, dtype=np.int64)
    tp, tq, tc, tk, k_h, k_w = (np.asarray(x, dtype=np.int64) for x in (tp, tq, tc, tk, k_h, k_w))
    shape = np.broadcast_shapes(dataflow.shape, *(np.shape(x) for x in (tp, tq, tc, tk, k_h, k_w, stride, rows,
                                                                          cols, rf_words)))
    outputs = tp * tq * tk
    is_rs = dataflow == RS
    parts = []
    if is_rs.any():
        pf = rs_filters_per_pe(rf_words, k_w, tk) if blocking else 1
        cycles, ifmap, filt, writes, hops = rs_fold(tp, tq, tc, tk, k_h, k_w, stride, rows, cols, pf)
        parts.append((cycles, ifmap, filt, writes, writes - outputs, hops))
    if not is_rs.all():
        cycles, ifmap, filt, writes, real_writes, hops = systolic_costs(
            np.where(is_rs, systolic.WS, dataflow), tp * tq, k_h * k_w * tc, tk, rows, cols, rf_words, blocking)
        parts.append((cycles, ifmap, filt, writes, real_writes - outputs, hops))
    if len(parts) == 1:
        return tuple(np.broadcast_to(x, shape).astype(np.int64) for x in parts[0])
    return tuple(np.where(is_rs, r, s).astype(np.int64) for r, s in zip(*parts))


def ofmap_readback_words(tp, tq, tk, c_index_positive):
    """Partial sums read back from the ofmap buffer when a tile's ``c`` index is > 0 (words)."""
    return np.where(c_index_positive, np.asarray(tp, dtype=np.int64) * tq * tk, 0)
