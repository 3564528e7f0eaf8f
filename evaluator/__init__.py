"""The learned hardware evaluator: an MLP that imitates the simulator, differentiably.

Public API (a contract with `search`; keep it stable)::

    from evaluator import load, save, Evaluator, EvaluatorLoadError
    from evaluator.features import (LAYER_FEATURES, ACCEL_FEATURES, encode_layers,
                                    encode_accelerators, encode_accelerators_soft)

    ev = load("runs/evaluator/evaluator.pt")   # frozen nn.Module: eval mode, no parameter grads
    ev.predict(layers, accelerator) -> pandas.DataFrame
        # layers: DataFrame of layer fields or list of Layer; accelerator: one Accelerator /
        # dict, or a DataFrame / list aligned with the layers. Columns: total_cycles,
        # latency_s, energy_pj, area_mm2, p_feasible (0..1); index: the layers' index.
    ev(layer_x, acc_x) -> dict of (n,) tensors     # differentiable w.r.t. layer_x and acc_x
        # layer_x = encode_layers(...) (n, d_layer); acc_x = encode_accelerators(...) or
        # encode_accelerators_soft(...) (n, d_acc) or (1, d_acc) (broadcast). Raw encodings:
        # the module normalises them with the training statistics it stores.
        # keys: cycles, latency_s, energy_pj, area_mm2, feasible_logit, and the natural logs
        # log_cycles, log_latency_s, log_energy_pj, log_area_mm2.
        # latency_s = cycles / (f * 1e6) with f = 2 ** acc_x[:, FREQ_FEATURE_INDEX] MHz: the
        # clock comes from the accelerator encoding itself (a soft encoding gives the
        # geometric mean of the candidate clocks), so it is differentiable too.
    save(ev, path)                                  # one file, torch.load(weights_only=True)

Encoding (`evaluator.features`): layers -> log2 sizes (pad as log2(pad+1)), derived output
size, per-group channels, window, pixels, MACs, tensor sizes and a depthwise flag;
accelerators -> log2 of pe_rows, pe_cols, rf_bytes, ifmap_kb, filter_kb, ofmap_kb, dram_bw,
freq_mhz, then dataflow one-hot (ws, os, is, rs) and word_bits one-hot (8, 16, 32).
`encode_accelerators_soft({field: (values, probs)})`: numeric fields give the expected
encoding sum_i p_i log2(v_i), categorical ones their probabilities; one-hot probabilities
reproduce `encode_accelerators` exactly.

Targets: ln total_cycles and ln energy_pj (regression on simulator-feasible pairs), ln
area_mm2 (a separate subnetwork that sees only the accelerator), and feasibility (a logit).

Command lines: ``dance-train data=DIR out=DIR`` (Hydra, conf/train.yaml) writes
out/evaluator.pt and out/report.json (layout: `evaluator.report`); ``dance-validate
artifact=FILE data=DIR out=DIR`` reports any artifact on a dataset of the same simulator
version and design space.
"""

from evaluator.artifact import EvaluatorLoadError, load, save
from evaluator.predictor import PREDICTION_COLUMNS, Evaluator

__all__ = ["load", "save", "Evaluator", "EvaluatorLoadError", "PREDICTION_COLUMNS"]
