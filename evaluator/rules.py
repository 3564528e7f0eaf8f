"""The simulator's rules, re-written in torch so that they are differentiable.

The simulator (`dataset_gen.simulator`) works on integers in NumPy; the evaluator needs the
same rules on float tensors, evaluated for soft accelerator encodings (geometric means of
candidate values, dataflow and word-width probabilities) and passing gradients. Constants
and tables come from the simulator itself; what is re-written here is only what has to be
torch: the tile ladders (channel ladders, output tiles with width tiles), tile words (input
spans), buffer and register-file capacities (single-tile operands get the whole buffer),
the per-tile fold models (register-file blocking, rs filters per PE, ofmap read-backs within
a tile, array hops), the DRAM reuse rule with halo reuse (line buffers) and buffer residency,
the buffer access counts, area and the six energy components.

``tests/evaluator/test_rules_golden.py`` checks every rule against the live simulator on a
fixed set of pairs; when the simulator's rules change, update this module (and
`evaluator.analytic.ANALYTIC_VERSION`).

Layer values are exact integers held as floats. ``ceil`` and ``floor`` pass gradients
straight through (`ceil_st`, `floor_st`), so staircases in the accelerator still have slopes.

Tiles: the ``p`` loop's tiles have rows and columns (``tp``, ``tq``); a loop is described by
`tile_split` / `spatial_split` as (full tiles = trips - 1, full size, edge size), plus the
columns ``tq`` for ``p`` (the same for every tile of the loop).

Shapes: pairs run along the LAST axis. Per-pair values are ``(n,)`` and broadcast against
tile tensors shaped ``(..., n)`` (e.g. ``(S, n)`` for the ``S`` choices of a loop, ``(Sc, 1,
n)`` and ``(1, Sk, n)`` for every (c, k) combination): elementwise torch ops are several
times faster with the long axis innermost than with a short one.
"""

from __future__ import annotations

import torch

from dataset_gen.simulator import energy
from dataset_gen.simulator.dataflows import DATAFLOW_CODES, RF_ACCESSES_PER_MAC
from dataset_gen.simulator.mapper import CHANNEL_FACTOR, CHANNEL_STEPS, ROW_FACTOR, ROW_STEPS, WIDTH_STEPS
from dataset_gen.space import DATAFLOWS, LOOP_ORDERS, WORD_BITS

# Which tiled loops index each operand's tile (the batch and group loops index all three
# but the filter, which only the group loop indexes).
OPERAND_LOOPS: dict[str, str] = {"ifmap": "pc", "filter": "ck", "ofmap": "pk"}
CHANNEL_SLOTS = CHANNEL_STEPS + 1  # `mapper.ladder`: ceil(D / CHANNEL_FACTOR**j), j < CHANNEL_STEPS, then 1
ROW_SLOTS = ROW_STEPS + 1  # whole-row tiles of `mapper.spatial_tiles`
SPATIAL_SLOTS = ROW_SLOTS + len(WIDTH_STEPS)  # then the width tiles
# Loop orders in which c lies outside p: a p step keeps the c tile (halo reuse possible).
C_OUTSIDE_P: tuple[bool, ...] = tuple(order.index("c") < order.index("p") for order in LOOP_ORDERS)
_MAC_PJ = {bits: energy.mac_energy_pj(bits) for bits in WORD_BITS}
_MAC_UM2 = {bits: energy.mac_area_um2(bits) for bits in WORD_BITS}
# `energy.array_hop_energy_pj` per bit (it is linear in the word width).
_HOP_PJ_PER_BIT = energy.ARRAY_HOP_MAC_RATIO * (energy.mac_energy_pj(16) / 16.0)
_DIVISOR_CHUNK = 1 << 22  # elements per chunk of the divisor search


def ceil_st(x: torch.Tensor) -> torch.Tensor:
    """``ceil`` forward, identity gradient backward.

    The small tolerance absorbs float rounding of exact ratios (``2**(log2 6 - log2 3)``).
    """
    return x + (torch.ceil(x - 1e-4) - x).detach()


def floor_st(x: torch.Tensor) -> torch.Tensor:
    """``floor`` forward (tolerant of float error on exact ratios), identity gradient backward."""
    return x + (torch.floor(x + 1e-4) - x).detach()


# ------------------------------------------------------------------------- tiles, capacity


def _ladder(dim: torch.Tensor, steps: int, factor: int) -> torch.Tensor:
    values = [torch.ceil(dim / float(factor) ** j - 1e-6) for j in range(steps)]
    return torch.stack([*values, torch.ones_like(dim)])


def ladder(dim: torch.Tensor) -> torch.Tensor:
    """``(CHANNEL_SLOTS, n)`` channel tile sizes of `mapper.ladder`: ``ceil(dim / CHANNEL_FACTOR**j)``
    for ``j < CHANNEL_STEPS``, then 1.

    Unlike the mapper's, duplicates are kept (they are harmless candidates and keep the
    shape fixed).
    """
    return _ladder(dim, CHANNEL_STEPS, CHANNEL_FACTOR)


def largest_divisor_at_most(value: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """`mapper.largest_divisor_at_most` per element: the largest divisor of ``value`` not above
    ``limit`` (1 when ``limit < 1``). Exact integers held as floats; no gradient (layers are
    discrete).

    Distinct ``(value, limit)`` pairs are searched once, in integers, over the candidates
    ``1..max limit``.
    """
    dtype, shape = value.dtype, value.shape
    value = torch.round(value.detach()).to(torch.int64).reshape(-1)
    limit = torch.minimum(torch.clamp(torch.round(limit.detach()).to(torch.int64).reshape(-1), min=0), value)
    if value.numel() == 0:
        return value.to(dtype).reshape(shape)
    top = int(limit.max())
    distinct, position = torch.unique(value * (top + 1) + limit, return_inverse=True)
    best = torch.ones(distinct.shape[0], dtype=torch.int64)
    if top >= 2:
        candidates = torch.arange(1, top + 1)
        rows = max(1, _DIVISOR_CHUNK // top)
        for start in range(0, distinct.shape[0], rows):
            keys = distinct[start:start + rows, None]
            hits = (torch.remainder(keys // (top + 1), candidates) == 0) & (candidates <= keys % (top + 1))
            best[start:start + rows] = torch.where(hits, candidates, 0).amax(dim=1)
    return torch.clamp(best, min=1)[position].to(dtype).reshape(shape)


def spatial_tiles(out_h: torch.Tensor, out_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(SPATIAL_SLOTS, n)`` rows ``tp`` and columns ``tq`` of `mapper.spatial_tiles`' output tiles.

    Whole-row tiles ``(ceil(out_h / ROW_FACTOR**j), out_w)``, ``j < ROW_STEPS``, then ``(1, out_w)``;
    then for each ``j`` of `WIDTH_STEPS` the width tile ``(1, largest divisor of out_w <=
    out_w // 2**j)``. A width tile the mapper leaves out (not below ``out_w``, or listed
    already) is a duplicate here: of ``(1, out_w)`` or of the other width tile.
    """
    rows = _ladder(out_h, ROW_STEPS, ROW_FACTOR)
    width = torch.stack([largest_divisor_at_most(out_w, torch.floor(out_w / 2.0**j)) for j in WIDTH_STEPS])
    tp = torch.cat([rows, torch.ones_like(width)])
    tq = torch.cat([out_w.expand(rows.shape), width])
    return tp, tq


def tile_split(dim: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A loop of ``dim`` in tiles of ``size``: (full tiles = trips - 1, full size, edge size)."""
    full = torch.ceil(dim / size - 1e-6) - 1
    return full, size, dim - full * size


def spatial_split(out_h: torch.Tensor, out_w: torch.Tensor, tp: torch.Tensor, tq: torch.Tensor):
    """The ``p`` loop (`reference.spatial_loop`): (full tiles, rows per tile, rows of the edge
    tile, columns per tile).

    Whole rows (``tq >= out_w``): ``ceil(out_h / tp)`` tiles, the last holding the remainder.
    Width tiles (``tq < out_w``, ``tp = 1``): ``out_h * out_w / tq`` tiles, all alike.
    """
    tq = torch.minimum(tq, out_w)
    width = tq < out_w
    full, size, edge = tile_split(out_h, torch.where(width, torch.ones_like(tp), torch.minimum(tp, out_h)))
    full = torch.where(width, out_h * out_w / tq - 1, full)
    return full, size, torch.where(width, size, edge), tq


def spatial_ladder_tiles(out_h: torch.Tensor, out_w: torch.Tensor):
    """`spatial_split` of every output tile of `spatial_tiles`: four ``(SPATIAL_SLOTS, n)`` tensors."""
    tp, tq = spatial_tiles(out_h, out_w)
    return spatial_split(out_h, out_w, tp, tq)


def ladder_tiles(dim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`tile_split` of every channel ladder value ``(CHANNEL_SLOTS, n)``: full tiles, full size, edge size."""
    return tile_split(dim, ladder(dim))


def buffer_capacity_words(kb: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Words a whole buffer of ``kb`` KiB holds (`mapper.buffer_words`)."""
    return floor_st(kb * float(energy.BITS_PER_KB) / bits)


def half_buffer_words(kb: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Words half a double-buffered buffer of ``kb`` KiB holds (`mapper.half_buffer_words`)."""
    return floor_st(kb * float(energy.BITS_PER_KB) / bits / 2)


def single_tiles(layer: dict, trips_p, trips_c, trips_k) -> dict[str, torch.Tensor]:
    """Per operand, whether its tile is the same at every step of the nest (`mapper.single_tiles`).

    ifmap: one (group, image) block, one ``p`` and one ``c`` tile; filter: one group, one
    ``c`` and one ``k`` tile; ofmap: one block, one ``p`` and one ``k`` tile.
    """
    one_block = layer["groups"] * layer["batch"] == 1
    return {"ifmap": one_block & (trips_p == 1) & (trips_c == 1),
            "filter": (layer["groups"] == 1) & (trips_c == 1) & (trips_k == 1),
            "ofmap": one_block & (trips_p == 1) & (trips_k == 1)}


def fits_buffers(words: dict, single: dict, acc: dict) -> torch.Tensor:
    """Whether every operand's tile fits its buffer (`mapper.fits_buffer`): half of it, or all
    of it for an operand with a single tile. ``words`` as `tile_words`, ``single`` as
    `single_tiles`; an operand's element width is ``acc["<operand>_bits"]`` when given
    (`with_widths`), else the word width."""
    ok = None
    for operand in ("ifmap", "filter", "ofmap"):
        bits = acc.get(f"{operand}_bits", acc["word_bits"])
        kb = acc[f"{operand}_kb"]
        limit = torch.where(single[operand], buffer_capacity_words(kb, bits), half_buffer_words(kb, bits))
        fit = words[operand] <= limit
        ok = fit if ok is None else ok & fit
    return ok


def rf_words(rf_bytes: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Words one PE's register file holds (`mapper.rf_words`)."""
    return floor_st(rf_bytes * 8 / bits)


def rf_word_bits(acc: dict) -> torch.Tensor:
    """Bits of one register-file word: the widest packed operand (`with_widths`), else the word width."""
    return acc.get("rf_word_bits", acc["word_bits"])


def layer_widths(layer: dict, acc: dict, kind: int | None = None) -> dict[str, torch.Tensor]:
    """The layers' precision on the accelerators (`precision.resolve`), in torch.

    ``layer`` holds ``w_bits``, ``a_bits`` (0: the word width) and ``in_c_per_group``;
    ``acc`` ``word_bits`` (expected bits when soft), ``word_bits_onehot`` and ``pe_kind``
    ``(n, 2)`` probabilities. ``kind`` 0 (fixed) or 1 (scalable) evaluates that PE kind;
    None the expectation over ``acc["pe_kind"]`` (lanes and MAC energy mixed linearly).
    Returns ``w_bits``, ``a_bits`` (resolved), ``lanes``, ``packed_cg``, the packed operands'
    ``ifmap_bits``, ``filter_bits``, ``ofmap_bits``, ``rf_word_bits``, ``rf_access_bits``,
    ``mac_pj`` (per real MAC) and ``fits`` (both widths within the word).
    """
    word = acc["word_bits"]
    w = torch.where(layer["w_bits"] == 0, word, layer["w_bits"].to(word.dtype))
    a = torch.where(layer["a_bits"] == 0, word, layer["a_bits"].to(word.dtype))
    fits = (w <= word + 1e-6) & (a <= word + 1e-6)
    full_mac = _per_width(acc, _MAC_PJ)
    scalable_lanes = torch.clamp(torch.floor(word / w + 1e-6) * torch.floor(word / a + 1e-6), min=1.0)
    scalable_mac = full_mac * energy.FUSION_ENERGY_OVERHEAD * (w * a) / (word * word)
    p_scalable = acc["pe_kind"][:, 1] if kind is None else torch.full_like(word, float(kind))
    lanes = 1.0 + p_scalable * (scalable_lanes - 1.0)
    cg = layer["in_c_per_group"]
    packed_cg = ceil_st(cg / lanes)
    lanes = ceil_st(cg / packed_cg)  # spread evenly over the packed channels
    ifmap_bits, filter_bits, ofmap_bits = lanes * a, lanes * w, a
    return {"w_bits": w, "a_bits": a, "lanes": lanes, "packed_cg": packed_cg, "ifmap_bits": ifmap_bits,
            "filter_bits": filter_bits, "ofmap_bits": ofmap_bits,
            "rf_word_bits": torch.maximum(torch.maximum(ifmap_bits, filter_bits), ofmap_bits),
            "rf_access_bits": (ifmap_bits + filter_bits + ofmap_bits) / 3.0,
            "mac_pj": full_mac + p_scalable * (scalable_mac - full_mac), "fits": fits}


def with_widths(layer: dict, acc: dict, widths: dict) -> tuple[dict, dict]:
    """The lane-packed layer (``in_c_per_group`` in packed channels, ``packed_macs``) and the
    accelerator dict with the operand widths, as the simulator runs them (`precision.pack`)."""
    packed = {**layer, "in_c_per_group": widths["packed_cg"],
              "packed_macs": layer["macs"] * widths["packed_cg"] / layer["in_c_per_group"]}
    return packed, {**acc, **{name: widths[name] for name in (
        "ifmap_bits", "filter_bits", "ofmap_bits", "rf_word_bits", "rf_access_bits", "mac_pj")}}


def rf_words_required(dataflow: torch.Tensor, k_w: torch.Tensor) -> torch.Tensor:
    """Register-file words a PE needs (`dataflows.rf_words_required`): 2, or ``2*k_w + 1`` for rs.

    ``dataflow`` holds ``(n, 4)`` probabilities over `DATAFLOWS` (a one-hot when hard).
    """
    return 2 + dataflow[:, DATAFLOWS.index("rs")] * (2 * k_w - 1)


def input_span(outputs: torch.Tensor, kernel, stride, size) -> torch.Tensor:
    """Input rows (columns) ``outputs`` consecutive outputs read (`mapper.input_span`):
    ``(outputs - 1) * stride + kernel`` when windows overlap (``kernel >= stride``), else
    ``outputs * kernel``; at most ``size``."""
    span = torch.where(kernel >= stride, (outputs - 1) * stride + kernel, outputs * kernel)
    return torch.minimum(span, size)


def ifmap_rows(tp: torch.Tensor, layer: dict) -> torch.Tensor:
    """Input rows an ifmap tile of ``tp`` output rows holds (`input_span` along the height)."""
    return input_span(tp, layer["k_h"], layer["stride"], layer["in_h"])


def ifmap_cols(tq: torch.Tensor, layer: dict) -> torch.Tensor:
    """Input columns an ifmap tile of ``tq`` output columns holds (`input_span` along the width)."""
    return input_span(tq, layer["k_w"], layer["stride"], layer["in_w"])


def halo_rows(layer: dict) -> torch.Tensor:
    """Input rows two consecutive row tiles share (`mapper.halo`): ``max(0, k_h - stride)``,
    at most ``in_h``."""
    return torch.minimum(torch.clamp(layer["k_h"] - layer["stride"], min=0.0), layer["in_h"])


def tile_words(layer: dict, tp: torch.Tensor, tq: torch.Tensor, tc: torch.Tensor,
               tk: torch.Tensor) -> dict[str, torch.Tensor]:
    """Words of one tile of each operand (`mapper.{ifmap,filter,ofmap}_tile_words`).

    ``layer`` values must broadcast against the tile sizes.
    """
    return {"ifmap": ifmap_rows(tp, layer) * ifmap_cols(tq, layer) * tc,
            "filter": layer["k_h"] * layer["k_w"] * tc * tk,
            "ofmap": tp * tq * tk}


def ifmap_halo_words(layer: dict, tq: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    """Ifmap words a row tile finds on chip from the previous row tile (`mapper.ifmap_halo_words`)."""
    return halo_rows(layer) * ifmap_cols(tq, layer) * tc


def ifmap_fill_words(layer: dict, tq: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    """Ifmap words a line buffer loads at a width-tiled sweep's start beyond its first tile
    (`mapper.ifmap_fill_words`): the halo rows across the rest of the width."""
    return halo_rows(layer) * (ifmap_cols(layer["out_w"], layer) - ifmap_cols(tq, layer)) * tc


def line_buffer(layer: dict, acc: dict, tq: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    """1.0 where width tiles of ``tq`` columns keep a line buffer (`mapper.line_buffer_fits`):
    the input rows of one output row across the whole width, plus one tile, fit the ifmap
    buffer; else 0.0 (row tiles: 0.0, their halo reuse needs none)."""
    one = torch.ones_like(tq)
    footprint = (ifmap_rows(one, layer) * (ifmap_cols(layer["out_w"], layer) + ifmap_cols(tq, layer)) * tc)
    capacity = buffer_capacity_words(acc["ifmap_kb"], acc.get("ifmap_bits", acc["word_bits"]))
    return ((tq < layer["out_w"]) & (footprint <= capacity)).to(tq.dtype)


# ----------------------------------------------------------------------------- fold models

# The GEMM dimensions a systolic dataflow maps on the array's rows, its columns, and streams
# (`systolic.systolic_fold`'s Sr, Sc, T), as the tiled loops they grow with: m = tp*tq (p),
# w = k_h*k_w*tc (c), f = tk (k).
SYSTOLIC_DIMS: dict[str, tuple[str, str, str]] = {"ws": ("c", "k", "p"), "os": ("p", "k", "c"),
                                                  "is": ("c", "p", "k")}


def _gemm(layer: dict, tp, tq, tc, tk) -> dict[str, torch.Tensor]:
    """The tile's GEMM sizes by the loop they grow with: ``{"p": m, "c": w, "k": f}``."""
    return {"p": tp * tq, "c": layer["k_h"] * layer["k_w"] * tc, "k": tk}


def blocking_extra(rf: torch.Tensor | None) -> torch.Tensor | float:
    """Stationary elements a PE keeps with register-file blocking (`dataflows.systolic_costs`'
    ``b = max(rf_words - 1, 1)``); 1 (no blocking, SCALE-Sim's counts) when ``rf`` is None."""
    return 1.0 if rf is None else torch.clamp(rf - 1, min=1.0)


def rs_filters_per_pe(rf: torch.Tensor | None, k_w: torch.Tensor, tk: torch.Tensor) -> torch.Tensor:
    """Filters an rs PE works on at once (`dataflows.rs_filters_per_pe`):
    ``(rf_words - k_w) // (k_w + 1)``, at least 1, at most ``tk``; 1 without blocking."""
    if rf is None:
        return torch.ones_like(tk)
    return torch.minimum(torch.clamp(floor_st((rf - k_w) / (k_w + 1)), min=1.0), tk)


def fold_factors(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor, tp: torch.Tensor,
                 tq: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor,
                 rf: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """A tile's demand rows under one dataflow as a sum of terms, each a product of one factor
    per tiled loop (`dataflows.tile_costs`' cycles).

    Systolic (`dataflows.systolic_costs`), with ``R``/``C`` the row and column folds of the
    loops on the array's rows and columns (`SYSTOLIC_DIMS`), ``T`` the streamed size, ``b``
    the blocking factor (`blocking_extra`; ``rf`` None: none) and ``o`` the fold overhead
    (ws, is: ``2*rows + cols - 2``; os: ``rows + cols - 2``)::

        rows = o * [R * (C > 1) * ceil(C / b)] + o * [ceil(R / b) * (C == 1)] + R * C * T

    (the folds merged along the columns when there are several, else along the rows).
    Terms are ``{"p", "c", "k"}`` dicts. Row stationary (`dataflows.rs_fold`, ``pf`` filters
    per PE) couples ``c`` and ``k`` in its pair folds: its terms are ``{"p", "ck"}`` (``ck``
    of ``tc`` and ``tk`` together, so tiles shaped ``(S, 1, n)`` and ``(1, S, n)`` give every
    combination)::

        rows = kh_folds * p_folds * pair_folds * (tq * k_w * pf + set_rows - 1)

    ``layer``, ``rows``, ``cols`` and ``rf`` are ``(n,)``, the tiles ``(..., n)``; ``tq`` has
    ``tp``'s shape (or broadcasts to it). Each factor has the shape of its loop's tiles.
    """
    k_h, k_w = layer["k_h"], layer["k_w"]
    if dataflow == "rs":
        set_rows = torch.minimum(k_h, rows)
        sets = torch.clamp(floor_st(rows / set_rows), min=1.0)
        kh_folds = ceil_st(k_h / set_rows)
        p_folds = ceil_st(tp / torch.minimum(cols, tp)) * kh_folds
        pf = rs_filters_per_pe(rf, k_w, tk)
        pairs = tc * ceil_st(tk / pf)
        pair_folds = ceil_st(pairs / sets)
        return [{"p": p_folds * tq * k_w, "ck": pair_folds * pf},
                {"p": p_folds * (set_rows - 1), "ck": pair_folds}]
    tiles = {"p": tp, "c": tc, "k": tk}
    gemm = _gemm(layer, tp, tq, tc, tk)
    row_dim, col_dim, time_dim = SYSTOLIC_DIMS[dataflow]
    row_fold = ceil_st(gemm[row_dim] / rows)
    col_fold = ceil_st(gemm[col_dim] / cols)
    several = (col_fold > 1).to(col_fold.dtype)
    extra = blocking_extra(rf)
    overhead = rows + cols - 2 if dataflow == "os" else 2 * rows + cols - 2
    overhead = overhead * torch.ones_like(tiles[time_dim])
    merged_cols = {row_dim: row_fold, col_dim: several * ceil_st(col_fold / extra),
                   time_dim: overhead}
    merged_rows = {row_dim: ceil_st(row_fold / extra), col_dim: 1 - several,
                   time_dim: overhead}
    streaming = {row_dim: row_fold, col_dim: col_fold, time_dim: gemm[time_dim]}
    return [merged_cols, merged_rows, streaming]


def fold_product(factors: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Demand rows of a tile: the sum over `fold_factors`' terms of their products."""
    total = 0.0
    for term in factors:
        product = 1.0
        for factor in term.values():
            product = product * factor
        total = total + product
    return total


def tile_cycles(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor, tp: torch.Tensor,
                tq: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor, rf: torch.Tensor | None = None) -> torch.Tensor:
    """Compute cycles of one tile, as the simulator counts them (`dataflows.tile_costs`).

    Our mappings (``rf`` given: register-file blocking) count every demand row, as row
    stationary counts its passes' cycles; without blocking a systolic tile has SCALE-Sim's
    "Total Cycles", its demand rows minus one (`dataset_gen.simulator.systolic`).
    """
    rows_of_demand = fold_product(fold_factors(dataflow, layer, rows, cols, tp, tq, tc, tk, rf))
    return rows_of_demand if dataflow == "rs" or rf is not None else rows_of_demand - 1


def tile_counts(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor, tp: torch.Tensor,
                tq: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor, rf: torch.Tensor | None = None):
    """SRAM accesses and array transfers of one tile (`dataflows.tile_costs`, all but the cycles).

    Returns ``(ifmap reads, filter reads, ofmap writes, ofmap reads within the tile, array
    hops)``. ``rf``: register-file words (blocking, `dataflows.systolic_costs`); None gives
    SCALE-Sim's counts (no blocking, os counts its ``rows + cols`` slip per fold). Ofmap
    reads within the tile: real writes less the tile's outputs ``tp*tq*tk``. All arguments
    have the same rank (``(n,)`` in the golden tests and `tile_sums`).
    """
    k_h, k_w, stride = layer["k_h"], layer["k_w"], layer["stride"]
    outputs = tp * tq * tk
    if dataflow == "rs":
        set_rows = torch.minimum(k_h, rows)
        kh_folds = ceil_st(k_h / set_rows)
        p_folds = ceil_st(tp / torch.minimum(cols, tp))
        pairs = tc * ceil_st(tk / rs_filters_per_pe(rf, k_w, tk))
        row_words = (tq - 1) * stride + k_w
        ifmap = pairs * row_words * (kh_folds * stride * (tp - p_folds) + p_folds * k_h)
        writes = tc * tk * kh_folds * tp * tq
        return ifmap, k_h * k_w * tc * tk, writes, writes - outputs, writes * (set_rows - 1)
    m, w, f = tp * tq, k_h * k_w * tc, tk
    sizes = {"p": m, "c": w, "k": f}
    row_dim, col_dim, _ = SYSTOLIC_DIMS[dataflow]
    row_fold, col_fold = ceil_st(sizes[row_dim] / rows), ceil_st(sizes[col_dim] / cols)
    several = col_fold > 1
    extra = blocking_extra(rf)
    ones = torch.ones_like(col_fold)
    block_cols = torch.where(several, torch.minimum(extra * ones, col_fold), ones)
    block_rows = torch.where(several, ones, torch.minimum(extra * ones, row_fold))
    groups_c = torch.where(several, ceil_st(col_fold / extra), ones)
    groups_r = torch.where(several, row_fold, ceil_st(row_fold / extra))
    if dataflow == "ws":
        ifmap, filters, real_writes = m * w * groups_c, w * f, m * f * groups_r
    elif dataflow == "os":
        ifmap, filters, real_writes = m * w * groups_c, w * f * groups_r, m * f
    else:
        ifmap, filters, real_writes = m * w, w * f * groups_c, m * f * groups_r
    writes = real_writes + (row_fold * col_fold * (rows + cols) if rf is None and dataflow == "os" else 0.0)
    macs = m * w * f
    hops = floor_st(macs / block_cols) + floor_st(macs / block_rows)
    return ifmap, filters, writes, real_writes - outputs, hops


# ---------------------------------------------------------------------------- DRAM reuse


_IRRELEVANT = {operand: next(loop for loop in "pck" if loop not in loops) for operand, loops in OPERAND_LOOPS.items()}


def sweep_flags(order: str, changes: dict) -> dict[str, tuple[str, torch.Tensor | bool]]:
    """Per operand under a loop order: the loop irrelevant to it, and whether that loop sweeps
    the operand again (a bool tensor, or False when it never does).

    The irrelevant loop sweeps an operand again iff it lies outside the innermost relevant
    loop that actually changes (has more than one tile): the operand is then fetched whole
    ``trips`` times per (group, image).
    """
    flags = {}
    for operand, loops in OPERAND_LOOPS.items():
        irrelevant = _IRRELEVANT[operand]
        inner = [changes[loop] for loop in loops if order.index(loop) > order.index(irrelevant)]
        if not inner:
            flags[operand] = (irrelevant, False)
        else:
            flags[operand] = (irrelevant, inner[0] | inner[1] if len(inner) == 2 else inner[0])
    return flags


def sweep_words(layer: dict, p_tiles, line: torch.Tensor) -> dict[str, torch.Tensor]:
    """Words of one sweep of each operand over a (group, image): every tile of it once, and
    ``"halo"``: the ifmap words halo reuse saves of a sweep when it applies.

    ``p_tiles``: the ``p`` loop's (full tiles, rows per tile, edge rows, columns) (`spatial_split`);
    ``line``: `line_buffer` of those columns and the ``c`` tile. Ifmap tiles overlap by their
    halo, so an ifmap sweep depends on the output tiling. Halo reuse: every ``p`` step of a
    sweep (``trips - 1`` per ``c`` tile) finds `halo_rows` rows of its tile on chip
    (`reference.step_schedule`): row tiles always, width tiles with a line buffer, which
    loads `ifmap_fill_words` once per ``c`` tile (the saving is net of it).
    """
    full, size, edge, tq = p_tiles
    cg = layer["in_c_per_group"]
    cols = ifmap_cols(tq, layer)
    row_tiles = (tq >= layer["out_w"]).to(cols.dtype)
    return {
        "ifmap": (full * ifmap_rows(size, layer) + ifmap_rows(edge, layer)) * cols * cg,
        "halo": ((row_tiles + line) * full * halo_rows(layer) * cols * cg
                 - line * ifmap_fill_words(layer, tq, cg)),
        "filter": layer["k_h"] * layer["k_w"] * cg * layer["out_c_per_group"],
        "ofmap": layer["out_h"] * layer["out_w"] * layer["out_c_per_group"],
    }


def resident_operands(order: str, layer: dict, acc: dict, tp, tq, tc, tk) -> dict[str, torch.Tensor]:
    """Per operand (ifmap, filter, ofmap), whether it stays on chip across its irrelevant tiled
    loop under ``order`` (`mapper.resident_operands`): its words of one iteration of that loop
    (the relevant loops inside it swept whole) plus one tile fit the whole buffer.

    ``tp``, ``tq``, ``tc``, ``tk``: the full tile sizes (rows, columns, channels), broadcasting
    against ``layer``; operand widths from ``acc`` as in `fits_buffers`.
    """
    inside = lambda loop, outer: order.index(loop) > order.index(outer)  # noqa: E731
    cg, kg = layer["in_c_per_group"], layer["out_c_per_group"]
    rows, cols = (layer["out_h"], layer["out_w"]) if inside("p", "k") else (tp, tq)
    ifmap = (ifmap_rows(rows, layer) * ifmap_cols(cols, layer) * (cg if inside("c", "k") else tc)
             + ifmap_rows(tp, layer) * ifmap_cols(tq, layer) * tc)
    filt = layer["k_h"] * layer["k_w"] * ((cg if inside("c", "p") else tc) * (kg if inside("k", "p") else tk) + tc * tk)
    ofmap = ((layer["out_h"] * layer["out_w"] if inside("p", "c") else tp * tq) * (kg if inside("k", "c") else tk)
             + tp * tq * tk)
    capacity = {operand: buffer_capacity_words(acc[f"{operand}_kb"], acc.get(f"{operand}_bits", acc["word_bits"]))
                for operand in ("ifmap", "filter", "ofmap")}
    return {"ifmap": ifmap <= capacity["ifmap"], "filter": filt <= capacity["filter"],
            "ofmap": ofmap <= capacity["ofmap"]}


def dram_terms(order: str, changes: dict, words_per_sweep: dict, batch, groups,
               resident: dict | None = None) -> dict[str, tuple]:
    """DRAM words of each operand of the whole layer under one loop order (the reuse rule), as
    ``(first, again, loop)``: ``first + again * (trips[loop] - 1)`` words (``again`` None: 0).

    ``first``: one sweep of every (group, image) block; each further sweep of the irrelevant
    ``loop`` (`sweep_flags`) costs ``again``. The ifmap saves its halo on every sweep where
    a ``p`` step keeps the ``c`` tile (``c`` outside ``p``, or one ``c`` tile). The filter is
    fetched per image of a group unless it is one tile (kept on chip across images). Partial
    sums are written back every sweep and read back on all but the first (the ofmap counts
    both directions). ``resident`` (`resident_operands` under ``order``; None: none): an
    operand kept on chip across its irrelevant loop is swept once (resident partial sums:
    written back once, never read back). Each part depends
    on two loops at most (three for a resident one), so the sum over operands is cheap over a
    grid of tile choices (`dram_words`).
    """
    words = words_per_sweep
    if order.index("c") < order.index("p"):
        ifmap = words["ifmap"] - words["halo"]
    else:
        ifmap = words["ifmap"] - torch.where(changes["c"], torch.zeros_like(words["halo"]), words["halo"])
    filter_images = torch.where(changes["c"] | changes["k"], batch, torch.ones_like(batch))
    first = {"ifmap": batch * groups * ifmap, "filter": filter_images * groups * words["filter"],
             "ofmap": batch * groups * words["ofmap"]}
    terms = {}
    for operand, (loop, moving) in sweep_flags(order, changes).items():
        again = None
        if moving is not False:
            base = first[operand] * (2.0 if operand == "ofmap" else 1.0)  # psums: a write and a read
            if resident is not None and operand in resident:
                moving = moving & ~resident[operand]
            again = base * moving.to(base.dtype)
        terms[operand] = (first[operand], again, loop)
    return terms


def dram_operand_words(order: str, trips: dict, changes: dict, words_per_sweep: dict, batch, groups,
                       resident: dict | None = None) -> dict:
    """DRAM words of each operand of the whole layer under one loop order (`dram_terms`)."""
    return {operand: first if again is None else first + again * (trips[loop] - 1)
            for operand, (first, again, loop)
            in dram_terms(order, changes, words_per_sweep, batch, groups, resident).items()}


def dram_words(order: str, trips: dict, changes: dict, words_per_sweep: dict, batch, groups,
               resident: dict | None = None):
    """DRAM words of the whole layer under one loop order: the sum of `dram_terms`, each
    broadcast over the loops it does not depend on only once."""
    terms = dram_terms(order, changes, words_per_sweep, batch, groups, resident)
    total = (terms["ofmap"][0] + terms["ifmap"][0]) + terms["filter"][0]
    for first, again, loop in terms.values():
        if again is not None:
            total = torch.addcmul(total, again, trips[loop] - 1)
    return total


def over_tiles(chosen, fn) -> torch.Tensor:
    """Sum of ``fn(tp, tq, tc, tk)`` over every tile of one (group, image): full and edge tiles.

    ``chosen``: the ``p`` loop's `spatial_split`, then the ``c`` and ``k`` loops' `tile_split`.
    """
    (p_full, p_size, p_edge, tq), c_tiles, k_tiles = chosen
    total = 0.0
    for p_count, p_rows in ((p_full, p_size), (1.0, p_edge)):
        for c_count, c_size in ((c_tiles[0], c_tiles[1]), (1.0, c_tiles[2])):
            for k_count, k_size in ((k_tiles[0], k_tiles[1]), (1.0, k_tiles[2])):
                total = total + p_count * c_count * k_count * fn(p_rows, tq, c_size, k_size)
    return total


def tile_sums(layer: dict, acc: dict, chosen) -> torch.Tensor:
    """``(n, 5)`` `tile_counts` summed over the tiles of one (group, image), dataflow-weighted:
    ifmap reads, filter reads, ofmap writes, ofmap reads within tiles, array hops."""
    rows, cols = acc["pe_rows"], acc["pe_cols"]
    rf = rf_words(acc["rf_bytes"], rf_word_bits(acc))
    sums = torch.zeros((rows.shape[0], 5), dtype=rows.dtype)
    for index, name in enumerate(DATAFLOWS):
        weight = acc["dataflow"][:, index]
        if not bool((weight > 0).any()):
            continue
        per_block = over_tiles(chosen, lambda p, q, c, k, name=name: torch.stack(
            tile_counts(name, layer, rows, cols, p, q, c, k, rf)))  # (5, n)
        sums = sums + weight[:, None] * per_block.T
    return sums


def mapping_trips(chosen) -> tuple[dict, dict]:
    """Trips per tiled loop and whether each loop changes (more than one tile), from ``chosen``."""
    trips = {loop: dims[0] + 1 for loop, dims in zip("pck", chosen)}
    return trips, {loop: trip > 1 for loop, trip in trips.items()}


def buffer_words(layer: dict, acc: dict, chosen, order: torch.Tensor, sums: torch.Tensor | None = None) -> torch.Tensor:
    """``(n, 3)`` words read or written in the ifmap, filter and ofmap buffers by one mapping.

    The fold model's reads and writes of every tile (ofmap read-backs within tiles included),
    partial-sum read-backs between ``c`` tiles, and the DRAM traffic (a fill is a buffer
    write, a write-back a buffer read), as the simulator counts. ``chosen`` as in
    `over_tiles`; ``order`` ``(n,)`` indices into `LOOP_ORDERS`; ``sums``: `tile_sums` if
    already computed.
    """
    if sums is None:
        sums = tile_sums(layer, acc, chosen)
    blocks = layer["batch"] * layer["groups"]
    trips, changes = mapping_trips(chosen)
    words = sweep_words(layer, chosen[0], line_buffer(layer, acc, chosen[0][3], chosen[1][1]))
    dram = torch.zeros((blocks.shape[0], 3), dtype=blocks.dtype)
    sizes = (chosen[0][1], chosen[0][3], chosen[1][1], chosen[2][1])
    for position, loop_order in enumerate(LOOP_ORDERS):
        per_operand = dram_operand_words(loop_order, trips, changes, words, layer["batch"], layer["groups"],
                                         resident_operands(loop_order, layer, acc, *sizes))
        selected = (order == position).to(blocks.dtype)[:, None]
        dram = dram + selected * torch.stack([per_operand["ifmap"], per_operand["filter"], per_operand["ofmap"]], dim=1)
    return on_chip_buffer_words(layer, chosen, sums) + dram


def on_chip_buffer_words(layer: dict, chosen, sums: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` buffer words of one mapping that do not depend on its loop order: the fold
    model's reads and writes of every tile (`tile_sums`) and the partial-sum read-backs between
    ``c`` tiles (`buffer_words` adds the DRAM traffic's fills and write-backs)."""
    trips, _ = mapping_trips(chosen)
    readback = layer["out_h"] * layer["out_w"] * layer["out_c_per_group"] * (trips["c"] - 1)  # c tiles but the first
    blocks = layer["batch"] * layer["groups"]
    return torch.stack([sums[:, 0], sums[:, 1], sums[:, 2] + sums[:, 3] + readback], dim=1) * blocks[:, None]


def array_hops(layer: dict, acc: dict, chosen, sums: torch.Tensor | None = None) -> torch.Tensor:
    """``(n,)`` words moved between neighbouring PEs by one mapping (the simulator's ``array_hops``)."""
    if sums is None:
        sums = tile_sums(layer, acc, chosen)
    return sums[:, 4] * layer["batch"] * layer["groups"]


# ------------------------------------------------------------------------- area, energy


def _per_width(acc: dict, table: dict[int, float]) -> torch.Tensor:
    """A per-word-width constant, weighted by the word-width probabilities."""
    return sum(acc["word_bits_onehot"][:, i] * table[bits] for i, bits in enumerate(WORD_BITS))


def area_mm2(acc: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n,)`` chip area as `energy.area_mm2` computes it: PEs (MAC + RF) plus the three buffers."""
    mac_um2 = _per_width(acc, _MAC_UM2)
    if "pe_kind" in acc:  # a precision-scalable MAC is FUSION_AREA_OVERHEAD larger
        mac_um2 = mac_um2 * (1.0 + acc["pe_kind"][:, 1] * (energy.FUSION_AREA_OVERHEAD - 1.0))
    pe_um2 = mac_um2 + acc["rf_bytes"] * 8 * energy.RF_UM2_PER_BIT
    buffers_kb = acc["ifmap_kb"] + acc["filter_kb"] + acc["ofmap_kb"]
    return (acc["pe_rows"] * acc["pe_cols"] * pe_um2 + buffers_kb * energy.BITS_PER_KB * energy.SRAM_UM2_PER_BIT) * 1e-6


def energy_components(acc: dict, macs: torch.Tensor, sram_words: torch.Tensor, dram_words_moved: torch.Tensor,
                      cycles: torch.Tensor, hops: torch.Tensor,
                      packed_macs: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """The simulator's six energy components (pJ) from access counts, array hops and cycles.

    Parameters
    ----------
    acc : dict of tensors
        Decoded accelerator (`evaluator.features.decode_accelerators`).
    macs : (n,) tensor
        Real MACs (``packed_macs``: those of the lane-packed layer, which set the register
        accesses; default ``macs``).
    sram_words : (n, 3) tensor
        Words read or written in the ifmap, filter and ofmap buffers (`buffer_words`).
    dram_words_moved : (n,) or (n, 3) tensor
        Words moved between DRAM and the chip, both directions: in all, at the word width, or
        per operand (ifmap, filter, ofmap) at the operands' widths (`with_widths`).
    cycles : (n,) tensor
        Total cycles (leakage runs for that long).
    hops : (n,) tensor
        Words moved between neighbouring PEs (`array_hops`).

    Returns
    -------
    tuple of (n,) tensors
        ``(mac, rf, array, sram, dram, leak)`` as `energy.dynamic_energy_pj`,
        `energy.array_hop_energy_pj` and `energy.leakage_energy_pj` compute them
        (`reference.derived_fields`); `total_energy` sums them.
    """
    bits = acc["word_bits"]
    operand_bits = torch.stack([acc.get(f"{b}_bits", bits) for b in ("ifmap", "filter", "ofmap")], dim=1)  # (n, 3)
    access_bits = acc.get("rf_access_bits", bits)
    full_mac_pj = _per_width(acc, _MAC_PJ)
    rf_per_mac = sum(acc["dataflow"][:, i] * int(RF_ACCESSES_PER_MAC[DATAFLOW_CODES[name]])
                     for i, name in enumerate(DATAFLOWS))
    e_mac = macs * acc.get("mac_pj", full_mac_pj)
    rf_macs = packed_macs if packed_macs is not None else macs  # one register access per packed operand
    e_rf = (rf_macs * rf_per_mac * full_mac_pj * torch.sqrt(acc["rf_bytes"] / energy.RF_REFERENCE_BYTES)
            * (access_bits / bits))
    e_array = hops * (_HOP_PJ_PER_BIT * access_bits)
    buffer_pj = torch.stack([torch.sqrt(acc[f"{b}_kb"] / energy.SRAM_REFERENCE_KB) for b in ("ifmap", "filter", "ofmap")],
                            dim=1) * (energy.SRAM_PJ_PER_BIT_8KB * operand_bits)  # (n, 3) pJ per word
    e_sram = (sram_words * buffer_pj).sum(dim=1)
    if dram_words_moved.dim() == 2:
        e_dram = (dram_words_moved * operand_bits).sum(dim=1) * energy.DRAM_PJ_PER_BIT
    else:
        e_dram = dram_words_moved * energy.DRAM_PJ_PER_BIT * bits
    e_leak = area_mm2(acc) * energy.LEAK_W_PER_MM2 * cycles / (acc["freq_mhz"] * 1e6) * 1e12
    return e_mac, e_rf, e_array, e_sram, e_dram, e_leak


def total_energy(e_mac, e_rf, e_array, e_sram, e_dram, e_leak) -> torch.Tensor:
    """The components' sum in `energy.total_energy_pj`'s order: ((((mac + rf) + array) + sram) + dram) + leak."""
    return ((((e_mac + e_rf) + e_array) + e_sram) + e_dram) + e_leak
