"""The worker the ``scalesim`` adapter runs inside SCALE-Sim's own environment.

It is started as a script by the interpreter of ``tools/.scalesim-venv`` (SCALE-Sim 3.0.0
needs numpy < 2, the product numpy 2), so it uses the standard library and ``scalesim``
only and never imports this package. One worker serves many pairs: importing SCALE-Sim
(numpy, pandas, matplotlib) costs far more than a small layer, so the adapter keeps one
worker per process and speaks JSON lines with it:

- on start the worker writes ``{"ready": true, "scalesim": VERSION, "numpy": VERSION,
  "python": VERSION}`` (or ``{"ready": false, "error": MESSAGE}`` and exits 1);
- per request ``{"id": N, "config": TEXT, "topology": TEXT, "layout": TEXT}`` (the three
  files SCALE-Sim reads, written by `dataset_gen.adapters.scalesim`) it runs SCALE-Sim and
  answers ``{"id": N, "ok": true, "reports": {FILE: CSV TEXT}, "seconds": S,
  "cpu_seconds": S}``, or ``{"id": N, "ok": false, "error": MESSAGE}`` when SCALE-Sim
  fails on that layer (the worker lives on);
- end of input ends the worker (so it never outlives the adapter's process).

SCALE-Sim prints to standard output; the worker moves the protocol to a private copy of
file descriptor 1 and points 1 at standard error, so nothing SCALE-Sim prints can corrupt
an answer. The reports are returned as text and parsed on the adapter's side
(`dataset_gen.adapters.scalesim.parse_reports`), where tests run without SCALE-Sim.
"""

import json
import os
import sys
import tempfile
import time
import traceback

#: SCALE-Sim's report files the worker returns (the layer's folder under ``run_name``)
REPORT_FILES = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")
#: SCALE-Sim's ``[general] run_name`` in every config the adapter writes
RUN_NAME = "dance"


def _drop_own_directory():
    """Remove this file's folder from ``sys.path``.

    Run as a script, Python puts the script's folder first on ``sys.path``; that folder
    holds the adapter module ``scalesim.py``, which would shadow SCALE-Sim's package.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]


def run_layer(request, workdir):
    """Run SCALE-Sim on one request's files; return its report files' text by name."""
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        paths = {}
        for kind, name in (("config", "layer.cfg"), ("topology", "layer_topology.csv"),
                           ("layout", "layer_layout.csv")):
            paths[kind] = os.path.join(tmp, name)
            with open(paths[kind], "w") as handle:
                handle.write(request[kind])
        sim = scalesim(save_disk_space=True, verbose=False, config=paths["config"],
                       topology=paths["topology"], layout=paths["layout"])
        sim.run_scale(top_path=os.path.join(tmp, "out"))
        reports = {}
        for name in REPORT_FILES:
            with open(os.path.join(tmp, "out", RUN_NAME, name)) as handle:
                reports[name] = handle.read()
        return reports


def _answer(stream, message):
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def main():
    """Serve requests from standard input until it ends (see the module docstring)."""
    _drop_own_directory()
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever SCALE-Sim prints goes to standard error
    sys.stdout = sys.stderr
    try:
        from importlib.metadata import version

        import numpy
        import scalesim.scale_sim  # noqa: F401 - the import is what is checked (and paid) here
        hello = {"ready": True, "scalesim": version("scalesim"), "numpy": numpy.__version__,
                 "python": sys.version.split()[0]}
    except BaseException as error:  # noqa: BLE001 - reported to the adapter, which names it
        _answer(protocol, {"ready": False, "error": f"{type(error).__name__}: {error}"})
        return 1
    _answer(protocol, hello)
    workdir = tempfile.mkdtemp(prefix="dance-scalesim-")
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                reports = run_layer(request, workdir)
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001 - SCALE-Sim calls exit() on bad input
                where = traceback.extract_tb(error.__traceback__)[-1:]
                place = f" at {os.path.basename(where[0].filename)}:{where[0].lineno}" if where else ""
                _answer(protocol, {"id": request.get("id"), "ok": False,
                                   "error": f"{type(error).__name__}: {error}{place}"})
                continue
            _answer(protocol, {"id": request.get("id"), "ok": True, "reports": reports,
                               "seconds": time.perf_counter() - start,
                               "cpu_seconds": time.process_time() - start_cpu})
    finally:
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
