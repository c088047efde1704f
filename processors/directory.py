"""The identity directory: who a user is in the organisation (team, cost centre, name).

Agents know an e-mail at best, often only an account id or an opaque user/installation id.
A directory file maps any of these to a team, a cost centre and a display name, so cost can be
split by team even for users who never set ``OTEL_RESOURCE_ATTRIBUTES``. When both exist, the
directory wins: it is what the administrator maintains, the attribute is what one laptop says.

Two formats, chosen by extension:

* YAML (``.yaml``/``.yml``): a list of entries, either at the top level or under ``users:``,
  each with at least one of ``email``, ``account_id``, ``user_id`` and any of ``team``,
  ``cost_center``, ``display_name``; or a mapping from an id (any kind) to those fields.
* CSV (``.csv``): a header row naming the same columns (plus ``key`` for an id of any kind);
  other columns are ignored so an HR export can be used as it is.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collector import agent_model as am
from processors.vendors import USER_DISPLAY_NAME, Scalar

ID_FIELDS = ("email", "account_id", "user_id", "key")
VALUE_FIELDS = ("team", "cost_center", "display_name")


class DirectoryError(Exception):
    """The directory file cannot be used; ``problems`` each name the file and the entry."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    team: str | None = None
    cost_center: str | None = None
    display_name: str | None = None


class Directory:
    """Lookups by e-mail (case-insensitive), account id, then user/installation id."""

    def __init__(self) -> None:
        self.by_email: dict[str, DirectoryEntry] = {}
        self.by_account: dict[str, DirectoryEntry] = {}
        self.by_user: dict[str, DirectoryEntry] = {}

    def __len__(self) -> int:
        return len(self.by_email) + len(self.by_account) + len(self.by_user)

    def add(self, ids: Mapping[str, str], entry: DirectoryEntry) -> None:
        email = ids.get("email")
        if email:
            self.by_email[email.strip().lower()] = entry
        if ids.get("account_id"):
            self.by_account[ids["account_id"].strip()] = entry
        if ids.get("user_id"):
            self.by_user[ids["user_id"].strip()] = entry
        key = ids.get("key")
        if key:
            key = key.strip()
            if "@" in key:
                self.by_email[key.lower()] = entry
            else:
                self.by_account.setdefault(key, entry)
                self.by_user.setdefault(key, entry)

    def lookup(
        self, email: str | None, account: str | None, user_id: str | None
    ) -> DirectoryEntry | None:
        if email:
            entry = self.by_email.get(email.strip().lower())
            if entry is not None:
                return entry
        if account:
            entry = self.by_account.get(account)
            if entry is not None:
                return entry
        if user_id:
            return self.by_user.get(user_id)
        return None

    def enrich(self, event: dict[str, Scalar]) -> None:
        """Set team, cost centre and display name on one record's agentwatch keys."""
        entry = self.lookup(
            _str(event.get(am.USER_EMAIL)),
            _str(event.get(am.USER_ACCOUNT)),
            _str(event.get(am.USER_ID)),
        )
        if entry is None:
            return
        if entry.team:
            event[am.TEAM] = entry.team
        if entry.cost_center:
            event[am.COST_CENTER] = entry.cost_center
        if entry.display_name:
            event[USER_DISPLAY_NAME] = entry.display_name

    @classmethod
    def load(cls, path: str | Path) -> Directory:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as err:
            raise DirectoryError([f"{path}: cannot read: {err.strerror or err}"]) from err
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return cls._from_rows(path, _csv_rows(text))
        if suffix in (".yaml", ".yml"):
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise DirectoryError([f"{path}: not valid YAML: {err}"]) from err
            return cls._from_rows(path, _yaml_rows(path, document))
        raise DirectoryError([f"{path}: use a .yaml, .yml or .csv file"])

    @classmethod
    def _from_rows(cls, path: Path, rows: list[tuple[str, Mapping[str, Any]]]) -> Directory:
        directory = cls()
        problems: list[str] = []
        for where, row in rows:
            ids = {f: str(row[f]) for f in ID_FIELDS if row.get(f) not in (None, "")}
            values = {f: str(row[f]) for f in VALUE_FIELDS if row.get(f) not in (None, "")}
            if not ids:
                problems.append(f"{path}: {where}: needs one of email, account_id, user_id")
                continue
            if not values:
                problems.append(f"{path}: {where}: needs one of team, cost_center, display_name")
                continue
            directory.add(ids, DirectoryEntry(**values))
        if problems:
            raise DirectoryError(problems)
        return directory


def _str(value: Scalar | None) -> str | None:
    return value if isinstance(value, str) and value else None


def _csv_rows(text: str) -> list[tuple[str, Mapping[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    if not any(name in ID_FIELDS for name in header):
        return [("header", {})]
    return [(f"line {reader.line_num}", row) for row in reader]


def _yaml_rows(path: Path, document: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if isinstance(document, dict) and set(document) == {"users"}:
        document = document["users"]
    if isinstance(document, list):
        rows: list[tuple[str, Mapping[str, Any]]] = []
        for index, item in enumerate(document):
            if not isinstance(item, dict):
                raise DirectoryError([f"{path}: entry {index}: expected a mapping of fields"])
            rows.append((f"entry {index}", item))
        return rows
    if isinstance(document, dict):
        rows = []
        for key, fields in document.items():
            if not isinstance(fields, dict):
                raise DirectoryError([f"{path}: {key}: expected team/cost_center/display_name"])
            rows.append((str(key), {**fields, "key": str(key)}))
        return rows
    raise DirectoryError([f"{path}: expected a list of users or a mapping from id to fields"])
