"""What was already imported, so a second import of the same files sends nothing.

A JSON file under ``<data_dir>/sessionfiles/``: per file its size and modification time when
last read completely, and a short digest of every record sent from it. An unchanged file is
skipped; a changed one is re-read and only records not sent before go out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from collector.receivers.sessionfiles.internal.events import FileEvent


def digest(session_id: str, event: FileEvent) -> str:
    text = json.dumps(
        [session_id, event.time_ns, event.body, sorted(event.attributes.items())],
        separators=(",", ":"),
        default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class FileState:
    size: int = -1
    mtime_ns: int = -1
    complete: bool = False
    """Read without a --from/--to filter, so an unchanged file has nothing more to give."""
    sent: set[str] = field(default_factory=set)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, FileState] = {}
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raw = {}
        for name, state in (raw.get("files") or {}).items():
            self.files[name] = FileState(
                int(state.get("size", -1)),
                int(state.get("mtime_ns", -1)),
                bool(state.get("complete")),
                set(state.get("sent") or ()),
            )

    def unchanged(self, path: Path) -> bool:
        state = self.files.get(str(path))
        if state is None or not state.complete:
            return False
        stat = path.stat()
        return state.size == stat.st_size and state.mtime_ns == stat.st_mtime_ns

    def state(self, path: Path) -> FileState:
        return self.files.setdefault(str(path), FileState())

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {
            "files": {
                name: {
                    "size": s.size,
                    "mtime_ns": s.mtime_ns,
                    "complete": s.complete,
                    "sent": sorted(s.sent),
                }
                for name, s in self.files.items()
            }
        }
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, self.path)
