"""The plot of one search result: the evaluator against the simulator, layer by layer, and
the learned architecture distribution.

`plot_result` writes ``<out>/search.png`` next to ``result.json``:

- per-layer latency and energy of the derived design, predicted (evaluator) and simulated,
  on a log scale, with the network totals and their relative errors in the titles;
- the architecture probabilities (blocks x candidates) at the end of the search, the
  derived choice outlined (co-search results only);
- with a precision search (``precision_probabilities`` over several bit widths), the
  precision probabilities (blocks x bits), the derived bits outlined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dataset_gen.common.files import atomic_write

__all__ = ["plot_result"]


def save_figure(figure, path: Path) -> Path:
    """Write a matplotlib figure to ``path`` atomically (temporary name, then rename) and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda stream: figure.savefig(stream, format="png"))
    finally:
        plt.close(figure)


def plot_result(result: Mapping[str, Any], per_layer: pd.DataFrame, path: str | Path,
                candidates: Sequence[str] | None = None) -> Path:
    """Write the result's figure as PNG (atomically); returns its path.

    Parameters
    ----------
    result : mapping
        The result dict (``predicted``, ``simulated``, ``relative_error``, ``method``,
        optionally ``architecture_probabilities`` and ``architecture``).
    per_layer : pandas.DataFrame
        `search.verify.verify_design`'s per-layer table.
    path : path-like
        The PNG to write.
    candidates : sequence of str, optional
        Candidate names (the heatmap's columns).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    probabilities = result.get("architecture_probabilities")
    bits_probabilities = result.get("precision_probabilities")
    if not bits_probabilities or len(bits_probabilities[0]) < 2:
        bits_probabilities = None  # a fixed precision: nothing learned to show
    panels = 2 + bool(probabilities) + bool(bits_probabilities)
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), dpi=110)
    names = [str(n).replace(".conv", "") for n in per_layer["name"]]
    positions = np.arange(len(names))
    error = result.get("relative_error") or {}
    for ax, key, unit, scale in ((axes[0], "latency_s", "us", 1e6), (axes[1], "energy_pj", "uJ", 1e-6)):
        predicted = per_layer[f"predicted_{key}"].to_numpy(dtype=float) * scale
        simulated = per_layer[f"simulated_{key}"].to_numpy(dtype=float) * scale
        ax.bar(positions - 0.2, predicted, width=0.4, label="evaluator")
        ax.bar(positions + 0.2, simulated, width=0.4, label="simulator")
        ax.set_yscale("log")
        ax.set_xticks(positions, names, rotation=75, fontsize=6)
        total_error = error.get(key)
        suffix = f" (total error {total_error:+.1%})" if isinstance(total_error, (int, float)) else ""
        ax.set_title(f"{key.split('_')[0]} per layer, {unit}{suffix}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    if probabilities:
        ax = axes[2]
        matrix = np.asarray(probabilities, dtype=float)  # (blocks, candidates)
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(np.arange(matrix.shape[1]), list(candidates or range(matrix.shape[1])), rotation=45, fontsize=7)
        ax.set_yticks(np.arange(matrix.shape[0]), [f"block {i}" for i in range(matrix.shape[0])], fontsize=7)
        for block, chosen in enumerate((result.get("architecture") or {}).get("choice") or []):
            ax.add_patch(plt.Rectangle((chosen - 0.5, block - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_title("architecture probabilities (derived: red)", fontsize=9)
        figure.colorbar(image, ax=ax, fraction=0.046)
    if bits_probabilities:
        ax = axes[-1]
        matrix = np.asarray(bits_probabilities, dtype=float)  # (blocks, precisions)
        precision = (result.get("search") or {}).get("precision") or list(range(matrix.shape[1]))
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(np.arange(matrix.shape[1]), [f"{b} bits" for b in precision], fontsize=7)
        ax.set_yticks(np.arange(matrix.shape[0]), [f"block {i}" for i in range(matrix.shape[0])], fontsize=7)
        for block, chosen in enumerate((result.get("architecture") or {}).get("precision_choice") or []):
            ax.add_patch(plt.Rectangle((chosen - 0.5, block - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_title("precision probabilities (derived: red)", fontsize=9)
        figure.colorbar(image, ax=ax, fraction=0.046)
    accuracy = result.get("test_accuracy")
    figure.suptitle(f"{result.get('method', 'search')}: test accuracy "
                    f"{accuracy:.2%}" if isinstance(accuracy, (int, float)) else str(result.get("method")), fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)
