#!/usr/bin/env python3
"""This package's simulator as a command for dance-gen's ``command`` adapter: a working
example of ``dance-sim-protocol/1`` (docs/adapters.md, section ``command``) and a template
for wrapping another simulator::

    dance-gen simulator=command 'simulator.command=[python,examples/adapters/builtin_over_protocol.py]'

gives the rows ``dance-gen simulator=builtin`` gives (only slower: one pair per call).

The protocol, as this script speaks it: print one handshake line; then, for every line
read on stdin (one pair), print one line with that pair's ``result`` (any of the dataset's
result columns, ``feasible`` at least) or its ``error``; exit at the end of stdin. Answer
every request, in order, on one line, flushed; anything else on stdout breaks the protocol
(log to stderr).

To wrap another tool, keep `main` and rewrite `answer`.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pandas as pd

from dataset_gen.simulator import SIMULATOR_VERSION, simulate_batch

PROTOCOL = "dance-sim-protocol/1"


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One pair's result columns.

    Parameters
    ----------
    request : dict
        ``{"id", "layer", "accelerator", "mapping", "objective"}`` as the adapter sends it.

    Returns
    -------
    dict
        Result column -> JSON value.
    """
    pair = {**request["layer"], **request["accelerator"]}
    # simulate_batch on one row, not simulate(): the same numbers (the fast engine is held to
    # the reference bit for bit) in milliseconds, where the reference engine steps every
    # tile of every candidate mapping (seconds to minutes for a large layer)
    row = simulate_batch(pd.DataFrame([pair]), mapping=request["mapping"], objective=request["objective"]).iloc[0]
    result = {}
    for column, value in row.items():
        value = value.item() if hasattr(value, "item") else value  # numpy scalars -> JSON types
        # strict JSON has no NaN: null stands for it (the adapter reads it back as NaN)
        result[column] = None if isinstance(value, float) and math.isnan(value) else value
    return result


def main() -> None:
    protocol_out = sys.stdout
    # whatever the simulator prints must not land between the answers
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        protocol_out.write(json.dumps(message, allow_nan=False) + "\n")
        protocol_out.flush()  # the adapter waits for this line: a pipe is not flushed by itself

    send({"protocol": PROTOCOL, "name": "dance-builtin", "version": SIMULATOR_VERSION})
    for line in sys.stdin:  # ends when the adapter closes our input
        request = json.loads(line)
        try:
            send({"id": request["id"], "result": answer(request)})
        except Exception as error:  # noqa: BLE001 - one pair's failure is that pair's error row
            send({"id": request["id"], "error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    main()
