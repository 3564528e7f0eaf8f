"""A coarse analytic cost model, computed in torch from the encodings, used as model features.

The simulator's mapper tries tile ladders and loop orders and steps a double-buffered
pipeline; its optimum is a staircase function of the layer and the array that an MLP on log
sizes learns slowly. This module evaluates a simplified version of the same model
(docs/simulator.md) for every ladder tile choice at once and keeps the best, giving the
network a strong first guess to correct:

- candidates: the mapper's ladders (``ceil(D / 4**j)``, j = 0..4, and 1) for ``tile_p``,
  ``tile_c``, ``tile_k`` and all six loop orders; tiles that overflow half a buffer are out,
  and a register file too small for the dataflow makes the pair infeasible;
- compute: each tile's fold model, summed over full and edge tiles (the sums factorise per
  dimension, which keeps this cheap);
- DRAM: the reuse rule (an operand is fetched again once per sweep of a loop irrelevant to
  it that lies outside its innermost changing relevant loop), partial-sum read-back included;
- time: ``first load + max(compute, remaining DRAM time) + last write-back`` (perfect
  overlap in between); the candidate with the least time wins;
- energy: MAC and register-file energy exactly, DRAM energy of the winner's traffic, SRAM
  energy of the untiled fold model plus the DRAM fills, leakage from area and time, with the
  simulator's own constants (`dataset_gen.simulator.energy`).

What it leaves out (per-step stalls, tie-breaks, tiled SRAM counts) is what the network
learns. Everything is differentiable almost everywhere w.r.t. the accelerator encoding:
ceil and floor pass gradients straight through, the minimum passes them to the winner.
"""

from __future__ import annotations

import torch

from dataset_gen.simulator import energy
from dataset_gen.space import DATAFLOWS, LOOP_ORDERS, WORD_BITS

# Bumped whenever the estimates change: an artifact records it, and one trained on other
# estimates is refused (its corrections would be to numbers it never saw).
ANALYTIC_VERSION = 1
LADDER_STEPS = 5
REFINED = 16  # tile choices (of 216) the refined pipeline model ranks, per pair  # j = 0..4, plus 1 (as dataset_gen.simulator.mapper.ladder)
ANALYTIC_FEATURES: tuple[str, ...] = (
    "log2_est_cycles", "log2_est_compute_cycles", "log2_est_dram_cycles", "log2_est_dram_words",
    "log2_est_steps", "est_feasible", "log2_est_mac_pj", "log2_est_rf_pj", "log2_est_sram_pj",
    "log2_est_dram_pj", "log2_est_leak_pj", "log2_est_energy_pj",
)
_MAC_PJ = {bits: energy.mac_energy_pj(bits) for bits in WORD_BITS}
_MAC_UM2 = {bits: energy.mac_area_um2(bits) for bits in WORD_BITS}


def _ceil(x: torch.Tensor) -> torch.Tensor:
    """``ceil`` forward (tolerant of float error on exact ratios), identity gradient."""
    return x + (torch.ceil(x - 1e-4) - x).detach()


def _floor(x: torch.Tensor) -> torch.Tensor:
    """``floor`` forward, identity gradient."""
    return x + (torch.floor(x + 1e-4) - x).detach()


def _ladder(dim: torch.Tensor) -> torch.Tensor:
    """``(n, 6)`` tile sizes ``ceil(dim / 4**j)``, j = 0..4, then 1 (duplicates are harmless)."""
    steps = [torch.ceil(dim / 4.0**j - 1e-6) for j in range(LADDER_STEPS)]
    return torch.stack([*steps, torch.ones_like(dim)], dim=-1)


def _tiles(dim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per ladder value ``(n, 6)``: full tiles (trips - 1), the full size, the edge size."""
    size = _ladder(dim)
    full = torch.ceil(dim[:, None] / size - 1e-6) - 1
    return full, size, dim[:, None] - full * size


def _loop_sum(tiles, fn) -> torch.Tensor:
    """``(trips - 1) * fn(full tile) + fn(edge tile)`` for every ladder value, ``(n, 6)``."""
    full, size, edge = tiles
    return full * fn(size) + fn(edge)


def _outer(p: torch.Tensor, c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return p[:, :, None, None] * c[:, None, :, None] * k[:, None, None, :]  # (n, 6, 6, 6)


# Which tiles of a loop a compute figure covers: "sum" every tile (the loop's total), "avg"
# the mean tile, "full" a full-size tile, "edge" the last (remainder) tile.
KINDS = ("sum", "avg", "full", "edge")


def _weights(tiles, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the full-size and the edge tile ``(n, 6)`` for one kind (see `KINDS`)."""
    full, _, _ = tiles
    if kind == "sum":
        return full, torch.ones_like(full)
    if kind == "avg":
        return full / (full + 1), 1 / (full + 1)
    if kind == "full":
        return torch.ones_like(full), torch.zeros_like(full)
    return torch.zeros_like(full), torch.ones_like(full)


def _fold_factors(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor, tiles) -> dict:
    """Per-dimension factors of a tile's fold cost, for the full and the edge tile of each loop.

    A systolic fold cost is a product of one factor per tiled dimension (ws:
    ``ceil(w/R) * ceil(f/C) * (2R + C + m - 2)``); row stationary multiplies a p factor by a
    factor of c and k together. Returns ``{"p": (full, edge), "c": ..., "k": ...}`` of
    ``(n, 6)`` tensors, or for rs ``{"p": ..., "ck": {(c_kind, k_kind): (n, 6, 6)}}``.
    """
    Q, k_h, k_w = layer["out_w"][:, None], layer["k_h"][:, None], layer["k_w"][:, None]
    R, C = rows[:, None], cols[:, None]
    window = k_h * k_w

    def both(index: int, fn) -> tuple[torch.Tensor, torch.Tensor]:
        return fn(tiles[index][1]), fn(tiles[index][2])

    if dataflow == "ws":
        return {"p": both(0, lambda t: 2 * R + C + t * Q - 2), "c": both(1, lambda t: _ceil(window * t / R)),
                "k": both(2, lambda t: _ceil(t / C))}
    if dataflow == "os":
        return {"p": both(0, lambda t: _ceil(t * Q / R)), "c": both(1, lambda t: R + C + window * t - 2),
                "k": both(2, lambda t: _ceil(t / C))}
    if dataflow == "is":
        return {"p": both(0, lambda t: _ceil(t * Q / C)), "c": both(1, lambda t: _ceil(window * t / R)),
                "k": both(2, lambda t: 2 * R + C + t - 2)}
    set_rows = torch.minimum(k_h, R)
    sets = torch.clamp(_floor(R / set_rows), min=1.0)
    per_pass = _ceil(k_h / set_rows) * (Q * k_w + set_rows - 1)
    p_full, p_edge = both(0, lambda t: _ceil(t / torch.minimum(C, t)) * per_pass)
    ck = {}
    for c_kind, c_size in (("full", tiles[1][1]), ("edge", tiles[1][2])):
        for k_kind, k_size in (("full", tiles[2][1]), ("edge", tiles[2][2])):
            ck[c_kind, k_kind] = _ceil(c_size[:, :, None] * k_size[:, None, :] / sets[:, :, None])  # (n, 6, 6)
    return {"p": (p_full, p_edge), "ck": ck}


def _compute_cycles(factors: dict, tiles, kinds: tuple[str, str, str] = ("sum", "sum", "sum"),
                    index=None) -> torch.Tensor:
    """Compute cycles of one (group, image) from `_fold_factors`, every candidate ``(n, 6, 6, 6)``.

    ``kinds`` picks, per tiled loop (p, c, k), which of its tiles count (`KINDS`): all sums
    give the block's compute, ("edge", "edge", "edge") its last step's. Sums over tiles of a
    product of per-dimension factors are products of per-dimension sums.
    """
    weights = [_weights(tiles[i], kinds[i]) for i in range(3)]

    def dim(position: int, loop: str) -> torch.Tensor:
        (full_weight, edge_weight), (full, edge) = weights[position], factors[loop]
        return full_weight * full + edge_weight * edge  # (n, 6)

    def combine(p: torch.Tensor, c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if index is None:
            return _outer(p, c, k)  # (n, 6, 6, 6)
        return p.gather(1, index[0]) * c.gather(1, index[1]) * k.gather(1, index[2])  # (n, K)

    if "ck" not in factors:
        # SCALE-Sim's "Total Cycles" of a tile is its demand rows minus one (systolic.py).
        tiles_counted = combine(*(full_weight + edge_weight for full_weight, edge_weight in weights))
        return combine(dim(0, "p"), dim(1, "c"), dim(2, "k")) - tiles_counted
    ck = 0.0
    for c_kind, c_weight in zip(("full", "edge"), weights[1]):
        for k_kind, k_weight in zip(("full", "edge"), weights[2]):
            ck = ck + c_weight[:, :, None] * k_weight[:, None, :] * factors["ck"][c_kind, k_kind]
    if index is None:
        return dim(0, "p")[:, :, None, None] * ck[:, None, :, :]
    return dim(0, "p").gather(1, index[0]) * ck.reshape(ck.shape[0], -1).gather(1, index[1] * 6 + index[2])


def _over_tiles(chosen, fn) -> torch.Tensor:
    """Sum of ``fn(tp, tc, tk)`` over every tile of one (group, image): full and edge tiles."""
    total = 0.0
    for p_count, p_size in ((chosen[0][0], chosen[0][1]), (1.0, chosen[0][2])):
        for c_count, c_size in ((chosen[1][0], chosen[1][1]), (1.0, chosen[1][2])):
            for k_count, k_size in ((chosen[2][0], chosen[2][1]), (1.0, chosen[2][2])):
                total = total + p_count * c_count * k_count * fn(p_size, c_size, k_size)
    return total


def _tile_sram_reads(dataflow: str, layer: dict, rows: torch.Tensor, cols: torch.Tensor, tp, tc, tk):
    """SRAM accesses of one tile under one dataflow: ``(ifmap reads, filter reads, ofmap writes)``."""
    Q, k_h, k_w = layer["out_w"], layer["k_h"], layer["k_w"]
    m, w, f = tp * Q, k_h * k_w * tc, tk
    if dataflow == "ws":
        return m * w * _ceil(f / cols), w * f, m * f * _ceil(w / rows)
    if dataflow == "os":
        folds = _ceil(m / rows) * _ceil(f / cols)
        return m * w * _ceil(f / cols), w * f * _ceil(m / rows), m * f + folds * (rows + cols)
    if dataflow == "is":
        return m * w, w * f * _ceil(m / cols), m * f * _ceil(w / rows)
    set_rows = torch.minimum(k_h, rows)
    kh_folds, p_folds = _ceil(k_h / set_rows), _ceil(tp / torch.minimum(cols, tp))
    pairs = tc * tk
    row_words = (Q - 1) * layer["stride"] + k_w
    return (pairs * row_words * (kh_folds * layer["stride"] * (tp - p_folds) + p_folds * k_h),
            k_h * k_w * pairs, pairs * kh_folds * tp * Q)


def _winner_sram_words(layer: dict, acc: dict, chosen, order: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` words read or written in the ifmap, filter and ofmap buffers by the winner.

    The fold model's reads and writes of every tile, partial-sum read-backs, and the DRAM
    traffic (a fill is a buffer write, a write-back a buffer read), as the simulator counts.
    """
    rows, cols = acc["pe_rows"], acc["pe_cols"]
    blocks = layer["batch"] * layer["groups"]
    reads = torch.zeros((rows.shape[0], 3), dtype=rows.dtype)
    for index, name in enumerate(DATAFLOWS):
        weight = acc["dataflow"][:, index]
        if not bool((weight > 0).any()):
            continue
        per_tile = [_over_tiles(chosen, lambda p, c, k, i=i: _tile_sram_reads(name, layer, rows, cols, p, c, k)[i])
                    for i in range(3)]
        reads = reads + weight[:, None] * torch.stack(per_tile, dim=1)
    (Tp1, tp, ep), (Tc1, tc, ec), (Tk1, tk, ek) = chosen  # trips - 1, full and edge sizes
    P, Q, Kg = layer["out_h"], layer["out_w"], layer["out_c_per_group"]
    readback = P * Q * Kg * Tc1  # psums read back at every c tile but the first
    # DRAM traffic per operand for the winner's loop order.
    trips = {"p": Tp1 + 1, "c": Tc1 + 1, "k": Tk1 + 1}
    stride, k_h, in_h, in_w = layer["stride"], layer["k_h"], layer["in_h"], layer["in_w"]
    ifmap_sweep = (Tp1 * torch.minimum((tp - 1) * stride + k_h, in_h)
                   + torch.minimum((ep - 1) * stride + k_h, in_h)) * in_w * layer["in_c_per_group"]
    filter_sweep = k_h * layer["k_w"] * layer["in_c_per_group"] * Kg
    ofmap_sweep = P * Q * Kg
    single_filter = (trips["c"] == 1) & (trips["k"] == 1)
    dram = torch.zeros((rows.shape[0], 3), dtype=rows.dtype)
    for position, loop_order in enumerate(LOOP_ORDERS):
        sweeps = []
        for loops in ("pc", "ck", "pk"):
            irrelevant = next(loop for loop in "pck" if loop not in loops)
            inner = [trips[loop] > 1 for loop in loops if loop_order.index(loop) > loop_order.index(irrelevant)]
            moving = (inner[0] | inner[1] if len(inner) == 2 else inner[0]) if inner else torch.zeros_like(single_filter)
            sweeps.append(torch.where(moving, trips[irrelevant], torch.ones_like(trips[irrelevant])))
        ifmap = blocks * sweeps[0] * ifmap_sweep
        filters = torch.where(single_filter, layer["groups"], blocks) * sweeps[1] * filter_sweep
        ofmap = blocks * (2 * sweeps[2] - 1) * ofmap_sweep  # write-backs and psum fills
        selected = (order == position).to(rows.dtype)[:, None]
        dram = dram + selected * torch.stack([ifmap, filters, ofmap], dim=1)
    buffer = reads * blocks[:, None] + dram
    return buffer + torch.stack([torch.zeros_like(readback), torch.zeros_like(readback), readback * blocks], dim=1)


def _area_mm2(acc: dict[str, torch.Tensor], mac_um2: torch.Tensor) -> torch.Tensor:
    """Chip area as `energy.area_mm2` computes it: PEs (MAC + RF) plus the three buffers."""
    pe_um2 = mac_um2 + acc["rf_bytes"] * 8 * energy.RF_UM2_PER_BIT
    buffers_kb = acc["ifmap_kb"] + acc["filter_kb"] + acc["ofmap_kb"]
    return (acc["pe_rows"] * acc["pe_cols"] * pe_um2 + buffers_kb * energy.BITS_PER_KB * energy.SRAM_UM2_PER_BIT) * 1e-6


def analytic_area(acc_x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` log2 chip area (mm^2) from an accelerator encoding alone (hard or soft)."""
    from evaluator.features import decode_accelerators

    acc = decode_accelerators(acc_x)
    mac_um2 = sum(acc["word_bits_onehot"][:, i] * _MAC_UM2[b] for i, b in enumerate(WORD_BITS))
    return torch.log2(_area_mm2(acc, mac_um2))


def _dram_words(order: str, trips: dict, changes: dict, sweep_words: dict, batch, groups, filter_images):
    """DRAM words of the whole layer under one loop order (the reuse rule, exactly)."""
    sweeps = {}
    for operand, loops in (("ifmap", "pc"), ("filter", "ck"), ("ofmap", "pk")):
        # The irrelevant loop sweeps the operand again iff it lies outside the innermost
        # relevant loop that actually changes.
        irrelevant = next(loop for loop in "pck" if loop not in loops)
        inner = [changes[loop] for loop in loops if order.index(loop) > order.index(irrelevant)]
        if inner:
            moving = inner[0] | inner[1] if len(inner) == 2 else inner[0]
            sweeps[operand] = torch.where(moving, trips[irrelevant], torch.ones_like(trips[irrelevant]))
        else:
            sweeps[operand] = torch.ones_like(trips[irrelevant])
    return (batch * (sweeps["ifmap"] * sweep_words["ifmap"] + (2 * sweeps["ofmap"] - 1) * sweep_words["ofmap"])
            + filter_images * sweeps["filter"] * sweep_words["filter"]) * groups


def _grid(x: torch.Tensor) -> torch.Tensor:
    return x[:, None, None, None]


def _per_dataflow(acc: dict, layer: dict, tiles, compute_fn) -> torch.Tensor:
    """Dataflow-weighted sum of ``compute_fn(factors, rows_used)``, each dataflow evaluated only
    on the rows that give it weight (one per row for a hard encoding, all four when soft)."""
    total = None
    for index, name in enumerate(DATAFLOWS):
        weight = acc["dataflow"][:, index]
        if bool((weight == 1).all()):  # a batch of one dataflow
            factors = _fold_factors(name, layer, acc["pe_rows"], acc["pe_cols"], tiles)
            return compute_fn(factors, None)
        rows_used = torch.nonzero(weight > 0).squeeze(1)
        if rows_used.numel() == 0:
            continue
        sub_layer = {k: v[rows_used] for k, v in layer.items()}
        sub_tiles = [tuple(t[rows_used] for t in dim_tiles) for dim_tiles in tiles]
        factors = _fold_factors(name, sub_layer, acc["pe_rows"][rows_used], acc["pe_cols"][rows_used], sub_tiles)
        value = compute_fn(factors, rows_used)
        value = weight[rows_used].reshape(-1, *([1] * (value.dim() - 1))) * value
        if total is None:
            total = torch.zeros((layer["out_h"].shape[0], *value.shape[1:]), dtype=value.dtype)
        total = total.index_add(0, rows_used, value)
    return total


def analytic_estimates(layer: dict[str, torch.Tensor], acc: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n, len(ANALYTIC_FEATURES))`` estimates (log2, and a 0/1 feasibility flag).

    Two passes, as the simulator prunes its candidates: a coarse time (perfect overlap of
    compute and DRAM) ranks every tile choice; the `REFINED` best fitting ones get the
    step-class pipeline model under all six loop orders, and the least time wins.

    Parameters
    ----------
    layer : dict of (n,) tensors
        ``in_h, in_w, out_h, out_w, in_c_per_group, out_c_per_group, k_h, k_w, stride,
        groups, batch, macs`` (exact integers, as floats).
    acc : dict of (n,) tensors
        ``pe_rows, pe_cols, rf_bytes, ifmap_kb, filter_kb, ofmap_kb, dram_bw, freq_mhz``
        (soft encodings give geometric means), ``word_bits`` (expected bits),
        ``word_bits_onehot`` ``(n, 3)`` and ``dataflow`` ``(n, 4)`` probabilities.
    """
    n = layer["out_h"].shape[0]
    P, Q, Cg, Kg = (_grid(layer[k]) for k in ("out_h", "out_w", "in_c_per_group", "out_c_per_group"))
    k_h, k_w, stride = _grid(layer["k_h"]), _grid(layer["k_w"]), _grid(layer["stride"])
    in_h, in_w, batch, groups = (_grid(layer[k]) for k in ("in_h", "in_w", "batch", "groups"))
    tiles = [_tiles(layer[k]) for k in ("out_h", "in_c_per_group", "out_c_per_group")]
    tp, tc, tk = tiles[0][1][:, :, None, None], tiles[1][1][:, None, :, None], tiles[2][1][:, None, None, :]
    Tp, Tc, Tk = tiles[0][0][:, :, None, None] + 1, tiles[1][0][:, None, :, None] + 1, tiles[2][0][:, None, None, :] + 1
    ep, ek = tiles[0][2][:, :, None, None], tiles[2][2][:, None, None, :]
    bits = acc["word_bits"]
    bandwidth = _grid(acc["dram_bw"]) / _grid(bits / 8)  # words per cycle
    blocks = batch * groups  # (group, image) blocks, each one pass of the tiled nest

    def half(kb: torch.Tensor) -> torch.Tensor:
        return _grid(_floor(kb * 8192.0 / bits / 2))

    # ---- Coarse pass over every tile choice: capacity, compute, least traffic over orders.
    ifmap_rows = torch.minimum((tp - 1) * stride + k_h, in_h)
    tile_words = {"ifmap": ifmap_rows * in_w * tc, "filter": k_h * k_w * tc * tk, "ofmap": tp * Q * tk}
    fits = ((tile_words["ifmap"] <= half(acc["ifmap_kb"])) & (tile_words["filter"] <= half(acc["filter_kb"]))
            & (tile_words["ofmap"] <= half(acc["ofmap_kb"])))  # (n, 6, 6, 6)
    compute = _per_dataflow(acc, layer, tiles, lambda factors, rows: _compute_cycles(factors, [
        t if rows is None else tuple(part[rows] for part in t) for t in tiles])) * blocks
    trips = {"p": Tp, "c": Tc, "k": Tk}
    changes = {loop: trip > 1 for loop, trip in trips.items()}
    sweep_words = {
        "ifmap": ((Tp - 1) * ifmap_rows + torch.minimum((ep - 1) * stride + k_h, in_h)) * in_w * Cg,
        "filter": k_h * k_w * Cg * Kg,
        "ofmap": P * Q * Kg,
    }
    filter_images = torch.where(changes["c"] | changes["k"], batch, torch.ones_like(batch))  # one tile: kept across images
    least_words = None
    for order in LOOP_ORDERS:
        words = _dram_words(order, trips, changes, sweep_words, batch, groups, filter_images)
        least_words = words if least_words is None else torch.minimum(least_words, words)
    first_load = (tile_words["ifmap"] + tile_words["filter"]) / bandwidth
    last_write = ep * Q * ek / bandwidth
    coarse = first_load + torch.maximum(compute, least_words / bandwidth - first_load) + last_write
    huge = torch.finfo(coarse.dtype).max / 16
    coarse = torch.where(fits, coarse, coarse + huge).reshape(n, -1)  # (n, 216); misfits last
    keep = torch.topk(coarse, REFINED, dim=1, largest=False).indices  # (n, K)

    # ---- Refined pass on the K best: the step-class pipeline model, every loop order.
    index = (keep // 36, (keep // 6) % 6, keep % 6)  # ladder positions of p, c, k
    (k_Tp, k_p, k_ep), (k_Tc, k_c, _), (k_Tk, k_k, k_ek) = (
        tuple(part.gather(1, position) for part in dim_tiles) for dim_tiles, position in zip(tiles, index))
    k_trips = {"p": k_Tp + 1, "c": k_Tc + 1, "k": k_Tk + 1}
    k_changes = {loop: trip > 1 for loop, trip in k_trips.items()}
    pair = {name: layer[name][:, None] for name in ("out_h", "out_w", "in_c_per_group", "out_c_per_group", "k_h",
                                                    "k_w", "stride", "in_h", "in_w", "batch", "groups")}
    k_ifmap_rows = torch.minimum((k_p - 1) * pair["stride"] + pair["k_h"], pair["in_h"])
    k_tile_words = {"ifmap": k_ifmap_rows * pair["in_w"] * k_c, "filter": pair["k_h"] * pair["k_w"] * k_c * k_k,
                    "ofmap": k_p * pair["out_w"] * k_k}
    k_bandwidth, k_blocks, k_groups = bandwidth[:, :, 0, 0], blocks[:, :, 0, 0], groups[:, :, 0, 0]
    k_sweep_words = {
        "ifmap": (k_Tp * k_ifmap_rows + torch.minimum((k_ep - 1) * pair["stride"] + pair["k_h"], pair["in_h"]))
        * pair["in_w"] * pair["in_c_per_group"],
        "filter": pair["k_h"] * pair["k_w"] * pair["in_c_per_group"] * pair["out_c_per_group"],
        "ofmap": pair["out_h"] * pair["out_w"] * pair["out_c_per_group"],
    }
    k_filter_images = torch.where(k_changes["c"] | k_changes["k"], pair["batch"], torch.ones_like(pair["batch"]))
    k_words = torch.stack([_dram_words(order, k_trips, k_changes, k_sweep_words, pair["batch"], pair["groups"],
                                       k_filter_images) for order in LOOP_ORDERS], dim=-1)  # (n, K, 6)

    def kinds_before(order: str, level: int) -> tuple[str, str, str]:
        """Tile kinds of the step before the loop at ``level`` of ``order`` advances: that
        loop's tile was a full one, the loops inside it were at their last (edge) tile, and
        the loops outside it anywhere (their mean tile)."""
        position = {loop: order.index(loop) for loop in "pck"}
        return tuple("full" if position[loop] == level else "edge" if position[loop] > level else "avg"
                     for loop in "pck")

    step_kinds = sorted({("edge", "edge", "edge")} | {kinds_before(order, level)
                                                       for order in LOOP_ORDERS for level in range(3)})

    def kept_steps(factors: dict, rows) -> torch.Tensor:
        sub_tiles = [t if rows is None else tuple(part[rows] for part in t) for t in tiles]
        sub_index = [i if rows is None else i[rows] for i in index]
        return torch.stack([_compute_cycles(factors, sub_tiles, kinds, sub_index) for kinds in step_kinds], dim=-1)

    step_compute = _per_dataflow(acc, layer, tiles, kept_steps)  # (n, K, kinds)
    step_compute_of = {kinds: step_compute[..., i] for i, kinds in enumerate(step_kinds)}
    last_step = step_compute_of[("edge", "edge", "edge")]  # a block's last step
    k_first_load = (k_tile_words["ifmap"] + k_tile_words["filter"]) / k_bandwidth
    k_last_write = k_ep * layer["out_w"][:, None] * k_ek / k_bandwidth
    # Between blocks the ifmap and ofmap change; the filter too when the group changes, and
    # when the image changes unless the filter is one tile (then it stays on chip).
    group_changes = (k_groups - 1) / torch.clamp(k_blocks - 1, min=1)
    filter_share = group_changes + (1 - group_changes) * (k_changes["c"] | k_changes["k"]).to(k_blocks.dtype)
    block_load = (k_tile_words["ifmap"] + k_tile_words["ofmap"] + filter_share * k_tile_words["filter"]) / k_bandwidth
    relevant = {"ifmap": "pc", "filter": "ck", "ofmap": "pk"}
    order_times = []
    for order in LOOP_ORDERS:
        # Steps of one block by which loop advanced (level 0 outermost): the loops inside it
        # restart, so an operand loads iff a relevant loop at or inside that level changes.
        # Each step waits for its load and for the previous step's compute (the other half
        # of the double buffer); summing max(previous compute, load) over the steps of each
        # class counts every step's compute once.
        time = k_first_load + last_step + k_last_write
        outer_trips = torch.ones_like(k_p)
        for level, loop in enumerate(order):
            count = outer_trips * (k_trips[loop] - 1)  # steps where this loop advanced
            outer_trips = outer_trips * k_trips[loop]
            load = 0.0
            for operand, loops in relevant.items():
                # The operand loads if the advancing loop is relevant to it, or if a relevant
                # loop inside it restarts (it changes only with more than one tile).
                if loop in loops:
                    flag = None
                else:
                    restarting = [k_changes[inner] for inner in order[level + 1:] if inner in loops]
                    if not restarting:
                        continue
                    flag = restarting[0] if len(restarting) == 1 else restarting[0] | restarting[1]
                words_here = k_tile_words[operand]
                if operand == "ofmap":
                    # Write back the previous tile; read partial sums back when c > 0.
                    if loop == "c":
                        readback = 1.0
                    elif "c" in order[level + 1:]:
                        readback = 0.0
                    else:
                        readback = (k_trips["c"] - 1) / k_trips["c"]
                    words_here = words_here * (1 + readback)
                load = load + (words_here if flag is None else words_here * flag)
            before = step_compute_of[kinds_before(order, level)]
            time = time + k_blocks * count * torch.maximum(before, load / k_bandwidth)
        order_times.append(time + (k_blocks - 1) * torch.maximum(last_step, block_load))
    # For one tile choice the orders share the compute; where their times tie (stalls hidden
    # behind compute), the simulator's tie-break, energy, picks the least traffic.
    times = torch.stack(order_times, dim=-1)  # (n, K, 6)
    near = times <= times.amin(dim=-1, keepdim=True)
    best_order = torch.where(near, k_words, torch.full_like(k_words, torch.inf)).argmin(dim=-1, keepdim=True)
    time = times.gather(-1, best_order).squeeze(-1)  # (n, K)
    dram_words = k_words.gather(-1, best_order).squeeze(-1)
    best_order = best_order.squeeze(-1)

    k_fits = fits.reshape(n, -1).gather(1, keep)
    rf_words = _floor(acc["rf_bytes"] * 8 / bits)
    rf_needed = 2 + acc["dataflow"][:, DATAFLOWS.index("rs")] * (2 * layer["k_w"] - 1)
    feasible = fits.reshape(n, -1).any(dim=1) & (rf_words >= rf_needed - 1e-6)
    # The least time wins (the earlier candidate on ties). Pairs with no fitting candidate keep
    # the least-time figures anyway (finite, flagged).
    best = torch.where(k_fits, time, time + huge).argmin(dim=1, keepdim=True)  # (n, 1) into K

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(1, best).squeeze(1)

    est_time, est_words, order = pick(time), pick(dram_words), pick(best_order)
    est_compute = pick(compute.reshape(n, -1).gather(1, keep))
    est_dram_cycles = est_words / bandwidth.reshape(n)
    est_steps = pick(k_trips["p"] * k_trips["c"] * k_trips["k"]) * blocks.reshape(n)
    chosen = [tuple(part.gather(1, position.gather(1, best)).squeeze(1) for part in dim_tiles)
              for dim_tiles, position in zip(tiles, index)]
    sram_words = _winner_sram_words(layer, acc, chosen, order)  # (n, 3): ifmap, filter, ofmap buffers

    mac_pj = sum(acc["word_bits_onehot"][:, i] * _MAC_PJ[b] for i, b in enumerate(WORD_BITS))
    mac_um2 = sum(acc["word_bits_onehot"][:, i] * _MAC_UM2[b] for i, b in enumerate(WORD_BITS))
    rf_per_mac = sum(acc["dataflow"][:, i] * energy.RF_ACCESSES_PER_MAC[name] for i, name in enumerate(DATAFLOWS))
    macs = layer["macs"]
    e_mac = macs * mac_pj
    e_rf = macs * rf_per_mac * mac_pj * torch.sqrt(acc["rf_bytes"] / energy.RF_REFERENCE_BYTES)
    per_bit = energy.SRAM_PJ_PER_BIT_8KB * bits
    buffer_pj = torch.stack([torch.sqrt(acc[f"{b}_kb"] / energy.SRAM_REFERENCE_KB) for b in ("ifmap", "filter", "ofmap")],
                            dim=1) * per_bit[:, None]  # (n, 3) pJ per word
    e_sram = (sram_words * buffer_pj).sum(dim=1)
    e_dram = est_words * energy.DRAM_PJ_PER_BIT * bits
    area_mm2 = _area_mm2(acc, mac_um2)
    e_leak = area_mm2 * energy.LEAK_W_PER_MM2 * est_time / (acc["freq_mhz"] * 1e6) * 1e12
    e_total = e_mac + e_rf + e_sram + e_dram + e_leak
    values = torch.stack([est_time, est_compute, est_dram_cycles, est_words, est_steps], dim=1)
    energies = torch.stack([e_mac, e_rf, e_sram, e_dram, e_leak, e_total], dim=1)
    logs = torch.log2(torch.clamp(torch.cat([values, energies], dim=1), min=1e-3))
    return torch.cat([logs[:, :5], feasible.to(logs.dtype)[:, None], logs[:, 5:]], dim=1)
