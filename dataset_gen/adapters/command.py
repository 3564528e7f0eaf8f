"""The ``command`` adapter: any executable that speaks ``dance-sim-protocol/1`` on its
standard input and output (JSON lines), so a user plugs in a simulator without writing
Python against this package.

The protocol (docs/adapters.md, section ``command``, is its specification)::

    command -> adapter   {"protocol": "dance-sim-protocol/1", "name": "mytool", "version": "2.1"}
    adapter -> command   {"id": 1, "layer": {...}, "accelerator": {...}, "mapping": "search",
                          "objective": "latency"}
    command -> adapter   {"id": 1, "result": {"feasible": true, "total_cycles": 1234, ...}}
                    or   {"id": 1, "error": "what went wrong with this pair"}
    ...                  (one request, one answer, until the adapter closes the command's input)

One command process serves every pair of an adapter (so one per dance-gen worker); it is
started again after it dies, times out or breaks the protocol. Its standard error goes to
an anonymous temporary file (never a pipe nobody reads, which would block a chatty tool),
whose tail is quoted when the command dies. ``examples/adapters/builtin_over_protocol.py``
is a working command (this package's simulator over the protocol), usable as a template.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import select
import shlex
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from typing import IO, Any, ClassVar

from dataset_gen.adapters.base import (
    AdapterError,
    PairTimeout,
    PairwiseAdapter,
    as_python,
)
from dataset_gen.simulator import RESULT_DTYPES
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS

__all__ = ["PROTOCOL", "CommandAdapter", "CommandFailure"]

PROTOCOL = "dance-sim-protocol/1"
PROTOCOL_VERSION = 1
SETTINGS: tuple[str, ...] = ("command", "cwd", "env", "timeout_s", "retries", "start_timeout_s",
                             "mapping", "objective")
# A longer line is a command gone wrong (a dump to stdout), not an answer: refuse it before
# it fills the memory
MAX_LINE_BYTES = 16 << 20
# How long a command may take to exit after its input is closed before it is killed
EXIT_GRACE_S = 2.0
_STDERR_TAIL_CHARS = 400
_QUOTE_CHARS = 200
_INT64 = (-(1 << 63), (1 << 63) - 1)
_KINDS = {"bool": "true or false", "int64": "an integer", "float64": "a number or null", "str": "a string"}


class CommandFailure(Exception):
    """The command failed on one pair: an error row (after the retries) with this message."""


class _Exited(Exception):
    """The command's output ended (it exited or closed its stdout)."""

    def __init__(self, partial: bytes) -> None:
        super().__init__()
        self.partial = partial


class _Deadline(Exception):
    """No full line before the deadline."""


def _quote(text: str | bytes, limit: int = _QUOTE_CHARS) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _running(popen: subprocess.Popen) -> bool:
    """Whether the command runs, checked without reaping it (see `_end_process`)."""
    if popen.returncode is not None:
        return False
    try:
        return os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # reaped elsewhere
        return False


def _end_process(popen: subprocess.Popen, stderr: IO[bytes], grace_s: float) -> None:
    """Close the command's input, give it ``grace_s`` to exit, then kill its process group.

    The leader is reaped only after the group is killed: until then its pid (the group's id)
    cannot be reused, so ``killpg`` can only reach processes this adapter started.
    """
    try:
        if popen.stdin is not None:
            popen.stdin.close()  # end of input: a well-behaved command exits now
    except OSError:
        pass
    ends = time.monotonic() + grace_s
    while time.monotonic() < ends and _running(popen):
        time.sleep(0.01)
    if popen.returncode is None:  # not reaped: the group id is still ours
        try:  # the command's own children too (a tool it runs per pair)
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    popen.wait()
    for stream in (popen.stdout, stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


class _Process:
    """One running command: line I/O with deadlines on its pipes, its stderr file, its end."""

    def __init__(self, argv: list[str], cwd: str | None, env: dict[str, str]) -> None:
        # anonymous (unlinked) file, open as long as the command runs: it needs no clean-up
        # and is read with pread, which does not move the offset the command writes at
        self.stderr = tempfile.TemporaryFile(prefix="dance-command-", suffix=".stderr")  # noqa: SIM115
        try:
            # own session: a timeout kills the command with its children, and a Ctrl-C on
            # the terminal reaches dance-gen alone, which then ends the command itself
            self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self.stderr, cwd=cwd, env={**os.environ, **env},
                                          bufsize=0, start_new_session=True, close_fds=True)
        except BaseException:
            self.stderr.close()
            raise
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(self.popen.stdout.fileno(), select.POLLIN)
        # at interpreter exit (dance-gen's driver, a test run) the command is ended too; a pool
        # worker exits without it, and then the command sees the end of its input
        self._finalizer = weakref.finalize(self, _end_process, self.popen, self.stderr, EXIT_GRACE_S)

    def alive(self) -> bool:
        """Whether the command still runs."""
        return _running(self.popen)

    def write_line(self, text: str) -> None:
        data = (text + "\n").encode()
        while data:  # a pipe may take a long line in parts
            written = os.write(self.popen.stdin.fileno(), data)
            data = data[written:]

    def read_line(self, deadline: float | None) -> bytes:
        """The next line of the command's stdout, without its newline.

        Raises `_Deadline` past ``deadline`` (``time.monotonic()``; None: wait for ever),
        `_Exited` at the end of the output, `CommandFailure` for an overlong line.
        """
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]
                return line
            if len(self._buffer) > MAX_LINE_BYTES:
                raise CommandFailure(f"a line longer than {MAX_LINE_BYTES} bytes: {_quote(bytes(self._buffer))}")
            timeout_ms = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Deadline()
                timeout_ms = max(1, math.ceil(remaining * 1000))
            if not self._poll.poll(timeout_ms):
                continue  # the loop checks the deadline
            chunk = os.read(self.popen.stdout.fileno(), 1 << 16)
            if not chunk:
                raise _Exited(bytes(self._buffer))
            self._buffer += chunk

    def stderr_tail(self) -> str:
        """The end of what the command wrote on stderr (its last words, e.g. a traceback)."""
        try:
            fd = self.stderr.fileno()
            size = os.fstat(fd).st_size
            data = os.pread(fd, 4 * _STDERR_TAIL_CHARS, max(0, size - 4 * _STDERR_TAIL_CHARS))
        except (OSError, ValueError):
            return ""
        text = data.decode("utf-8", errors="replace").strip()
        return text[-_STDERR_TAIL_CHARS:]

    def end(self, grace_s: float = EXIT_GRACE_S) -> int:
        """End the command (``grace_s`` to exit by itself first); its exit status."""
        self._finalizer.detach()
        _end_process(self.popen, self.stderr, grace_s)
        return self.popen.returncode


def _exit_text(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def _check_value(column: str, value: Any) -> Any:
    """A result value checked against its column's dtype, as the frame will hold it."""
    dtype = RESULT_DTYPES[column]
    if dtype == "bool" and isinstance(value, bool):
        return value
    if dtype == "str" and isinstance(value, str):
        return value
    if dtype == "int64" and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1e6 from a tool that computes in floats
        if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
            return value
    if dtype == "float64" and not isinstance(value, bool):
        if value is None:  # strict JSON has no NaN
            return math.nan
        if isinstance(value, (int, float)):
            return float(value)
    raise CommandFailure(f"result column {column} = {json.dumps(value)[:_QUOTE_CHARS]}: expected {_KINDS[dtype]}")


def check_result(result: Any) -> dict[str, Any]:
    """An answer's ``result`` object as result columns, checked (`CommandFailure` names the
    first unknown column or the first value of a wrong type)."""
    if not isinstance(result, dict):
        raise CommandFailure(f"result = {json.dumps(result)[:_QUOTE_CHARS]}: expected an object of result columns")
    unknown = sorted(set(result) - set(RESULT_DTYPES))
    if unknown:
        close = difflib.get_close_matches(unknown[0], RESULT_DTYPES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CommandFailure(f"unknown result column(s) {unknown}{hint}; the columns are {list(RESULT_DTYPES)}")
    if "feasible" not in result:
        raise CommandFailure("the result has no 'feasible' column (true or false), which every result needs")
    return {column: _check_value(column, value) for column, value in result.items()}


class CommandAdapter(PairwiseAdapter):
    """A simulator run as a command that speaks ``dance-sim-protocol/1`` (see the module).

    Parameters
    ----------
    settings : mapping
        ``command`` (the argv list), ``cwd`` (null: dance-gen's), ``env`` (added to
        dance-gen's environment), ``timeout_s`` (per pair; null: none), ``retries``,
        ``start_timeout_s`` (for the handshake), ``mapping`` and ``objective`` (sent with
        every pair). `AdapterError` names a bad one.
    cache : ResultCache, optional
        The run's result cache.
    """

    name: ClassVar[str] = "command"
    # the command may fill any column; those it leaves out keep the infeasible conventions
    provides: ClassVar[frozenset[str]] = frozenset(RESULT_DTYPES)

    def __init__(self, settings: Mapping[str, Any] | None = None, cache: Any = None) -> None:
        settings = dict(settings or {})
        self.argv = self._argv(settings.get("command"))
        self._check_settings(settings)  # before the base class converts retries
        super().__init__(settings, cache)
        self.cwd = None if settings.get("cwd") is None else str(settings["cwd"])
        self.env = {str(key): str(value) for key, value in (settings.get("env") or {}).items()}
        self.start_timeout_s = settings.get("start_timeout_s")
        self._process: _Process | None = None
        self._tool: tuple[str, str] | None = None  # (name, version) from the first handshake
        self._next_id = 0

    # -- settings ---------------------------------------------------------------------------

    def _argv(self, command: Any) -> list[str]:
        if command is None or command == "???":
            raise AdapterError("simulator 'command': simulator.command is required: the command's argv as a "
                               "list, e.g. simulator.command=[python,my_adapter.py]")
        if (not isinstance(command, (list, tuple)) or not command
                or not all(isinstance(part, (str, int, float)) and not isinstance(part, bool) for part in command)):
            raise AdapterError(f"simulator 'command': simulator.command = {command!r}: expected the argv as a "
                               "non-empty list of strings, e.g. [python, my_adapter.py]")
        return [str(part) for part in command]

    @property
    def _who(self) -> str:
        return f"simulator 'command' ({shlex.join(self.argv)})"

    def _check_settings(self, settings: dict[str, Any]) -> None:
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise AdapterError(f"{self._who}: unknown setting(s) {unknown}; expected some of {list(SETTINGS)}")
        for key in ("mapping", "objective"):
            if not isinstance(settings.get(key), str):
                raise AdapterError(f"{self._who}: simulator.{key} = {settings.get(key)!r}: expected a string "
                                   f"(dance-gen passes its top-level {key})")
        for key in ("timeout_s", "start_timeout_s"):
            value = settings.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise AdapterError(f"{self._who}: simulator.{key} = {value!r}: expected a positive number of "
                                   "seconds or null (no limit)")
        retries = settings.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise AdapterError(f"{self._who}: simulator.retries = {retries!r}: expected an integer >= 0")
        cwd = settings.get("cwd")
        if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
            raise AdapterError(f"{self._who}: simulator.cwd = {cwd!r}: expected a folder or null")
        env = settings.get("env") or {}
        if not isinstance(env, Mapping) or not all(
                isinstance(value, (str, int, float)) and not isinstance(value, bool) for value in env.values()):
            raise AdapterError(f"{self._who}: simulator.env = {env!r}: expected a mapping NAME: value "
                               "(strings or numbers)")

    # -- the process ------------------------------------------------------------------------

    def _start(self) -> _Process:
        """Start the command and read its handshake (`AdapterError` if either fails)."""
        try:
            process = _Process(self.argv, self.cwd, self.env)
        except OSError as error:
            raise AdapterError(f"{self._who}: cannot start it: {error}") from None
        deadline = None if self.start_timeout_s is None else time.monotonic() + float(self.start_timeout_s)
        try:
            line = process.read_line(deadline)
        except _Deadline:
            process.end(grace_s=0)
            raise AdapterError(f"{self._who}: no handshake line on its stdout within start_timeout_s = "
                               f"{self.start_timeout_s} s (does it flush its output?)") from None
        except _Exited as exited:
            note = self._stderr_note(process)  # read before end() closes the file
            status = process.end()
            raise AdapterError(f"{self._who}: it ended ({_exit_text(status)}) before its handshake"
                               f"{'; it printed ' + _quote(exited.partial) if exited.partial else ''}{note}") from None
        except CommandFailure as failure:
            process.end(grace_s=0)
            raise AdapterError(f"{self._who}: instead of its handshake, {failure}") from None
        try:
            self._check_handshake(line)
        except AdapterError:
            process.end(grace_s=0)
            raise
        return process

    def _check_handshake(self, line: bytes) -> None:
        expected = f'{{"protocol": "{PROTOCOL}", "name": ..., "version": ...}}'
        try:
            hello = json.loads(line)
        except ValueError:
            hello = None
        if not isinstance(hello, dict):
            raise AdapterError(f"{self._who}: expected the handshake {expected} as the first line of its stdout; "
                               f"it said {_quote(line)}")
        if hello.get("protocol") != PROTOCOL:
            raise AdapterError(f"{self._who}: it speaks protocol {hello.get('protocol')!r}, this dance speaks "
                               f"{PROTOCOL!r}; its handshake was {_quote(line)}")
        unknown = sorted(set(hello) - {"protocol", "name", "version"})
        bad = [key for key in ("name", "version") if not isinstance(hello.get(key), str) or not hello.get(key)]
        if unknown or bad:
            raise AdapterError(f"{self._who}: handshake {_quote(line)}: expected exactly {expected} with "
                               f"non-empty strings" + (f"; unknown key(s) {unknown}" if unknown else "")
                               + (f"; bad or missing {bad}" if bad else ""))
        tool = (hello["name"], hello["version"])
        if self._tool is not None and tool != self._tool:
            # one dataset, one tool version: a command replaced mid-run must not mix its results
            raise AdapterError(f"{self._who}: it was {self._tool[0]} {self._tool[1]} and, started again, says "
                               f"{tool[0]} {tool[1]}; rerun with one version")
        self._tool = tool

    def _running(self) -> _Process:
        if self._process is not None and not self._process.alive():
            self._stop()  # it died between pairs: reap it, start a new one
        if self._process is None:
            self._process = self._start()
        return self._process

    def _stop(self, grace_s: float = EXIT_GRACE_S) -> int | None:
        process, self._process = self._process, None
        return None if process is None else process.end(grace_s)

    @staticmethod
    def _stderr_note(process: _Process) -> str:
        tail = process.stderr_tail()
        return f"; its stderr ends with {_quote(tail, _STDERR_TAIL_CHARS)}" if tail else ""

    # -- the adapter ------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """``command NAME VERSION / protocol 1``, NAME and VERSION from the command's
        handshake (it is started for it, if it has not been)."""
        if self._tool is None:
            self._running()
        assert self._tool is not None
        return f"command {self._tool[0]} {self._tool[1]} / protocol {PROTOCOL_VERSION}"

    def check(self) -> None:
        """Start the command and read its handshake (`AdapterError`, naming the command, if
        it cannot start or speaks another protocol); then end it: the caller of `check` is
        usually a driver that simulates nothing itself."""
        self._running()
        self._stop()

    def _attempt(self, pair: Mapping[str, Any]) -> Mapping[str, Any]:
        # The deadline is kept by polling the pipe (simulate_pair), not by the base class's
        # SIGALRM: an alarm could strike mid-read and leave the stream out of step, and the
        # process that overran must be killed and replaced anyway.
        return self.simulate_pair(pair)

    def simulate_pair(self, pair: Mapping[str, Any]) -> Mapping[str, Any]:
        """Send one pair, read its answer; `PairTimeout` or `CommandFailure` for a failure."""
        process = self._running()
        self._next_id += 1
        pair_id = self._next_id
        request = {"id": pair_id,
                   "layer": {field: as_python(pair[field]) for field in LAYER_FIELDS},
                   "accelerator": {field: as_python(pair[field]) for field in ACCELERATOR_FIELDS},
                   "mapping": self.settings["mapping"], "objective": self.settings["objective"]}
        deadline = None if not self.timeout_s else time.monotonic() + float(self.timeout_s)
        try:
            process.write_line(json.dumps(request, allow_nan=False))
            line = process.read_line(deadline)
        except _Deadline:
            self._stop(grace_s=0)
            raise PairTimeout() from None
        except (_Exited, BrokenPipeError) as ended:
            note = self._stderr_note(process)  # read before _stop() closes the file
            status = self._stop()
            partial = getattr(ended, "partial", b"")
            raise CommandFailure(f"pair id {pair_id}: the command ended ({_exit_text(status)}) without answering"
                                 + (f"; it printed {_quote(partial)}" if partial else "") + note) from None
        except CommandFailure as failure:
            self._stop(grace_s=0)
            raise CommandFailure(f"pair id {pair_id}: {failure}") from None
        except BaseException:
            # Ctrl-C mid-pair: the answer still due would be read as the next pair's
            self._stop(grace_s=0)
            raise
        return self._answer(line, pair_id)

    def _answer(self, line: bytes, pair_id: int) -> dict[str, Any]:
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != pair_id or isinstance(answer.get("id"), bool):
            # not this pair's answer: whatever the command does now is out of step
            self._stop(grace_s=0)
            what = "not a JSON object" if not isinstance(answer, dict) else f"not an answer to id {pair_id}"
            raise CommandFailure(f"pair id {pair_id}: the command printed a line that is {what}: {_quote(line)}; "
                                 "it was ended (stdout is for answers only: log to stderr)")
        keys = set(answer) - {"id"}
        if keys not in ({"result"}, {"error"}):
            raise CommandFailure(f"pair id {pair_id}: answer {_quote(line)}: expected the keys id and result, or "
                                 "id and error")
        if "error" in answer:
            message = answer["error"] if isinstance(answer["error"], str) else json.dumps(answer["error"])
            raise CommandFailure(f"pair id {pair_id}: {message}")
        try:
            return check_result(answer["result"])
        except CommandFailure as failure:
            raise CommandFailure(f"pair id {pair_id}: {failure}") from None

    def close(self) -> None:
        """End the command (its input is closed first, so it may exit by itself)."""
        self._stop()
        super().close()
