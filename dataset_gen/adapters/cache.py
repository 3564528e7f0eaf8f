"""A run's content-hash cache of simulated pairs, shared by its shard tasks.

Slow simulators make every repeated pair expensive: real-network layers recur across
shards, and a resumed run repeats the shard that was cut. `ResultCache` is an SQLite file
(``out/_cache.sqlite``, hidden from dataset readers by its leading underscore) that every
shard task of the run opens; a pair's key is `dataset_gen.adapters.base.pair_key` (the
adapter's identity and the pair), so a cache never serves results of other settings.
Only successful results are stored: a pair that failed is tried again next time.
SQLite's write-ahead log lets the local pool's workers read and write it at once; on a Ray
cluster it is shared only where the output folder is (otherwise each node has its own).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

__all__ = ["ResultCache", "CACHE_FILE"]

CACHE_FILE = "_cache.sqlite"
_BUSY_TIMEOUT_S = 60.0


class ResultCache:
    """Results by pair key, in one SQLite file.

    Parameters
    ----------
    path : path-like
        The database file (created if missing).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None

    def create(self) -> "ResultCache":
        """Create the database (once, in the driver, before any shard task opens it).

        Switching to the write-ahead log needs the database to itself, so it cannot be left
        to workers opening it at the same moment; the mode then stays with the file.
        """
        with sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT)")
        connection.close()
        return self

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:  # opened lazily: the object is pickled to workers unopened
            if not self.path.exists():
                self.create()  # used on its own, outside a dance-gen run
            self._connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        return self._connection

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored results among ``keys``."""
        keys = list(keys)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db().execute(f"SELECT key, value FROM results WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Store one successful result (NaN kept: JSON's non-strict form, read back alike)."""
        self._db().execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(result)))

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_connection": None}
