"""Read-only querying (``agentwatch query``): only statements that cannot write are run, and
the server is asked to enforce it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

READONLY_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*.*?\*/|\()+", re.S)


class ReadOnlyQueryError(ValueError):
    """The statement is not a query; ``agentwatch query`` refuses to run it."""


def first_keyword(sql: str) -> str:
    rest = _LEADING_NOISE.sub("", sql, count=1)
    match = re.match(r"[A-Za-z]+", rest)
    return match.group(0).upper() if match else ""


def run_readonly_query(
    client: Client, sql: str, parameters: Mapping[str, Any] | None = None
) -> tuple[list[str], list[Sequence[Any]]]:
    """Run one query and return (column names, rows); anything that could write is refused.

    Checked twice: here by the leading keyword (a clear message), and by the server through
    ``readonly=1``, which rejects every write whatever the text looks like.
    """
    keyword = first_keyword(sql)
    if keyword not in READONLY_KEYWORDS:
        raise ReadOnlyQueryError(
            f"only read-only statements ({', '.join(sorted(READONLY_KEYWORDS))}) are allowed, "
            f"not {keyword or 'an empty statement'}"
        )
    statement = sql.strip().rstrip(";").strip()
    result = client.query(statement, parameters=dict(parameters or {}), settings={"readonly": 1})
    return list(result.column_names), [tuple(row) for row in result.result_rows]
