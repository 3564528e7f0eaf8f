"""The simulator's rules, re-written in torch so that they are differentiable.

The simulator (`dataset_gen.simulator`) works on integers in NumPy; the evaluator needs the
same rules on float tensors, evaluated for soft accelerator encodings (geometric means of
candidate values, dataflow and word-width probabilities) and passing gradients. Constants
and tables come from the simulator itself; what is re-written here is only what has to be
torch: the tile ladder, buffer and register-file capacities, the per-tile fold models, the
DRAM reuse rule, the buffer access counts, area and the energy components.

``tests/evaluator/test_rules_golden.py`` checks every rule against the live simulator on a
fixed set of pairs; when the simulator's rules change, update this module (and
`evaluator.analytic.ANALYTIC_VERSION`).

Layer values are exact integers held as floats. ``ceil`` and ``floor`` pass gradients
straight through (`ceil_st`, `floor_st`), so staircases in the accelerator still have slopes.
"""

from __future__ import annotations

import torch

from dataset_gen.simulator import energy
from dataset_gen.simulator.dataflows import DATAFLOW_CODES, RF_ACCESSES_PER_MAC
from dataset_gen.simulator.mapper import LADDER_STEPS
from dataset_gen.space import DATAFLOWS, LOOP_ORDERS, WORD_BITS

# Which tiled loops index each operand's tile (the batch and group loops index all three
# but the filter, which only the group loop indexes).
OPERAND_LOOPS: dict[str, str] = {"ifmap": "pc", "filter": "ck", "ofmap": "pk"}
_MAC_PJ = {bits: energy.mac_energy_pj(bits) for bits in WORD_BITS}
_MAC_UM2 = {bits: energy.mac_area_um2(bits) for bits in WORD_BITS}


def ceil_st(x: torch.Tensor) -> torch.Tensor:
    """``ceil`` forward, identity gradient backward.

    The small tolerance absorbs float rounding of exact ratios (``2**(log2 6 - log2 3)``).
    """
    return x + (torch.ceil(x - 1e-4) - x).detach()


def floor_st(x: torch.Tensor) -> torch.Tensor:
    """``floor`` forward (tolerant of float error on exact ratios), identity gradient backward."""
    return x + (torch.floor(x + 1e-4) - x).detach()


# ------------------------------------------------------------------------- tiles, capacity


def ladder(dim: torch.Tensor) -> torch.Tensor:
    """``(n, LADDER_STEPS + 1)`` tile sizes of the mapper's ladder: ``ceil(dim / 4**j)``, then 1.

    Unlike `dataset_gen.simulator.mapper.ladder` duplicates are kept (they are harmless
    candidates and keep the shape fixed).
    """
    steps = [torch.ceil(dim / 4.0**j - 1e-6) for j in range(LADDER_STEPS)]
    return torch.stack([*steps, torch.ones_like(dim)], dim=-1)


def ladder_tiles(dim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per ladder value ``(n, 6)``: full tiles (trips - 1), the full size, the edge size."""
    return tile_split(dim[:, None], ladder(dim))


def tile_split(dim: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A loop of ``dim`` in tiles of ``size``: (full tiles = trips - 1, full size, edge size)."""
    full = torch.ceil(dim / size - 1e-6) - 1
    return full, size, dim - full * size


def half_buffer_words(kb: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Words half a double-buffered buffer of ``kb`` KiB holds (`mapper.half_buffer_words`)."""
    return floor_st(kb * float(energy.BITS_PER_KB) / bits / 2)


def rf_words(rf_bytes: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Words one PE's register file holds (`mapper.rf_words`)."""
    return floor_st(rf_bytes * 8 / bits)


def rf_words_required(dataflow: torch.Tensor, k_w: torch.Tensor) -> torch.Tensor:
    """Register-file words a PE needs (`dataflows.rf_words_required`): 2, or ``2*k_w + 1`` for rs.

    ``dataflow`` holds ``(n, 4)`` probabilities over `DATAFLOWS` (a one-hot when hard).
    """
    return 2 + dataflow[:, DATAFLOWS.index("rs")] * (2 * k_w - 1)


def ifmap_rows(tp: torch.Tensor, layer: dict) -> torch.Tensor:
    """Input rows an ifmap tile of ``tp`` output rows holds (halo included, padding not stored)."""
    return torch.minimum((tp - 1) * layer["stride"] + layer["k_h"], layer["in_h"])


def tile_words(layer: dict, tp: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor) -> dict[str, torch.Tensor]:
    """Words of one tile of each operand (`mapper.{ifmap,filter,ofmap}_tile_words`).

    ``layer`` values must broadcast against the tile sizes.
    """
    return {"ifmap": ifmap_rows(tp, layer) * layer["in_w"] * tc,
            "filter": layer["k_h"] * layer["k_w"] * tc * tk,
            "ofmap": tp * layer["out_w"] * tk}


# ----------------------------------------------------------------------------- fold models


def fold_factors(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor,
                 tp: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-dimension factors of a tile's fold cycles under one dataflow (`dataflows.tile_costs`).

    A systolic fold cost is a product of one factor per tiled dimension (ws:
    ``ceil(w/R) * ceil(f/C) * (2R + C + m - 2)`` with ``m = tp*out_w``, ``w = k_h*k_w*tc``,
    ``f = tk``): returns ``{"p", "c", "k"}``. Row stationary multiplies a ``p`` factor by one
    of ``c`` and ``k`` together: returns ``{"p", "ck"}`` (``ck`` of ``tc * tk``, so tiles shaped
    ``(n, 6, 1)`` and ``(n, 1, 6)`` give every combination). ``layer``, ``rows`` and ``cols``
    are ``(n,)`` or ``(n, 1)``; they are lifted to the tiles' rank.
    """
    def lift(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[:1] + (1,) * (like.dim() - 1)) if like.dim() > x.dim() else x

    Q, k_h, k_w = layer["out_w"], layer["k_h"], layer["k_w"]
    if dataflow == "ws":
        return {"p": 2 * lift(rows, tp) + lift(cols, tp) + tp * lift(Q, tp) - 2,
                "c": ceil_st(lift(k_h * k_w, tc) * tc / lift(rows, tc)), "k": ceil_st(tk / lift(cols, tk))}
    if dataflow == "os":
        return {"p": ceil_st(tp * lift(Q, tp) / lift(rows, tp)),
                "c": lift(rows, tc) + lift(cols, tc) + lift(k_h * k_w, tc) * tc - 2, "k": ceil_st(tk / lift(cols, tk))}
    if dataflow == "is":
        return {"p": ceil_st(tp * lift(Q, tp) / lift(cols, tp)), "c": ceil_st(lift(k_h * k_w, tc) * tc / lift(rows, tc)),
                "k": 2 * lift(rows, tk) + lift(cols, tk) + tk - 2}
    set_rows = torch.minimum(k_h, rows)
    sets = torch.clamp(floor_st(rows / set_rows), min=1.0)
    per_pass = ceil_st(k_h / set_rows) * (Q * k_w + set_rows - 1)
    pairs = tc * tk
    return {"p": ceil_st(tp / torch.minimum(lift(cols, tp), tp)) * lift(per_pass, tp),
            "ck": ceil_st(pairs / lift(sets, pairs))}


def fold_product(factors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Demand rows of a tile: the product of its `fold_factors`."""
    if "ck" in factors:
        return factors["p"] * factors["ck"]
    return factors["p"] * factors["c"] * factors["k"]


def tile_cycles(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor,
                tp: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor) -> torch.Tensor:
    """Compute cycles of one tile, as the simulator counts them.

    SCALE-Sim's "Total Cycles" of a systolic tile is its demand rows minus one
    (`dataset_gen.simulator.systolic`); row stationary counts its passes' cycles.
    """
    rows_of_demand = fold_product(fold_factors(dataflow, layer, rows, cols, tp, tc, tk))
    return rows_of_demand if dataflow == "rs" else rows_of_demand - 1


def tile_sram_words(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor,
                    tp: torch.Tensor, tc: torch.Tensor, tk: torch.Tensor):
    """SRAM accesses of one tile under one dataflow: ``(ifmap reads, filter reads, ofmap writes)``."""
    Q, k_h, k_w = layer["out_w"], layer["k_h"], layer["k_w"]
    m, w, f = tp * Q, k_h * k_w * tc, tk
    if dataflow == "ws":
        return m * w * ceil_st(f / cols), w * f, m * f * ceil_st(w / rows)
    if dataflow == "os":
        folds = ceil_st(m / rows) * ceil_st(f / cols)
        return m * w * ceil_st(f / cols), w * f * ceil_st(m / rows), m * f + folds * (rows + cols)
    if dataflow == "is":
        return m * w, w * f * ceil_st(m / cols), m * f * ceil_st(w / rows)
    set_rows = torch.minimum(k_h, rows)
    kh_folds, p_folds = ceil_st(k_h / set_rows), ceil_st(tp / torch.minimum(cols, tp))
    pairs = tc * tk
    row_words = (Q - 1) * layer["stride"] + k_w
    return (pairs * row_words * (kh_folds * layer["stride"] * (tp - p_folds) + p_folds * k_h),
            k_h * k_w * pairs, pairs * kh_folds * tp * Q)


# ---------------------------------------------------------------------------- DRAM reuse


def operand_sweeps(order: str, trips: dict, changes: dict) -> dict[str, torch.Tensor]:
    """How many times each operand is fetched whole, per (group, image), under a loop order.

    The loop irrelevant to an operand sweeps it again iff it lies outside the innermost
    relevant loop that actually changes (has more than one tile).
    """
    sweeps = {}
    for operand, loops in OPERAND_LOOPS.items():
        irrelevant = next(loop for loop in "pck" if loop not in loops)
        inner = [changes[loop] for loop in loops if order.index(loop) > order.index(irrelevant)]
        if inner:
            moving = inner[0] | inner[1] if len(inner) == 2 else inner[0]
            sweeps[operand] = torch.where(moving, trips[irrelevant], torch.ones_like(trips[irrelevant]))
        else:
            sweeps[operand] = torch.ones_like(trips[irrelevant])
    return sweeps


def sweep_words(layer: dict, p_tiles) -> dict[str, torch.Tensor]:
    """Words of one sweep of each operand over a (group, image): every tile of it once.

    ``p_tiles``: the output-row loop's (full tiles, full size, edge size) (`tile_split`);
    ifmap tiles overlap by their halo, so an ifmap sweep depends on the row tiling.
    """
    full, size, edge = p_tiles
    return {
        "ifmap": (full * ifmap_rows(size, layer) + ifmap_rows(edge, layer)) * layer["in_w"] * layer["in_c_per_group"],
        "filter": layer["k_h"] * layer["k_w"] * layer["in_c_per_group"] * layer["out_c_per_group"],
        "ofmap": layer["out_h"] * layer["out_w"] * layer["out_c_per_group"],
    }


def dram_words(order: str, trips: dict, changes: dict, words_per_sweep: dict, batch, groups):
    """DRAM words of the whole layer under one loop order (the reuse rule, exactly).

    ``words_per_sweep`` as `sweep_words`. The filter is fetched per image of a group unless
    it is one tile (kept on chip across images). Partial sums are written back every sweep
    and read back on all but the first.
    """
    sweeps = operand_sweeps(order, trips, changes)
    filter_images = torch.where(changes["c"] | changes["k"], batch, torch.ones_like(batch))
    words = words_per_sweep
    return (batch * (sweeps["ifmap"] * words["ifmap"] + (2 * sweeps["ofmap"] - 1) * words["ofmap"])
            + filter_images * sweeps["filter"] * words["filter"]) * groups


def over_tiles(chosen, fn) -> torch.Tensor:
    """Sum of ``fn(tp, tc, tk)`` over every tile of one (group, image): full and edge tiles.

    ``chosen``: per loop (p, c, k) the (full tiles, full size, edge size) of `tile_split`.
    """
    total = 0.0
    for p_count, p_size in ((chosen[0][0], chosen[0][1]), (1.0, chosen[0][2])):
        for c_count, c_size in ((chosen[1][0], chosen[1][1]), (1.0, chosen[1][2])):
            for k_count, k_size in ((chosen[2][0], chosen[2][1]), (1.0, chosen[2][2])):
                total = total + p_count * c_count * k_count * fn(p_size, c_size, k_size)
    return total


def buffer_words(layer: dict, acc: dict, chosen, order: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` words read or written in the ifmap, filter and ofmap buffers by one mapping.

    The fold model's reads and writes of every tile, partial-sum read-backs, and the DRAM
    traffic (a fill is a buffer write, a write-back a buffer read), as the simulator counts.
    ``chosen`` as in `over_tiles`; ``order`` ``(n,)`` indices into `LOOP_ORDERS`.
    """
    rows, cols = acc["pe_rows"], acc["pe_cols"]
    blocks = layer["batch"] * layer["groups"]
    reads = torch.zeros((rows.shape[0], 3), dtype=rows.dtype)
    for index, name in enumerate(DATAFLOWS):
        weight = acc["dataflow"][:, index]
        if not bool((weight > 0).any()):
            continue
        per_tile = [over_tiles(chosen, lambda p, c, k, i=i, name=name: tile_sram_words(name, layer, rows, cols,
                                                                                       p, c, k)[i])
                    for i in range(3)]
        reads = reads + weight[:, None] * torch.stack(per_tile, dim=1)
    (Tp1, _, _), (Tc1, _, _), (Tk1, _, _) = chosen  # trips - 1 (then the full and edge sizes)
    P, Q, Kg = layer["out_h"], layer["out_w"], layer["out_c_per_group"]
    readback = P * Q * Kg * Tc1  # psums read back at every c tile but the first
    trips = {"p": Tp1 + 1, "c": Tc1 + 1, "k": Tk1 + 1}
    changes = {loop: trip > 1 for loop, trip in trips.items()}
    words = sweep_words(layer, chosen[0])
    single_filter = (trips["c"] == 1) & (trips["k"] == 1)
    dram = torch.zeros((rows.shape[0], 3), dtype=rows.dtype)
    for position, loop_order in enumerate(LOOP_ORDERS):
        sweeps = operand_sweeps(loop_order, trips, changes)
        ifmap = blocks * sweeps["ifmap"] * words["ifmap"]
        filters = torch.where(single_filter, layer["groups"], blocks) * sweeps["filter"] * words["filter"]
        ofmap = blocks * (2 * sweeps["ofmap"] - 1) * words["ofmap"]  # write-backs and psum fills
        selected = (order == position).to(rows.dtype)[:, None]
        dram = dram + selected * torch.stack([ifmap, filters, ofmap], dim=1)
    buffer = reads * blocks[:, None] + dram
    return buffer + torch.stack([torch.zeros_like(readback), torch.zeros_like(readback), readback * blocks], dim=1)


# ------------------------------------------------------------------------- area, energy


def _per_width(acc: dict, table: dict[int, float]) -> torch.Tensor:
    """A per-word-width constant, weighted by the word-width probabilities."""
    return sum(acc["word_bits_onehot"][:, i] * table[bits] for i, bits in enumerate(WORD_BITS))


def area_mm2(acc: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n,)`` chip area as `energy.area_mm2` computes it: PEs (MAC + RF) plus the three buffers."""
    pe_um2 = _per_width(acc, _MAC_UM2) + acc["rf_bytes"] * 8 * energy.RF_UM2_PER_BIT
    buffers_kb = acc["ifmap_kb"] + acc["filter_kb"] + acc["ofmap_kb"]
    return (acc["pe_rows"] * acc["pe_cols"] * pe_um2 + buffers_kb * energy.BITS_PER_KB * energy.SRAM_UM2_PER_BIT) * 1e-6


def energy_components(acc: dict, macs: torch.Tensor, sram_words: torch.Tensor, dram_words_moved: torch.Tensor,
                      cycles: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The simulator's five energy components (pJ) from access counts and cycles.

    Parameters
    ----------
    acc : dict of tensors
        Decoded accelerator (`evaluator.features.decode_accelerators`).
    macs : (n,) tensor
    sram_words : (n, 3) tensor
        Words read or written in the ifmap, filter and ofmap buffers (`buffer_words`).
    dram_words_moved : (n,) tensor
        Words moved between DRAM and the chip, both directions.
    cycles : (n,) tensor
        Total cycles (leakage runs for that long).

    Returns
    -------
    tuple of (n,) tensors
        ``(mac, rf, sram, dram, leak)`` as `energy.dynamic_energy_pj` and
        `energy.leakage_energy_pj` compute them.
    """
    bits = acc["word_bits"]
    mac_pj = _per_width(acc, _MAC_PJ)
    rf_per_mac = sum(acc["dataflow"][:, i] * int(RF_ACCESSES_PER_MAC[DATAFLOW_CODES[name]])
                     for i, name in enumerate(DATAFLOWS))
    e_mac = macs * mac_pj
    e_rf = macs * rf_per_mac * mac_pj * torch.sqrt(acc["rf_bytes"] / energy.RF_REFERENCE_BYTES)
    per_bit = energy.SRAM_PJ_PER_BIT_8KB * bits
    buffer_pj = torch.stack([torch.sqrt(acc[f"{b}_kb"] / energy.SRAM_REFERENCE_KB) for b in ("ifmap", "filter", "ofmap")],
                            dim=1) * per_bit[:, None]  # (n, 3) pJ per word
    e_sram = (sram_words * buffer_pj).sum(dim=1)
    e_dram = dram_words_moved * energy.DRAM_PJ_PER_BIT * bits
    e_leak = area_mm2(acc) * energy.LEAK_W_PER_MM2 * cycles / (acc["freq_mhz"] * 1e6) * 1e12
    return e_mac, e_rf, e_sram, e_dram, e_leak
