"""Per-tile fold models: compute cycles and SRAM accesses of one tile on the PE array.

One step of the DRAM-level loop nest runs one tile: ``tp`` output rows (of ``out_w``
pixels each), ``tc`` input channels and ``tk`` output channels of one group. Its GEMM is
``m = tp*out_w`` pixels by ``w = k_h*k_w*tc`` window by ``f = tk`` filters.

- ``ws``, ``os``, ``is``: SCALE-Sim's systolic fold model (`systolic.systolic_fold`).
- ``rs``: Eyeriss-style row stationary, modelled here (see `rs_fold`).

Partial sums (``sram_ofmap_reads``): when a tile continues an accumulation begun by an
earlier ``c`` tile (its ``c`` index is > 0), the array first reads the tile's partial sums
back from the ofmap buffer: ``tp*out_w*tk`` words (`ofmap_readback_words`), for every
dataflow. Read-backs within one tile (between folds) are part of the fold model's own
counts, as SCALE-Sim counts them (it counts none).

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


def rs_fold(tp, tc, tk, out_w, k_h, k_w, stride, rows, cols):
    """Row-stationary costs of one tile (Eyeriss, Chen et al., ISCA 2016), our model.

    A PE set is ``hs = min(k_h, rows)`` PE rows by ``e = min(cols, tp)`` PE columns: PE
    ``(i, j)`` holds filter row ``i`` and convolves it along ifmap row ``j*stride + i``,
    a 1-D convolution of ``out_w * k_w`` MACs (one MAC per cycle) whose partial sums ripple
    up the column (``hs - 1`` extra cycles). ``v = rows // hs`` sets run different
    (channel, filter) pairs side by side. A pass is one such round; passes run one after
    another (no overlap, as SCALE-Sim's folds): filter rows beyond ``rows`` fold
    (``ceil(k_h / hs)``), output rows beyond ``e`` fold (``ceil(tp / e)``), and pairs
    beyond ``v`` fold (``ceil(tc*tk / v)``).

    SRAM counts: each filter word is read once per tile (it stays in the PE's RF across the
    output-row folds); each pass reads the ``(e' - 1)*stride + h'`` ifmap rows its set
    covers (diagonal multicast shares a row among PEs), each ``(out_w-1)*stride + k_w``
    words wide, per pair (no sharing across pairs); each pass writes its ``e' * out_w``
    row partial sums per pair (one psum per PE does not allow accumulating channels in
    the PE), ``e'`` and ``h'`` being that fold's output and filter rows.

    Returns
    -------
    tuple of int64 arrays
        ``(cycles, ifmap_reads, filter_reads, ofmap_writes)``.
    """
    tp, tc, tk, out_w, k_h, k_w, stride, rows, cols = (
        np.asarray(x, dtype=np.int64) for x in (tp, tc, tk, out_w, k_h, k_w, stride, rows, cols))
    set_rows = np.minimum(k_h, rows)
    set_cols = np.minimum(cols, tp)
    sets = rows // set_rows
    kh_folds = _ceil_div(k_h, set_rows)
    p_folds = _ceil_div(tp, set_cols)
    pairs = tc * tk
    pair_folds = _ceil_div(pairs, sets)
    cycles = kh_folds * p_folds * pair_folds * (out_w * k_w + set_rows - 1)
    row_words = (out_w - 1) * stride + k_w
    ifmap_reads = pairs * row_words * (kh_folds * stride * (tp - p_folds) + p_folds * k_h)
    filter_reads = k_h * k_w * pairs
    ofmap_writes = pairs * kh_folds * tp * out_w
    return cycles, ifmap_reads, filter_reads, ofmap_writes


def tile_costs(dataflow, tp, tc, tk, out_w, k_h, k_w, stride, rows, cols):
    """Compute cycles and SRAM accesses of one tile, for any dataflow.

    Parameters
    ----------
    dataflow : int or array of int
        Dataflow code (`DATAFLOW_CODES`).
    tp, tc, tk : int or array of int
        Tile sizes: output rows, input channels, output channels (of one group).
    out_w, k_h, k_w, stride : int or array of int
        Layer geometry.
    rows, cols : int or array of int
        PE array shape.

    Returns
    -------
    tuple of int64 arrays (broadcast shape)
        ``(cycles, sram_ifmap_reads, sram_filter_reads, sram_ofmap_writes)``, in cycles and
        words.
    """
    dataflow = np.asarray(dataflow, dtype=np.int64)
    tp, tc, tk, out_w, k_h, k_w = (np.asarray(x, dtype=np.int64) for x in (tp, tc, tk, out_w, k_h, k_w))
    is_rs = dataflow == RS
    if is_rs.all():  # only the rs model is needed (the fast engine calls it so)
        shape = np.broadcast_shapes(dataflow.shape, *(np.shape(x) for x in (tp, tc, tk, out_w, k_h, k_w, stride,
                                                                              rows, cols)))
        return tuple(np.broadcast_to(x, shape).astype(np.int64)
                     for x in rs_fold(tp, tc, tk, out_w, k_h, k_w, stride, rows, cols))
    systolic_out = systolic.systolic_fold(np.where(is_rs, systolic.WS, dataflow),
                                          tp * out_w, k_h * k_w * tc, tk, rows, cols)
    if not is_rs.any():
        return tuple(np.asarray(x, dtype=np.int64) for x in systolic_out)
    rs_out = rs_fold(tp, tc, tk, out_w, k_h, k_w, stride, rows, cols)
    return tuple(np.where(is_rs, r, s).astype(np.int64) for r, s in zip(rs_out, systolic_out))


def ofmap_readback_words(tp, out_w, tk, c_index_positive):
    """Partial sums read back from the ofmap buffer when a tile's ``c`` index is > 0 (words)."""
    return np.where(c_index_positive, np.asarray(tp, dtype=np.int64) * out_w * tk, 0)
