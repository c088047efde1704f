"""``agentwatch reprice``: after a price book change, stored costs in a date range follow the
new prices, rows outside it keep theirs, and sessions and rollups agree with the api_calls
view. Real normaliser and cost processor at ingest, real ClickHouse."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import agent_model as am
from collector.records import Logs
from exporters.clickhouse import reprice, schema
from processors.cost import CostConfig
from tests.exporters.clickhouse.test_clickhouse_usage import (
    MODEL,
    Pipeline,
    claude_api_requests,
    claude_usage_metrics,
)
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    logs_request,
    make_exporter,
)

TODAY = datetime.now(UTC).date()
D0, D1, D2 = (TODAY - timedelta(days=n) for n in (4, 3, 2))
"""Three days; the reprice range is D1 alone."""
CALL = {
    "input_tokens": 1200,
    "output_tokens": 57,
    "cache_read_tokens": 15000,
    "cache_creation_tokens": 3000,
    "cost_usd": 0.020205,
}
"""The Claude Code case of ../shared/agents.md; Claude reports the list price as cost_usd."""
NEW_SONNET = {"input": 6.0, "output": 30.0, "cache_read": 0.6, "cache_write": 7.5}
UNKNOWN = "gpt-9-unreleased"


def noon(day: date, hours: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, 12 + hours, tzinfo=UTC).timestamp()) * 10**9


def new_sonnet_cost(input: int, output: int, cache_read: int, cache_write: int) -> float:
    """Hand computation from NEW_SONNET, USD per million tokens."""
    rates = {k: Decimal(repr(v)) for k, v in NEW_SONNET.items()}
    usd = (
        input * rates["input"]
        + output * rates["output"]
        + cache_read * rates["cache_read"]
        + cache_write * rates["cache_write"]
    ) / 1_000_000
    return float(usd)


def pricing_file(tmp_path: Path, name: str, book: dict[str, Any]) -> CostConfig:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(book))
    return CostConfig(pricing_file=str(path))


def sonnet_change(effective_from: date) -> dict[str, Any]:
    return {
        "providers": {
            "anthropic": {
                "models": {
                    MODEL: {"prices": [{"effective_from": effective_from, **NEW_SONNET}]},
                }
            }
        }
    }


def q(db: ClickHouseDatabase, sql: str) -> list[tuple[Any, ...]]:
    return db.rows(sql.replace("DB.", f"{db.name}."))


def store(db: ClickHouseDatabase, tmp_path: Path, cost: CostConfig | None = None) -> None:
    """A Claude session over three days (logs), a Codex call to a model no book prices and a
    metrics-only Claude session, all priced at ingest with ``cost`` (default: shipped book)."""
    pipeline = Pipeline(cost)
    claude = pipeline.logs(
        claude_api_requests(
            "s-claude",
            [
                {"_time": noon(D0), **CALL},
                {"_time": noon(D1), **CALL},
                {"_time": noon(D1, 1), **CALL, "input_tokens": 10, "cost_usd": 0.0036},
                {"_time": noon(D2), **CALL},
            ],
        )
    )
    codex = pipeline.cost.consume_logs(
        Logs.from_proto(
            logs_request(
                [
                    agent_record(
                        am.EventType.API_CALL,
                        "codex-1",
                        noon(D1),
                        agent="codex",
                        session_id="s-codex",
                        user_id="u-2",
                        provider="openai",
                        model=UNKNOWN,
                        input_tokens=1000,
                        output_tokens=100,
                    )
                ],
                service="codex_cli_rs",
            )
        )
    )
    assert codex is not None
    usage = pipeline.metrics(
        claude_usage_metrics(
            "s-metrics",
            noon(D1, 2),
            {"input": 100, "output": 20, "cacheRead": 1000, "cacheCreation": 0},
            0.0006,
        )
    )
    exporter = make_exporter(db, str(tmp_path))
    try:
        for i, logs in enumerate((Logs.from_proto(claude), codex, Logs.from_proto(usage))):
            exporter.consume_logs(logs, f"ingest-{i}")
    finally:
        exporter.shutdown()


def calls(db: ClickHouseDatabase) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(session, timestamp) -> (cost_usd, cost_usd_computed, revision) from the api_calls view."""
    return {
        (r[0], r[1]): r[2:]
        for r in q(
            db,
            "SELECT session_id, toUnixTimestamp64Nano(timestamp), cost_usd, cost_usd_computed, "
            "revision FROM DB.api_calls",
        )
    }


def assert_rollups_agree(db: ClickHouseDatabase) -> None:
    """sessions and usage_hourly say what the api_calls/api_usage views add up to."""
    sessions = {
        r[0]: r[1:] for r in q(db, "SELECT session_id, cost_usd, api_calls FROM DB.sessions")
    }
    from_calls = dict(
        q(
            db,
            "SELECT session_id, if(countIf(cost_usd IS NOT NULL) = 0, NULL, sum(cost_usd)) "
            "FROM DB.api_calls GROUP BY session_id",
        )
    )
    from_usage = dict(
        q(
            db,
            "SELECT session_id, if(countIf(cost_usd IS NOT NULL) = 0, NULL, sum(cost_usd)) "
            "FROM DB.api_usage GROUP BY session_id",
        )
    )
    assert set(sessions) == set(from_calls) | set(from_usage)
    for session, (cost, n_calls) in sessions.items():
        expected = from_calls[session] if n_calls else from_usage[session]
        assert cost == (None if expected is None else pytest.approx(expected)), session

    hourly = dict(
        q(
            db,
            "SELECT toUnixTimestamp(hour), sum(ifNull(cost_usd, 0)) FROM DB.usage_hourly "
            "GROUP BY hour",
        )
    )
    events = dict(
        q(
            db,
            "SELECT toUnixTimestamp(toStartOfHour(timestamp)) AS h, sum(ifNull(cost_usd, 0)) "
            "FROM (SELECT timestamp, cost_usd FROM DB.api_calls UNION ALL SELECT timestamp, "
            "cost_usd FROM DB.api_usage WHERE session_id NOT IN "
            "(SELECT session_id FROM DB.api_calls)) GROUP BY h",
        )
    )
    assert hourly == pytest.approx(events)


def test_reprice_changes_the_range_only_and_rollups_follow(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    db = clickhouse_schema
    store(db, tmp_path)
    before = calls(db)
    columns = "* EXCEPT (cost_usd, cost_usd_computed, revision)"
    other_columns = q(db, f"SELECT {columns} FROM DB.api_calls ORDER BY event_id")
    with_calls = "SELECT * FROM DB.sessions WHERE api_calls > 0"
    sessions_before = q(db, f"{with_calls} ORDER BY session_id")
    assert before[("s-codex", noon(D1))] == (None, None, 0)  # unknown model: NULL at ingest
    assert_rollups_agree(db)

    changed = pricing_file(tmp_path, "prices.yaml", sonnet_change(D0 - timedelta(days=10)))
    summary = reprice.reprice(db.client, db.settings, changed, D1, D1)

    after = calls(db)
    new_d1 = new_sonnet_cost(1200, 57, 15000, 3000)
    new_d1_small = new_sonnet_cost(10, 57, 15000, 3000)
    assert after[("s-claude", noon(D1))] == (pytest.approx(new_d1), pytest.approx(new_d1), 1)
    assert after[("s-claude", noon(D1, 1))] == (
        pytest.approx(new_d1_small),
        pytest.approx(new_d1_small),
        1,
    )
    # Outside the range nothing moved, though the new price would apply there too.
    for key in (("s-claude", noon(D0)), ("s-claude", noon(D2))):
        assert after[key] == before[key]
        assert after[key][2] == 0
    assert after[("s-codex", noon(D1))] == (None, None, 0)  # still unknown: stays NULL
    # A correction copies every other column of the stored row.
    assert q(db, f"SELECT {columns} FROM DB.api_calls ORDER BY event_id") == other_columns

    (usage,) = q(db, "SELECT cost_usd, cost_usd_computed, revision FROM DB.api_usage")
    new_usage = new_sonnet_cost(100, 20, 1000, 0)
    assert usage == (pytest.approx(new_usage), pytest.approx(new_usage), 1)

    by_table = {t.table: t for t in summary.tables}
    assert by_table["agent_api_calls"].rows_scanned == 3
    assert by_table["agent_api_calls"].rows_repriced == 2
    assert by_table["agent_api_calls"].unpriced_after == 1
    assert by_table["agent_api_calls"].cost_usd_before == pytest.approx(
        before[("s-claude", noon(D1))][0] + before[("s-claude", noon(D1, 1))][0]
    )
    assert by_table["agent_api_calls"].cost_usd_after == pytest.approx(new_d1 + new_d1_small)
    assert by_table["agent_api_usage"].rows_repriced == 1
    assert summary.rows_repriced == 3
    assert summary.cost_usd_after == pytest.approx(new_d1 + new_d1_small + new_usage)
    assert_rollups_agree(db)

    # Merges collapse the revisions and the rollups' rows; the figures stay the same.
    for table in (
        "agent_api_calls",
        "agent_api_usage",
        "agent_sessions",
        "agent_usage_hourly",
        "agent_api_usage_hourly",
    ):
        db.client.command(f"OPTIMIZE TABLE {db.name}.{table} FINAL")
    assert db.scalar(f"SELECT count() FROM {db.name}.agent_api_calls") == 5
    assert calls(db) == after
    assert_rollups_agree(db)

    # Running again changes nothing; going back to the shipped book restores the old figures.
    assert reprice.reprice(db.client, db.settings, changed, D1, D1).rows_repriced == 0
    restored = reprice.reprice(db.client, db.settings, CostConfig(), D0, D2)
    assert restored.tables[0].rows_repriced == 2
    # The same code priced them at ingest: the very same doubles come back.
    assert {k: v[:2] for k, v in calls(db).items()} == {k: v[:2] for k, v in before.items()}
    assert calls(db)[("s-claude", noon(D1))][2] == 2
    # (s-metrics is left out: the cost processor prices api_call records only, so its
    # api_usage had no cost until a reprice gave it one; assert_rollups_agree covers it.)
    sessions_now = q(db, f"{with_calls} ORDER BY session_id")
    cost = 14  # sessions.cost_usd: a sum of corrections, equal up to rounding
    assert [r[:cost] + r[cost + 1 :] for r in sessions_now] == [
        r[:cost] + r[cost + 1 :] for r in sessions_before
    ]
    assert [r[cost] for r in sessions_now] == pytest.approx([r[cost] for r in sessions_before])
    assert_rollups_agree(db)


def test_a_model_added_to_the_book_gets_priced(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """An unknown model's calls are NULL, counted as unpriced; once the book has it, reprice
    prices them and sessions and rollups stop calling them unpriced."""
    db = clickhouse_schema
    store(db, tmp_path)
    (before,) = q(
        db, "SELECT cost_usd, unpriced_api_calls FROM DB.sessions WHERE session_id = 's-codex'"
    )
    assert before == (None, 1)

    book = {
        "providers": {
            "openai": {
                "models": {
                    UNKNOWN: {
                        "prices": [{"effective_from": D0, "input": 2.0, "output": 10.0}],
                    }
                }
            }
        }
    }
    summary = reprice.reprice(
        db.client, db.settings, pricing_file(tmp_path, "add.yaml", book), D0, D2
    )
    expected = (1000 * 2.0 + 100 * 10.0) / 1e6
    assert summary.tables[0].rows_repriced == 1  # Claude's calls keep their shipped prices
    assert summary.tables[0].unpriced_after == 0
    assert q(
        db, "SELECT cost_usd, unpriced_api_calls FROM DB.sessions WHERE session_id = 's-codex'"
    ) == [(pytest.approx(expected), 0)]
    assert q(
        db,
        f"SELECT cost_usd, unpriced_api_calls FROM DB.usage_hourly WHERE model = '{UNKNOWN}'",
    ) == [(pytest.approx(expected), 0)]
    assert_rollups_agree(db)


def test_cost_source_and_discounts_follow_the_cost_config(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """cost_source: reported bills the agent's own figure; a discount applies to both."""
    db = clickhouse_schema
    store(db, tmp_path)
    before = calls(db)
    path = tmp_path / "discount.yaml"
    path.write_text(yaml.safe_dump({"discounts": [{"provider": "anthropic", "multiplier": 0.5}]}))
    config = CostConfig(pricing_file=str(path), cost_source="reported")
    reprice.reprice(db.client, db.settings, config, D1, D1)

    cost, computed, revision = calls(db)[("s-claude", noon(D1, 1))]
    assert cost == pytest.approx(0.0036 * 0.5)  # the reported figure, discounted
    assert computed == pytest.approx(before[("s-claude", noon(D1, 1))][1] * 0.5)
    assert revision == 1
    assert_rollups_agree(db)


def test_reprice_refuses_a_reversed_range_and_an_old_schema(
    clickhouse_db: ClickHouseDatabase,
) -> None:
    schema.migrate(clickhouse_db.client, clickhouse_db.settings, target=4)
    with pytest.raises(reprice.RepriceError, match="db migrate"):
        reprice.reprice(clickhouse_db.client, clickhouse_db.settings, CostConfig(), D0, D1)
    with pytest.raises(reprice.RepriceError, match="before"):
        reprice.reprice(clickhouse_db.client, clickhouse_db.settings, CostConfig(), D1, D0)


def test_summary_lines_report_every_table() -> None:
    summary = reprice.RepriceSummary(
        D0,
        D1,
        [
            reprice.TableReprice("agent_api_calls", 10, 4, 1.5, 2.25, 1, 0),
            reprice.TableReprice("agent_api_usage", 2, 2, 0.0, 0.5, 2, 0),
        ],
    )
    text = "\n".join(summary.lines())
    assert f"{D0.isoformat()} .. {D1.isoformat()}" in text
    assert "agent_api_usage" in text and "unpriced 2 -> 0" in text
    assert "total: 6 rows repriced, cost_usd 1.500000 -> 2.750000" in text


def test_a_retried_correction_is_applied_once(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """The insert of a correction sent again (its answer was lost) changes nothing more: the
    stored row is no longer at the revision it corrects, and the token is the same."""
    db = clickhouse_schema
    store(db, tmp_path)
    event_id, cost = q(
        db,
        "SELECT event_id, cost_usd FROM DB.api_calls WHERE session_id = 's-claude' "
        f"AND timestamp = fromUnixTimestamp64Nano({noon(D1)})",
    )[0]
    table = schema.AGENT_TABLES[am.EventType.API_CALL]
    change = reprice._Change(event_id, 0, cost + 1.0, cost + 1.0)
    for _ in range(2):
        reprice._insert_corrections(db.client, db.settings, table, D1, [change])
    assert db.scalar(f"SELECT count() FROM {db.name}.agent_api_calls WHERE revision = 1") == 1
    (session_cost,) = q(db, "SELECT cost_usd FROM DB.sessions WHERE session_id = 's-claude'")[0]
    claude = [v[0] for (session, _), v in calls(db).items() if session == "s-claude"]
    assert session_cost == pytest.approx(sum(claude))
    assert_rollups_agree(db)
