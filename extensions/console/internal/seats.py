"""Unused seats: people in the directory file with no agent activity for a while.

A directory row may name a user by e-mail, account id and user id at once; ``Directory.add``
files all of them under one entry object, so one entry object is one seat.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from processors.directory import Directory, DirectoryEntry


def seats(directory: Directory) -> list[tuple[DirectoryEntry, list[str]]]:
    by_entry: dict[int, tuple[DirectoryEntry, list[str]]] = {}
    for table in (directory.by_email, directory.by_account, directory.by_user):
        for key, entry in table.items():
            ids = by_entry.setdefault(id(entry), (entry, []))[1]
            if key not in ids:
                ids.append(key)
    return list(by_entry.values())


def unused_seats(
    directory: Directory, last_seen: list[dict[str, Any]], now: datetime, idle: timedelta
) -> list[dict[str, Any]]:
    """Seats whose last activity (over all stored sessions) is older than ``idle`` or never."""
    latest: dict[str, datetime] = {}
    for row in last_seen:
        when = row["last_active"]
        for key in (str(row["user_email"]).lower(), str(row["user_id"])):
            if key and (key not in latest or latest[key] < when):
                latest[key] = when
    cutoff = (now - idle).replace(tzinfo=None)
    out = []
    for entry, ids in seats(directory):
        seen = [latest[i] for i in ids if i in latest]
        last = max(seen) if seen else None
        if last is None or last < cutoff:
            out.append(
                {
                    "user": ids[0],
                    "ids": ids,
                    "display_name": entry.display_name or "",
                    "team": entry.team or "",
                    "last_seen": last,
                }
            )
    out.sort(key=lambda s: (s["last_seen"] is not None, s["last_seen"] or cutoff, s["user"]))
    return out
