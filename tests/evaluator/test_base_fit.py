"""The analytic base fitted to the imitated simulator (`evaluator.network.fit_base`).

The builtin simulator's rows keep the builtin estimates exactly; rows of a tool that times
the layer as a loop-nest roofline and weighs the energy parts otherwise (ZigZag's kind) get
the roofline and the weights back; the log-space fit shrugs off wild rows.
"""

import numpy as np
import pytest
import torch

from dataset_gen.reader import read_dataset
from evaluator.data import encode_frame, statistics_of
from evaluator.features import PAIR_FEATURES
from evaluator.network import (
    ENERGY_PARTS,
    EvaluatorNetwork,
    base_parts,
    _fit_energy_scales,
    analytic_base,
    fit_base,
)


@pytest.fixture(scope="module")
def encoded(small_dataset):
    frame = read_dataset(small_dataset)
    return encode_frame(frame[frame["feasible"]].reset_index(drop=True))


def _feature(chunk, name):
    return chunk["pair_x"][:, PAIR_FEATURES.index(name)].double() * np.log(2.0)


def test_builtin_rows_keep_the_builtin_estimates(encoded):
    fit = fit_base([encoded])
    assert float(fit["base_roofline"]) == 0.0 and float(fit["base_objective"]) == 0.0
    assert fit["base_energy_scales"].tolist() == [1.0] * len(ENERGY_PARTS)
    stats, _ = statistics_of([encoded])
    assert float(stats["base_roofline"]) == 0.0 and stats["base_energy_scales"].tolist() == [1.0] * 6
    # the default base is the analytic model's own figures, bit for bit
    base = analytic_base(encoded["pair_x"], encoded["acc_x"], fit["base_roofline"], fit["base_energy_scales"])
    assert torch.equal(base[:, 0], encoded["pair_x"][:, PAIR_FEATURES.index("log2_est_cycles")] * np.log(2.0))
    assert torch.equal(base[:, 1], encoded["pair_x"][:, PAIR_FEATURES.index("log2_est_energy_pj")] * np.log(2.0))


def test_a_loop_nest_tool_gets_the_roofline_and_its_energy_weights(encoded):
    """A made-up tool: latency the larger of the whole-dimension unrolled compute and the
    least-traffic mapping's DRAM time (a few percent of noise), energy the roofline's parts
    weighed 1, 3, 0.01, 0.5, 1, 1 (ZigZag-like: more register-file energy, next to no array
    transfers)."""
    chunk = dict(encoded)
    rng = np.random.default_rng(0)
    roof = torch.maximum(_feature(chunk, "log2_unrolled_cycles"), _feature(chunk, "log2_est_least_dram_cycles"))
    weights = torch.tensor([1.0, 3.0, 0.01, 0.5, 1.0, 1.0], dtype=torch.float64)
    _, _, parts = base_parts(chunk["pair_x"].double(), chunk["acc_x"].double(), roofline=True)
    targets = chunk["targets"].clone()
    targets[:, 0] = (roof + torch.tensor(rng.normal(0.0, 0.03, len(roof)))).float()
    targets[:, 1] = torch.log(torch.stack(parts, dim=1).exp() @ weights).float()
    chunk["targets"] = targets

    fit = fit_base([chunk])
    assert float(fit["base_roofline"]) == 1.0
    assert fit["base_energy_scales"].tolist() == pytest.approx(weights.tolist(), rel=0.02)
    base = analytic_base(chunk["pair_x"], chunk["acc_x"], fit["base_roofline"], fit["base_energy_scales"])
    assert base[:, 0].tolist() == pytest.approx(roof.float().tolist(), rel=1e-6)
    assert base[:, 1].tolist() == pytest.approx(targets[:, 1].tolist(), abs=2e-3)
    # statistics carry the fit into the network, whose residuals are then against it
    stats, _ = statistics_of(lambda: iter([chunk]))  # a stream is read twice
    network = EvaluatorNetwork(depth=1, width=8, area_depth=1, area_width=4)
    network.set_statistics(stats)
    assert float(network.base_roofline) == 1.0
    assert network.base(chunk["pair_x"], chunk["acc_x"]).tolist() == base.tolist()
    assert abs(float(stats["residual_mean"][1])) < 2e-3  # the energy residual: the fit's rounding


@pytest.mark.parametrize(("objective", "index"), [("energy", 1), ("edp", 2)])
def test_a_mapper_with_another_objective_gets_the_estimate_of_that_objective(tmp_path, encoded, objective, index):
    """The builtin estimate follows the fastest mapping; under ``objective=energy`` or ``edp``
    the mapper trades time for traffic, and the estimate of the least-energy (least-EDP)
    mapping fits it: the fit takes it, its cycles and energy then close to the simulator's;
    latency-objective rows keep the fastest mapping's."""
    from .conftest import make_dataset

    frame = read_dataset(make_dataset(tmp_path / objective, 1500, f"objective={objective}"))
    chunk = encode_frame(frame[frame["feasible"]].reset_index(drop=True))
    fit = fit_base([chunk])
    assert float(fit["base_roofline"]) == 0.0 and float(fit["base_objective"]) == index
    assert fit["base_energy_scales"].tolist() == [1.0] * len(ENERGY_PARTS)

    def within(chosen: float, column: int) -> float:
        base = analytic_base(chunk["pair_x"], chunk["acc_x"], fit["base_roofline"], fit["base_energy_scales"], chosen)
        error = base[:, column].double() - chunk["targets"][:, column].double()
        return float((torch.abs(torch.expm1(error)) <= 0.1).double().mean())

    assert within(index, 0) >= max(0.93, within(0.0, 0)) and within(index, 1) >= 0.98
    assert within(index, 1) > within(0.0, 1)
    assert float(fit_base([encoded])["base_objective"]) == 0.0


def test_weights_that_barely_help_are_not_used(encoded):
    """Builtin rows with one energy part (SRAM) off by 10%: scales would fit it, but they
    remove less than `ENERGY_FIT_GAIN` of the loss (the builtin estimates' own near-tie
    misses weigh more), so the parts stay as they are; at 3x they are used."""
    chunk = dict(encoded)
    _, _, parts = base_parts(chunk["pair_x"].double(), chunk["acc_x"].double(), roofline=False)
    stacked = torch.stack(parts, dim=1).exp()
    for factor, used in ((1.1, False), (3.0, True)):
        weights = torch.ones(len(ENERGY_PARTS), dtype=torch.float64)
        weights[ENERGY_PARTS.index("sram")] = factor
        ratio = (stacked @ weights) / stacked.sum(dim=1)
        targets = encoded["targets"].clone()
        targets[:, 1] = targets[:, 1] + torch.log(ratio).float()
        chunk["targets"] = targets
        scales = fit_base([chunk])["base_energy_scales"]
        assert (scales.tolist() != [1.0] * 6) == used, (factor, scales)


def test_the_energy_fit_recovers_known_weights_and_ignores_wild_rows():
    """Parts drawn at random, the energy their weighted sum, a tenth of the rows then made
    ten times too large: the pseudo-Huber fit in log space still finds the weights."""
    rng = np.random.default_rng(1)
    parts = torch.tensor(rng.normal(0.0, 1.5, size=(2000, 4)))
    weights = torch.tensor([0.5, 2.0, 1.0, 4.0], dtype=torch.float64)
    log_energy = torch.logsumexp(parts + torch.log(weights), dim=1)
    log_energy[::10] += np.log(10.0)
    fitted, fitted_loss, plain_loss = _fit_energy_scales(parts, log_energy)
    assert fitted.tolist() == pytest.approx(weights.tolist(), rel=0.05)
    assert fitted_loss < plain_loss


def test_the_evaluator_and_its_report_say_which_base_it_fitted(encoded):
    from evaluator.predictor import Evaluator
    from evaluator.report import format_table

    network = EvaluatorNetwork(depth=1, width=8, area_depth=1, area_width=4)
    assert Evaluator(network).analytic_base == {"latency": "builtin", "objective": "latency",
                                                "energy_scales": dict.fromkeys(ENERGY_PARTS, 1.0), "loopnest": None}
    network.base_objective.fill_(2.0)
    edp = Evaluator(network).analytic_base
    assert edp["latency"] == "builtin" and edp["objective"] == "edp"
    assert format_table({"analytic_base": edp}).splitlines()[0] == (
        "analytic base: latency and energy the builtin estimate of the least energy x delay mapping "
        "(fitted to the training split)")
    network.base_objective.fill_(0.0)
    network.base_roofline.fill_(1.0)
    network.base_energy_scales.copy_(torch.tensor([1.0, 2.5, 0.5, 1.0, 1.0, 1.25]))
    base = Evaluator(network).analytic_base
    assert base == {"latency": "roofline", "objective": "latency",
                    "energy_scales": {"mac": 1.0, "rf": 2.5, "array": 0.5, "sram": 1.0, "dram": 1.0, "leak": 1.25},
                    "loopnest": None}
    table = format_table({"simulator": {"name": "zigzag", "version": "v"}, "analytic_base": base})
    line = table.splitlines()[1]
    assert line.startswith("analytic base: latency the roofline") and "rf 2.5," in line and "leak 1.25" in line
    network.base_energy_scales.fill_(1.0)
    network.base_loopnest.copy_(torch.tensor([1.0, 6.0, 100.0, 0.0, 2.0, 0.0, 0.0]))
    nest = Evaluator(network).analytic_base
    assert nest["loopnest"] == {"lpf_limit": 6, "max_orderings": 100, "energies": "ours", "objective": "edp",
                                "energy": True, "cycles": False, "feasible": False}
    assert format_table({"analytic_base": nest}).splitlines()[0] == (
        "analytic base: latency the roofline (whole loop dimensions unrolled, the least-traffic mapping's DRAM "
        "time); energy the loop-nest model's (ZigZag's rules: lpf_limit 6, max_orderings 100, ours energies, "
        "objective edp) plus leakage (fitted to the training split)")
    network.base_loopnest[5] = 1.0
    assert format_table({"analytic_base": Evaluator(network).analytic_base}).splitlines()[0].startswith(
        "analytic base: latency the loop-nest model's cycles; energy the loop-nest model's (ZigZag's rules")
    plain = format_table({"analytic_base": Evaluator(EvaluatorNetwork(depth=1, width=8)).analytic_base})
    assert plain.splitlines()[0] == ("analytic base: latency the builtin estimate; energy the builtin estimate's "
                                     "parts as they are (fitted to the training split)")


def _base_fit_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "base_fit.py"
    spec = importlib.util.spec_from_file_location("base_fit_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_base_fit_benchmark_reports_the_builtin_fit_on_builtin_rows(small_dataset, capsys):
    assert _base_fit_benchmark().main(["--data", str(small_dataset)]) == 0
    out = capsys.readouterr().out
    assert "fit: latency builtin; objective latency; energy weights mac 1, rf 1, array 1, sram 1, dram 1, leak 1" in out
    builtin = next(line for line in out.splitlines() if line.strip().startswith("builtin estimate"))
    fitted = next(line for line in out.splitlines() if line.strip().startswith("fitted"))
    assert builtin.split()[-2:] == fitted.split()[-2:]  # the same base, the same shares
    assert float(builtin.split()[-2].rstrip("%")) > 90.0
    dram = next(line for line in out.splitlines() if "DRAM energy <=10% of the traffic's" in line)
    shares = dict(part.rsplit(" ", 1) for part in dram.split(": ", 1)[1].split(", "))
    assert float(shares["builtin estimate"].rstrip("%")) > 95.0  # the simulator's own traffic
    assert float(shares["compulsory"].rstrip("%")) < float(shares["least-traffic mapping"].rstrip("%"))


def test_the_part_substitution_table_finds_the_part_that_is_off(small_dataset):
    from evaluator.network import ENERGY_PARTS, base_parts

    bench = _base_fit_benchmark()
    frame = bench._feasible_rows(small_dataset)
    chunk = encode_frame(frame)
    scales, roofline = torch.ones(len(ENERGY_PARTS)), torch.tensor(0.0)
    # a simulator whose parts are the estimate's exactly, except SRAM at 3x
    _, _, parts = base_parts(chunk["pair_x"].double(), chunk["acc_x"].double(), False)
    for part, values in zip(ENERGY_PARTS, parts):
        frame[f"energy_{part}_pj"] = np.exp(values.numpy()) * (3.0 if part == "sram" else 1.0)
    frame["energy_pj"] = frame[[f"energy_{part}_pj" for part in ENERGY_PARTS]].sum(axis=1)
    table = bench.part_substitution(chunk, frame, scales, roofline)
    assert table["sram"]["true"] == 1.0  # the one part that is off, replaced: every pair right
    assert all(table[part]["only"] == 1.0 for part in ENERGY_PARTS if part != "sram")
    off = table["sram"]["only"]  # the pairs whose SRAM share is under 5% of the energy
    assert 0.0 < off < 1.0 and all(table[part]["true"] == off for part in ENERGY_PARTS if part != "sram")


def test_the_base_fit_benchmark_scores_a_parquet_file_with_a_fit_made_elsewhere(small_dataset, tmp_path, capsys):
    bench = _base_fit_benchmark()
    pairs = tmp_path / "pairs.parquet"
    read_dataset(small_dataset).iloc[:500].to_parquet(pairs)
    assert bench.main(["--data", str(pairs), "--fit-on", str(small_dataset), "--parts"]) == 0
    out = capsys.readouterr().out
    assert f"{pairs}: " in out and f"base fitted on {small_dataset}" in out
    assert "fit: latency builtin; objective latency; energy weights mac 1, rf 1" in out
    assert "with one part the simulator's / only that part estimated" in out


def test_statistics_refuse_a_one_shot_iterator(encoded):
    """The chunks are read twice (the base's fit, then the moments): a generator would leave
    the moments empty, so it is refused; a function returning a fresh one is the stream's way."""
    with pytest.raises(TypeError, match="a function returning an iterable"):
        statistics_of(iter([encoded]))
    stats, rows = statistics_of(lambda: iter([encoded]))
    assert rows == encoded["feasible"].shape[0]


def test_the_base_can_be_fitted_on_the_first_rows_only(encoded, small_dataset, monkeypatch):
    """`statistics_of(..., base_chunks)` fits the base on those rows (the moments still see
    every row), and `PairsDataModule(base_rows=N)` passes the training rows among the
    dataset's first N: dance-active's space-filling round 0."""
    from evaluator.data import PairsDataModule

    weighted = dict(encoded)
    _, _, parts = base_parts(encoded["pair_x"].double(), encoded["acc_x"].double(), roofline=False)
    weights = torch.tensor([1.0, 3.0, 1.0, 0.3, 1.0, 1.0], dtype=torch.float64)
    targets = encoded["targets"].clone()
    targets[:, 1] = torch.log(torch.stack(parts, dim=1).exp() @ weights).float()
    weighted["targets"] = targets
    stats, rows = statistics_of([encoded], base_chunks=[weighted])
    assert stats["base_energy_scales"].tolist() == pytest.approx(weights.tolist(), rel=0.05)
    assert rows == encoded["feasible"].shape[0]
    assert stats["target_mean"].tolist() == statistics_of([encoded])[0]["target_mean"].tolist()

    import evaluator.data as data_module
    from evaluator.data import SPLITS, assign_split, read_split, usable

    fitted_rows = []
    original = data_module.fit_base

    def recording(chunks, simulator=None):
        chunks = list(chunks)
        fitted_rows.append(sum(int(chunk["targets"].shape[0]) for chunk in chunks))
        return original(chunks, simulator)

    monkeypatch.setattr(data_module, "fit_base", recording)
    frame = read_split(small_dataset, None, drop_errors=False)
    first = (assign_split(frame, (0.8, 0.1, 0.1), 0) == SPLITS.index("train")) & usable(frame)
    for base_rows, expected in ((500, int(first[:500].sum())), (None, int(first.sum()))):
        data = PairsDataModule(str(small_dataset), base_rows=base_rows)
        data.setup("fit")
        assert fitted_rows[-1] == expected, base_rows
    assert 0 < fitted_rows[0] < fitted_rows[1]
    with pytest.raises(ValueError, match=r"base_rows = 0: expected a positive integer or null"):
        PairsDataModule(str(small_dataset), base_rows=0)
