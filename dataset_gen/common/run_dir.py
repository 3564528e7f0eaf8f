"""A run's output folder (``out=``) is never half-overwritten.

``dance-train``, ``dance-validate`` and ``dance-search`` write one run into ``out=DIR``. A
folder that already holds a run (any of `RUN_MARKERS`) is refused before anything is
written, naming the file, unless

- the command resumes that run (``ckpt_path=`` a checkpoint inside it), or
- the user passes ``overwrite=true``: the files this command writes there are removed
  first, and nothing else (a dataset or notes kept beside them stay).

A sweep (``-m``) is checked the same way, once, before its first job: its jobs' folders
``DIR/<n>/`` are the runs. `RunDirGuard` is the Hydra callback that applies the rule before
Hydra creates the folder or writes ``.hydra/`` into it; an unusable ``out`` (a file, under a
file, on a read-only file system) is reported there too, as one line with exit status 2.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.experimental.callback import Callback

from dataset_gen.common.config import require_settings
from dataset_gen.common.errors import EXIT_BUG, UserError, cli_errors, user_error_message

__all__ = ["RUN_MARKERS", "RunDirError", "prepare_run_dir", "prepare_sweep_dir", "RunDirGuard"]

#: Files whose presence means a folder holds a run of one of the commands: its results, or a
#: training checkpoint to resume. A config.yaml alone is a run that failed before producing
#: anything (a bad dataset=, say): the same command, corrected, may take the folder again.
RUN_MARKERS = ("evaluator.pt", "result.json", "report.json", "checkpoints/last.ckpt")


class RunDirError(UserError):
    """``out=`` cannot take this run: a file, unwritable, or holding another run."""


def _usable_folder(out: Path) -> None:
    """Create ``out`` if needed and prove it writable, or say why not (naming ``out=``)."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"out={out}: is a file; choose a folder (a new one, or one of an earlier run)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        where = error.filename
        bare = OSError(error.errno, error.strerror)  # the message names out= itself
        reason = user_error_message(bare if where in (None, str(out)) else error)
        raise RunDirError(f"out={out}: cannot write there: {reason}") from None


def _remove(out: Path, patterns: Sequence[str]) -> None:
    for pattern in patterns:
        for path in sorted(out.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def prepare_run_dir(out: str | os.PathLike, *, writes: Sequence[str], overwrite: bool = False,
                    resume_from: str | os.PathLike | None = None, resume_key: str | None = None) -> Path:
    """Make ``out`` ready for a run, or refuse it before anything is written.

    Parameters
    ----------
    out : path-like
        The run's folder (created if missing).
    writes : sequence of str
        Glob patterns, relative to ``out``, of everything the command writes there: what
        ``overwrite`` removes.
    overwrite : bool
        Replace an earlier run in ``out``.
    resume_from : path-like, optional
        A checkpoint being resumed; inside ``out`` it makes the earlier run welcome.
    resume_key : str, optional
        The setting that resumes a run (``ckpt_path``), for the message; None: the command
        cannot resume.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    RunDirError
        ``out`` is a file or cannot be written, or holds a run (the message names the file
        and the ways forward).
    """
    out = Path(out)
    _usable_folder(out)
    held = [out / name for name in RUN_MARKERS if (out / name).exists()]
    if not held or (resume_from is not None and _inside(resume_from, out)):
        return out
    if not overwrite:
        resume = f", or {resume_key}= a checkpoint inside it to resume it" if resume_key else ""
        raise RunDirError(f"out={out} already holds a run ({held[0]}); choose another out=, pass "
                          f"overwrite=true to replace that run{resume}")
    _remove(out, writes)
    return out


def prepare_sweep_dir(out: str | os.PathLike, *, writes: Sequence[str], sweep_writes: Sequence[str] = (),
                      overwrite: bool = False) -> Path:
    """`prepare_run_dir` for a sweep: its job folders ``out/<n>/`` are the runs.

    Parameters
    ----------
    out : path-like
        The sweep's folder.
    writes : sequence of str
        What one job writes in its folder (removed with ``overwrite``).
    sweep_writes : sequence of str
        What the sweep itself writes in ``out`` (a summary, a plot; removed with ``overwrite``).
    overwrite : bool
        Replace an earlier sweep's jobs.

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    _usable_folder(out)
    jobs = [job for job in sorted(out.iterdir()) if job.is_dir() and any((job / m).exists() for m in RUN_MARKERS)]
    if not jobs:
        return out
    if not overwrite:
        held = next(job / m for m in RUN_MARKERS for job in jobs if (job / m).exists())
        raise RunDirError(f"out={out} already holds a sweep ({held}); choose another out=, or pass "
                          "overwrite=true to replace it")
    for job in jobs:
        _remove(job, writes)
    _remove(out, sweep_writes)
    return out


class RunDirGuard(Callback):
    """Hydra callback: `prepare_run_dir` (or `prepare_sweep_dir`) before Hydra writes anything.

    Parameters
    ----------
    program : str
        The command, the first word of the error message.
    writes : sequence of str
        What the command writes into a run folder (`prepare_run_dir`).
    sweep_writes : sequence of str
        What a sweep writes into its own folder.
    resume_key : str, optional
        The config key of a checkpoint to resume from (``ckpt_path``).
    """

    def __init__(self, program: str, writes: Sequence[str], sweep_writes: Sequence[str] = (),
                 resume_key: str | None = None) -> None:
        self.program = program
        self.writes = tuple(writes)
        self.sweep_writes = tuple(sweep_writes)
        self.resume_key = resume_key

    def _hydra_files(self, config: Any) -> tuple[str, ...]:
        """Hydra's own files in a run folder: rewritten by the run, so removed with the run."""
        files = [f"{config.hydra.job.name}.log"]
        if config.hydra.output_subdir is not None:
            files.append(str(config.hydra.output_subdir))
        return tuple(files)

    def _guard(self, check: Callable[[], None]) -> None:
        """Run ``check`` under the error policy. Hydra turns a callback's exception into a
        warning and goes on, which here would mean writing into a folder nobody checked:
        a bug leaves with its traceback and exit status 1 instead."""
        try:
            with cli_errors(self.program):
                check()
        except Exception:  # noqa: BLE001 - cli_errors let a bug through
            traceback.print_exc()
            raise SystemExit(EXIT_BUG) from None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        def check() -> None:
            require_settings(config)  # before the run folder is created
            resume = config.get(self.resume_key) if self.resume_key else None
            prepare_run_dir(config.hydra.run.dir, writes=self.writes + self._hydra_files(config),
                            overwrite=bool(config.get("overwrite", False)), resume_from=resume,
                            resume_key=self.resume_key)

        self._guard(check)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        def check() -> None:
            require_settings(config)
            prepare_sweep_dir(config.hydra.sweep.dir, writes=self.writes + self._hydra_files(config),
                              sweep_writes=self.sweep_writes, overwrite=bool(config.get("overwrite", False)))

        self._guard(check)
