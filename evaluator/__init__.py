"""The learned hardware evaluator: a network that imitates the simulator, differentiably.

Public API (a contract with `search`; keep it stable)::

    from evaluator import load, save, Evaluator, EvaluatorLoadError
    from evaluator.features import (LAYER_FEATURES, ACCEL_FEATURES, encode_layers,
                                    encode_accelerators, encode_accelerators_soft)

    ev = load("runs/evaluator/evaluator.pt")   # frozen nn.Module: eval mode, no parameter grads
        # refuses an artifact trained on another simulator version or analytic model
    ev.predict(pairs) -> pandas.DataFrame      # the Predictor protocol (evaluator.protocol),
        # pairs: one frame of layer and accelerator columns; baselines answer it alike
    ev.predict(layers, accelerator) -> pandas.DataFrame
        # layers: DataFrame of layer fields or list of Layer; accelerator: one Accelerator /
        # dict, or a DataFrame / list aligned with the layers. Columns: total_cycles,
        # latency_s, energy_pj, area_mm2, p_feasible (0..1); index: the layers' index.
    ev.predict(pairs, return_std=True), ev.predict(layers, accelerator, return_std=True)
        # adds total_cycles_std, latency_s_std, energy_pj_std, area_mm2_std: the CALIBRATED
        # standard deviation of the natural log of each prediction, i.e. about its relative
        # error (0.05: +-5% at one sigma; value * exp(+-2 std) is the 2-sigma band). From the
        # deep ensemble (model.ensemble = K members, default 5): std = sqrt((a x the members'
        # spread)^2 + (b x |ln prediction - ln analytic estimate|)^2), a and b per target
        # fitted after training on the validation split so that the 2-sigma band holds 95.4%
        # of its pairs and the 1-sigma band about 68.3%, as for a normal error (calibration:
        # bands in conf/train.yaml; 2sigma, 1sigma, rms scale the spread alone).
        # A single network (model.ensemble = 1, and every artifact older than ensembles)
        # has no uncertainty: NaN std, with a NoUncertaintyWarning.
    ev.ensemble -> int; ev.calibration -> dict   # members; {"scale": {target: a}, "departure_scale": ...} or {}
    ev(layer_x, acc_x) -> dict of (n,) tensors     # differentiable w.r.t. layer_x and acc_x
        # layer_x = encode_layers(...) (n, d_layer); acc_x = encode_accelerators(...) or
        # encode_accelerators_soft(...) (n, d_acc) or (1, d_acc) (broadcast). Raw encodings:
        # the module normalises them with the training statistics it stores.
        # keys: cycles, latency_s, energy_pj, area_mm2, feasible_logit, and the natural logs
        # log_cycles, log_latency_s, log_energy_pj, log_area_mm2 (better-conditioned costs).
        # latency_s = cycles / (f * 1e6) with f = 2 ** acc_x[:, FREQ_FEATURE_INDEX] MHz: the
        # clock comes from the accelerator encoding itself (a soft encoding gives the
        # geometric mean of the candidate clocks), so it is differentiable too.
        # The evaluator stays in eval mode even when a parent module calls .train().
        # An ensemble's values are the means of its members' logs (and logits).
    ev(layer_x, acc_x, return_std=True)             # adds std_log_cycles, std_log_latency_s,
        # std_log_energy_pj, std_log_area_mm2: the calibrated stds above, differentiable too
    save(ev, path)                                  # one file, torch.load(weights_only=True)

Encoding (`evaluator.features`): layers -> log2 sizes (pad as log2(pad+1)), derived output
size, per-group channels, window, pixels, MACs, tensor sizes and a depthwise flag;
accelerators -> log2 of pe_rows, pe_cols, rf_bytes, ifmap_kb, filter_kb, ofmap_kb, dram_bw,
freq_mhz, then dataflow one-hot (ws, os, is, rs) and word_bits one-hot (8, 16, 32).
`encode_accelerators_soft({field: (values, probs)})`: numeric fields give the expected
encoding sum_i p_i log2(v_i), categorical ones their probabilities; one-hot probabilities
reproduce `encode_accelerators` exactly.

Model (`evaluator.network`): inside the module, `pair_features(layer_x, acc_x)` computes
layer-array interactions, among them a coarse analytic cost model (`evaluator.analytic`: the
mapper's tile ladders and loop orders, fold-model compute, exact DRAM reuse, a step-class
pipeline, the simulator's energy constants), differentiable almost everywhere (ceil passes
gradients straight through). An MLP on the accelerator and pair features predicts log-space
corrections to the analytic estimates of ln total_cycles and ln energy_pj (trained on
simulator-feasible pairs) and a feasibility logit; a separate MLP that sees only the
accelerator corrects the analytic ln area_mm2 (trained on every pair). Inputs are clamped to
their training range, so unseen sizes do not send the MLP where it was never fitted.
With ``ensemble = K`` the module holds K independently initialised (trunk, area) members on
shared features and analytic base, trained together (the loss is the mean of theirs).

Command lines: ``dance-train dataset=DIR out=DIR`` (Hydra, conf/train.yaml) writes
out/evaluator.pt, out/report.json and out/report.txt (layout: `evaluator.report`), parity
plots, the calibration plot (observed vs expected coverage of the sigma bands) and the
resolved config; ``dance-validate artifact=FILE dataset=DIR out=DIR`` reports any artifact on a
dataset of the same simulator version and design space. Both report, per set and target, the
shares of simulated values inside the predicted 1- and 2-sigma bands (ideal 68.3% / 95.4%)
and the Spearman correlation of sigma with the absolute log error.

Figures (default config, the default ``dance-gen`` dataset of 100,000 pairs, 10 epochs on one
CPU thread): see the final report of the evaluator task; the run prints them and writes them
to report.txt.
"""

from evaluator.artifact import EvaluatorLoadError, load, save
from evaluator.predictor import STD_COLUMNS, Evaluator, NoUncertaintyWarning
from evaluator.protocol import PREDICTION_COLUMNS, Predictor

__all__ = ["load", "save", "Evaluator", "EvaluatorLoadError", "PREDICTION_COLUMNS", "Predictor", "STD_COLUMNS",
           "NoUncertaintyWarning"]
