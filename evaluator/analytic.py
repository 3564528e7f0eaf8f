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
- energy: MAC and register-file energy exactly, DRAM and SRAM energy of the winner's
  traffic and buffer accesses, leakage from area and time.

The rules themselves (ladders, capacities, fold models, reuse, buffer counts, area, energy)
are the simulator's, re-written in torch in `evaluator.rules` and checked against it there;
this module only searches the candidates with them. What it leaves out (per-step stalls,
tie-breaks) is what the network learns. Everything is differentiable almost everywhere
w.r.t. the accelerator encoding: ceil and floor pass gradients straight through, the
minimum passes them to the winner.
"""

from __future__ import annotations

import torch

from dataset_gen.space import DATAFLOWS, LOOP_ORDERS
from evaluator.rules import (
    area_mm2,
    buffer_words,
    dram_words,
    energy_components,
    fold_factors,
    half_buffer_words,
    ladder_tiles,
    rf_words,
    rf_words_required,
    sweep_words,
    tile_words,
)

# Bumped whenever the estimates change: an artifact records it, and one trained on other
# estimates is refused (its corrections would be to numbers it never saw).
ANALYTIC_VERSION = 1
REFINED = 16  # tile choices (of 216) the refined pipeline model ranks, per pair
ANALYTIC_FEATURES: tuple[str, ...] = (
    "log2_est_cycles", "log2_est_compute_cycles", "log2_est_dram_cycles", "log2_est_dram_words",
    "log2_est_steps", "est_feasible", "log2_est_mac_pj", "log2_est_rf_pj", "log2_est_sram_pj",
    "log2_est_dram_pj", "log2_est_leak_pj", "log2_est_energy_pj",
)


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
    """`rules.fold_factors` for the full and the edge tile of each loop, every ladder value.

    Returns ``{"p": (full, edge), "c": ..., "k": ...}`` of ``(n, 6)`` tensors, or for rs
    ``{"p": ..., "ck": {(c_kind, k_kind): (n, 6, 6)}}``.
    """
    full = fold_factors(dataflow, layer, rows, cols, tiles[0][1], tiles[1][1], tiles[2][1])
    edge = fold_factors(dataflow, layer, rows, cols, tiles[0][2], tiles[1][2], tiles[2][2])
    if "ck" not in full:
        return {loop: (full[loop], edge[loop]) for loop in "pck"}
    ck = {}
    for c_kind, c_size in (("full", tiles[1][1]), ("edge", tiles[1][2])):
        for k_kind, k_size in (("full", tiles[2][1]), ("edge", tiles[2][2])):
            ck[c_kind, k_kind] = fold_factors(dataflow, layer, rows, cols, tiles[0][1], c_size[:, :, None],
                                              k_size[:, None, :])["ck"]  # (n, 6, 6)
    return {"p": (full["p"], edge["p"]), "ck": ck}


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


def analytic_area(acc: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n,)`` log2 chip area (mm^2) of a decoded accelerator (`features.decode_accelerators`)."""
    return torch.log2(area_mm2(acc))


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
    if n == 0:  # no pairs (an empty split or frame): nothing to rank
        return torch.zeros((0, len(ANALYTIC_FEATURES)), dtype=layer["out_h"].dtype)
    grid = {name: _grid(value) for name, value in layer.items()}
    Q, batch, groups = grid["out_w"], grid["batch"], grid["groups"]
    tiles = [ladder_tiles(layer[k]) for k in ("out_h", "in_c_per_group", "out_c_per_group")]
    tp, tc, tk = tiles[0][1][:, :, None, None], tiles[1][1][:, None, :, None], tiles[2][1][:, None, None, :]
    Tp, Tc, Tk = tiles[0][0][:, :, None, None] + 1, tiles[1][0][:, None, :, None] + 1, tiles[2][0][:, None, None, :] + 1
    ep, ek = tiles[0][2][:, :, None, None], tiles[2][2][:, None, None, :]
    bits = acc["word_bits"]
    bandwidth = _grid(acc["dram_bw"]) / _grid(bits / 8)  # words per cycle
    blocks = batch * groups  # (group, image) blocks, each one pass of the tiled nest

    def half(kb: torch.Tensor) -> torch.Tensor:
        return _grid(half_buffer_words(kb, bits))

    # ---- Coarse pass over every tile choice: capacity, compute, least traffic over orders.
    words_of_tile = tile_words(grid, tp, tc, tk)
    fits = ((words_of_tile["ifmap"] <= half(acc["ifmap_kb"])) & (words_of_tile["filter"] <= half(acc["filter_kb"]))
            & (words_of_tile["ofmap"] <= half(acc["ofmap_kb"])))  # (n, 6, 6, 6)
    compute = _per_dataflow(acc, layer, tiles, lambda factors, rows: _compute_cycles(factors, [
        t if rows is None else tuple(part[rows] for part in t) for t in tiles])) * blocks
    trips = {"p": Tp, "c": Tc, "k": Tk}
    changes = {loop: trip > 1 for loop, trip in trips.items()}
    words_per_sweep = sweep_words(grid, (Tp - 1, tp, ep))
    least_words = None
    for order in LOOP_ORDERS:
        words = dram_words(order, trips, changes, words_per_sweep, batch, groups)
        least_words = words if least_words is None else torch.minimum(least_words, words)
    first_load = (words_of_tile["ifmap"] + words_of_tile["filter"]) / bandwidth
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
    k_tile_words = tile_words(pair, k_p, k_c, k_k)
    k_bandwidth, k_blocks, k_groups = bandwidth[:, :, 0, 0], blocks[:, :, 0, 0], groups[:, :, 0, 0]
    k_sweep_words = sweep_words(pair, (k_Tp, k_p, k_ep))
    k_words = torch.stack([dram_words(order, k_trips, k_changes, k_sweep_words, pair["batch"], pair["groups"])
                           for order in LOOP_ORDERS], dim=-1)  # (n, K, 6)

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
    order_words = k_words.gather(-1, best_order).squeeze(-1)
    best_order = best_order.squeeze(-1)

    k_fits = fits.reshape(n, -1).gather(1, keep)
    rf_ok = rf_words(acc["rf_bytes"], bits) >= rf_words_required(acc["dataflow"], layer["k_w"]) - 1e-6
    feasible = fits.reshape(n, -1).any(dim=1) & rf_ok
    # The least time wins (the earlier candidate on ties). Pairs with no fitting candidate keep
    # the least-time figures anyway (finite, flagged).
    best = torch.where(k_fits, time, time + huge).argmin(dim=1, keepdim=True)  # (n, 1) into K

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(1, best).squeeze(1)

    est_time, est_words, order = pick(time), pick(order_words), pick(best_order)
    est_compute = pick(compute.reshape(n, -1).gather(1, keep))
    est_dram_cycles = est_words / bandwidth.reshape(n)
    est_steps = pick(k_trips["p"] * k_trips["c"] * k_trips["k"]) * blocks.reshape(n)
    chosen = [tuple(part.gather(1, position.gather(1, best)).squeeze(1) for part in dim_tiles)
              for dim_tiles, position in zip(tiles, index)]
    sram_words = buffer_words(layer, acc, chosen, order)  # (n, 3): ifmap, filter, ofmap buffers

    e_mac, e_rf, e_sram, e_dram, e_leak = energy_components(acc, layer["macs"], sram_words, est_words, est_time)
    e_total = e_mac + e_rf + e_sram + e_dram + e_leak
    values = torch.stack([est_time, est_compute, est_dram_cycles, est_words, est_steps], dim=1)
    energies = torch.stack([e_mac, e_rf, e_sram, e_dram, e_leak, e_total], dim=1)
    logs = torch.log2(torch.clamp(torch.cat([values, energies], dim=1), min=1e-3))
    return torch.cat([logs[:, :5], feasible.to(logs.dtype)[:, None], logs[:, 5:]], dim=1)
