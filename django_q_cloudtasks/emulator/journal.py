"""Keeping the emulator's state in a file, so that a restart loses nothing.

The file is a journal: one JSON line per change, appended and flushed before the call
that made the change answers. On start it is replayed into a :class:`Store`, then
rewritten as a compact snapshot. The emulator's signing key lives in it too, so tokens
minted before a restart still verify after it: the file is readable by its owner alone
(mode 0600), whatever the umask, and one left by an older version is rewritten so.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from .state import (
    Journal,
    QueueRecord,
    Store,
    TaskRecord,
    queue_from_json,
    queue_to_json,
)

# Rewrite the file once it holds this many more lines than the live state needs.
COMPACT_AFTER_LINES = 50_000
# The file holds the private key the emulator signs its ID tokens with.
FILE_MODE = 0o600


class FileJournal(Journal):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._lines = 0
        self._live = 0
        self.signing_key: str | None = None
        self._store: Store | None = None

    def open(self, store: Store) -> None:
        """Replays the file into ``store`` (empty when there is no file), then compacts it."""
        self._store = store
        if self.path.exists():
            with self.path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        self._replay(store, line, number)
        self._compact()

    def _replay(self, store: Store, line: str, number: int) -> None:
        try:
            entry = json.loads(line)
            kind = entry["kind"]
            if kind == "key":
                self.signing_key = entry["pem"]
            elif kind == "queue":
                store.load_queue(queue_from_json(entry["queue"]))
            elif kind == "queue-deleted":
                store.forget_queue(entry["name"], entry["when"])
            elif kind == "task":
                store.load_task(TaskRecord.from_json(entry["task"]))
            elif kind == "task-deleted":
                store.forget_task(entry["name"], entry["when"])
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as error:
            if not line.endswith("\n"):
                # A line cut short by a crash mid-write loses only that change.
                return
            raise ValueError(f"{self.path}, line {number}: unreadable ({error})") from error

    def keep_signing_key(self, pem: str) -> None:
        self.signing_key = pem
        self._write({"kind": "key", "pem": pem})

    def queue_saved(self, queue: QueueRecord) -> None:
        self._write({"kind": "queue", "queue": queue_to_json(queue)})

    def queue_deleted(self, name: str, when: float) -> None:
        self._write({"kind": "queue-deleted", "name": name, "when": when})

    def task_saved(self, task: TaskRecord) -> None:
        self._write({"kind": "task", "task": task.to_json()})

    def task_deleted(self, name: str, when: float) -> None:
        self._write({"kind": "task-deleted", "name": name, "when": when})

    def close(self) -> None:
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None

    def _write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if self._file is None:
                return
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()
            self._lines += 1
            if self._lines > self._live + COMPACT_AFTER_LINES:
                self._file.close()
                self._file = None
                self._compact_locked()

    def _compact(self) -> None:
        with self._lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        """Writes the current state to a new file and swaps it in atomically."""
        assert self._store is not None
        temporary = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.fchmod(descriptor, FILE_MODE)  # a leftover temporary file keeps its old mode
        with open(descriptor, "w", encoding="utf-8") as out:
            if self.signing_key:
                out.write(json.dumps({"kind": "key", "pem": self.signing_key}) + "\n")
            for kind, record in self._store.snapshot():
                if kind == "queue":
                    entry: dict[str, Any] = {"kind": kind, "queue": queue_to_json(record)}
                elif kind == "task":
                    entry = {"kind": kind, "task": record.to_json()}
                else:
                    entry = {"kind": kind, "name": record[0], "when": record[1]}
                out.write(json.dumps(entry, separators=(",", ":")) + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        self._file = self.path.open("a", encoding="utf-8")
        self._lines = self._live = count
