"""SCALE-Sim's systolic-array fold model for the ws, os and is dataflows.

PLACEHOLDER (to be replaced by the formulas derived from SCALE-Sim v3's source and checked
against its reports): the SCALE-Sim paper's analytical model.
"""

from __future__ import annotations

import numpy as np

WS, OS, IS = 0, 1, 2


def _ceil_div(a, b):
    return -(-a // b)


def systolic_fold(dataflow, m, w, f, rows, cols):
    """Costs of one GEMM tile on a ``rows x cols`` systolic array.

    Parameters
    ----------
    dataflow : int or array of int
        0 = ws, 1 = os, 2 = is (`WS`, `OS`, `IS`).
    m, w, f : int or array of int
        Output pixels, window size (k_h*k_w*channels) and filters of the GEMM tile.
    rows, cols : int or array of int
        PE array shape.

    Returns
    -------
    tuple of int64 arrays (broadcast shape)
        ``(cycles, ifmap_reads, filter_reads, ofmap_writes)``; reads and writes in words.
    """
    dataflow, m, w, f, rows, cols = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.int64) for x in (dataflow, m, w, f, rows, cols)))
    # (spatial rows, spatial cols, temporal) per dataflow, as in SCALE-Sim.
    s_r = np.where(dataflow == OS, m, w)
    s_c = np.where(dataflow == IS, m, f)
    t = np.where(dataflow == WS, m, np.where(dataflow == OS, w, f))
    row_fold = _ceil_div(s_r, rows)
    col_fold = _ceil_div(s_c, cols)
    cycles = (2 * rows + cols + t - 2) * row_fold * col_fold
    ifmap_reads = np.where(dataflow == IS, m * w * row_fold * 0 + m * w, m * w * col_fold)
    filter_reads = np.where(dataflow == WS, w * f, w * f * np.where(dataflow == OS, row_fold, col_fold))
    ofmap_writes = np.where(dataflow == OS, m * f, m * f * row_fold)
    return (cycles.astype(np.int64), ifmap_reads.astype(np.int64),
            filter_reads.astype(np.int64), ofmap_writes.astype(np.int64))
