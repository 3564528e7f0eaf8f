"""SCALE-Sim v3's systolic-array fold model for the ws, os and is dataflows, in closed form.

SCALE-Sim (scalesim==3.0.0 on PyPI) does not have a formula: it builds, per fold, "demand
matrices" with one row per cycle and one column per array row or column, and steps its
memory system through them one row at a time. The closed forms below count those rows and
the operand-matrix slices it reads; they reproduce its reports exactly (checked against
``tests/fixtures/scalesim_reference.csv``, which ``tools/scalesim_reference.py`` generates by
running SCALE-Sim itself). References are to files and methods of the installed package
``scalesim/``.

The layer as a GEMM (``compute/operand_matrix.py``): ``m`` output pixels (rows of the ifmap
operand matrix), ``w = filter_h * filter_w * channels`` (its columns, the filter matrix's
rows) and ``f`` filters. Each dataflow maps two of them onto the array and streams the third
(``Sr``, ``Sc``, ``T`` in ``compute/systolic_compute_{ws,os,is}.py``, ``set_params``):

====  ======  ======  =====
df    Sr      Sc      T
====  ======  ======  =====
ws    w       f       m
os    m       f       w
is    w       m       f
====  ======  ======  =====

``row_fold = ceil(Sr / rows)`` and ``col_fold = ceil(Sc / cols)``; every fold is padded to the
full array (``-1`` null requests), so edge folds cost as much time as full ones.

Quirks of SCALE-Sim that these formulas keep on purpose (so that the ``scalesim`` mapping
shows a SCALE-Sim user the numbers they know):

- "Total Cycles" is the number of demand-matrix rows minus one: the memory system reports
  the index of the last row's service cycle (``memory/double_buffered_scratchpad_mem.py``,
  ``service_memory_requests``: ``total_cycles = max(ofmap_serviced_cycles)`` with row ``i``
  served at cycle ``i``). A 1x1 GEMM on a 1x1 array under ``os`` therefore has 0 cycles (and
  SCALE-Sim itself then fails with a ZeroDivisionError computing utilisation).
- SRAM read counts are slice sizes, not useful words: the ``-1`` entries of partial windows
  (see `scalesim_ofmap_size`) are counted as reads.
- ``os`` ofmap writes add ``rows + cols`` per fold on top of the real writes
  (``create_ofmap_demand_mat`` adds ``shape[0] + shape[1]`` of the padded fold, a counting
  slip in SCALE-Sim).
- With ``InterfaceBandwidth = CALC`` (its "estimate bandwidth" mode, ``memory/
  read_buffer_estimate_bw.py``) the read buffers never stall, and with an ofmap buffer that
  holds the whole output the write buffer never stalls either, so Stall Cycles = 0 and
  Total Cycles is the compute time alone.
"""

from __future__ import annotations

import numpy as np

WS, OS, IS = 0, 1, 2


def _ceil_div(a, b):
    return -(-a // b)


def scalesim_ofmap_size(in_size, kernel, stride):
    """Output size along one axis as SCALE-Sim computes it: ``ceil((in - k) / stride) + 1``.

    SCALE-Sim applies no padding and rounds *up* (``topology_utils.py``,
    ``topo_calc_hyperparams``: ``ceil((ifmap_h - filt_h + stride_h) / stride_h)``), so when
    ``stride`` does not divide ``in - k`` it produces one more output row (column) than a
    conv with ``pad = 0`` (``(in - k) // stride + 1``); that extra window hangs over the
    input edge and its missing inputs are ``-1`` addresses that still count as reads.

    Parameters
    ----------
    in_size, kernel, stride : int or array of int
        Input size, kernel size (``kernel <= in_size``) and stride along the axis.

    Returns
    -------
    int64 array (broadcast shape)
        The number of output positions along the axis.
    """
    in_size, kernel, stride = (np.asarray(x, dtype=np.int64) for x in (in_size, kernel, stride))
    return _ceil_div(in_size - kernel, stride) + 1


def systolic_fold(dataflow, m, w, f, rows, cols):
    """Costs of one GEMM tile on a ``rows x cols`` systolic array, as SCALE-Sim v3 reports them.

    Parameters
    ----------
    dataflow : int or array of int
        0 = ws, 1 = os, 2 = is (`WS`, `OS`, `IS`).
    m, w, f : int or array of int, each >= 1
        Output pixels, window size (k_h*k_w*channels) and filters of the GEMM tile.
    rows, cols : int or array of int, each >= 1
        PE array shape.

    Returns
    -------
    tuple of int64 arrays (broadcast shape)
        ``(cycles, ifmap_reads, filter_reads, ofmap_writes)``: SCALE-Sim's compute-report
        "Total Cycles" (with CALC bandwidth, so no stalls) and its detailed-access-report
        "SRAM IFMAP Reads", "SRAM Filter Reads" and "SRAM OFMAP Writes", in words.
    """
    dataflow, m, w, f, rows, cols = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.int64) for x in (dataflow, m, w, f, rows, cols)))
    is_ws, is_os = dataflow == WS, dataflow == OS
    # (Sr, Sc, T): systolic_compute_{ws,os,is}.py, set_params.
    spatial_rows = np.where(is_os, m, w)
    spatial_cols = np.where(dataflow == IS, m, f)
    temporal = np.where(is_ws, m, np.where(is_os, w, f))
    row_fold = _ceil_div(spatial_rows, rows)
    col_fold = _ceil_div(spatial_cols, cols)
    folds = row_fold * col_fold

    # Rows of one fold's demand matrix (create_ofmap_demand_mat; the ifmap and filter demand
    # matrices have the same length, SCALE-Sim asserts it):
    #   ws, is: (2*rows - 1) null rows while the stationary operand loads and the first
    #           partial sums travel down, T streaming rows, then skew_matrix() adds cols - 1.
    #   os:     T - 1 null rows while the outputs accumulate, rows rows to drain them
    #           (flipped), then skew_matrix() adds cols - 1.
    fold_rows = np.where(is_os, rows + cols + temporal - 2, 2 * rows + cols + temporal - 2)
    # Total Cycles = index of the last demand row (double_buffered_scratchpad_mem.py).
    cycles = folds * fold_rows - 1

    # Reads are the sizes of the operand-matrix slices each fold takes (create_*_demand_mat):
    #   ws: each of the col_fold column folds re-streams the whole ifmap; filters load once.
    #   os: ifmap slices re-read per column fold, filter slices per row fold.
    #   is: the ifmap loads once (stationary); filters re-stream per column (pixel) fold.
    ifmap_reads = np.where(dataflow == IS, m * w, m * w * col_fold)
    filter_reads = w * f * np.where(is_ws, 1, np.where(is_os, row_fold, col_fold))
    # ws and is write every output once per row fold (partial sums); os writes each output
    # once, plus SCALE-Sim's extra (rows + cols) per fold (see the module docstring).
    ofmap_writes = np.where(is_os, m * f + folds * (rows + cols), m * f * row_fold)
    return (cycles.astype(np.int64), ifmap_reads.astype(np.int64),
            filter_reads.astype(np.int64), ofmap_writes.astype(np.int64))
