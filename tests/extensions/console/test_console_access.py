"""Who may read the console: open on loopback; on any other address it refuses to start
without auth; bearer tokens, basic auth with hashed passwords and a trusted proxy header;
refusals are 401/403 and carry no data. (Tests bind loopback only: the auth behaviour is
checked with auth configured on 127.0.0.1.)"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.config import ConfigError, parse
from extensions.console.component import ConsoleExtension
from extensions.console.config import ConsoleConfig, is_loopback
from extensions.console.internal.auth import hash_password, verify_password
from tests.support.clickhouse_fixture import ClickHouseDatabase
from tests.support.console.client import get
from tests.support.console.data import host_with, seed

PASSWORD_HASH = hash_password("correct horse", iterations=1000)


def config(tmp_path: Path, console: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"debug": {}},
        "extensions": {"console": console},
        "service": {
            "data_dir": str(tmp_path),
            "extensions": ["console"],
            "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["debug"]}},
        },
    }


@pytest.mark.parametrize("endpoint", ["0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080", ":8080"])
def test_a_non_loopback_console_without_auth_is_a_config_error(
    tmp_path: Path, endpoint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(config(tmp_path, {"endpoint": endpoint}), source="t", env={}, base_dir="/")
    assert any(
        e.startswith("extensions.console.auth: the console listens on") for e in info.value.errors
    ), info.value.errors
    with pytest.raises(RuntimeError, match="refusing to serve"):
        ConsoleExtension("console", ConsoleConfig(endpoint=endpoint)).start(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "auth",
    [
        {"bearer_tokens": ["t0ken"]},
        {"basic_users": {"ada": PASSWORD_HASH}},
        {"trusted_header": {"allowed_groups": ["leads"]}},
    ],
)
def test_any_auth_method_lets_a_public_console_start(tmp_path: Path, auth: dict[str, Any]) -> None:
    cfg = parse(
        config(tmp_path, {"endpoint": "0.0.0.0:8080", "auth": auth}),
        source="t",
        env={},
        base_dir="/",
    )
    assert list(cfg.extensions) == ["console"]


def test_auth_settings_are_checked(tmp_path: Path) -> None:
    bad = {
        "endpoint": "127.0.0.1:0",
        "auth": {
            "basic_users": {"ada": "plaintext"},
            "bearer_tokens": [""],
            "trusted_header": {"user_header": "X-User"},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse(config(tmp_path, bad), source="t", env={}, base_dir="/")
    errors = "\n".join(info.value.errors)
    assert "extensions.console.auth.basic_users.ada: not a password hash" in errors
    assert "extensions.console.auth.bearer_tokens: a token is empty" in errors
    assert "extensions.console.auth.trusted_header: list allowed_users or allowed_groups" in errors


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com"]))
    assert verify_password("correct horse", PASSWORD_HASH)
    assert not verify_password("wrong horse", PASSWORD_HASH)


@pytest.fixture
def guarded(clickhouse_db: ClickHouseDatabase, tmp_path: Path) -> Iterator[str]:
    seeded = seed(clickhouse_db, tmp_path)
    cfg = ConsoleConfig.model_validate(
        {
            "endpoint": "127.0.0.1:0",
            "auth": {
                "bearer_tokens": ["s3cret-token"],
                "basic_users": {"ada": PASSWORD_HASH},
                "trusted_header": {
                    "user_header": "X-Forwarded-Email",
                    "groups_header": "X-Forwarded-Groups",
                    "allowed_users": ["lead@example.com"],
                    "allowed_groups": ["finance"],
                },
            },
        }
    )
    ext = ConsoleExtension("console", cfg)
    ext.start(host_with(seeded.exporter, tmp_path))
    yield f"http://127.0.0.1:{ext.port}"
    ext.shutdown()
    seeded.exporter.shutdown()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_refusals_are_401_or_403_and_carry_no_data(guarded: str) -> None:
    refused = [
        (401, "/api/v1/sessions", {}),
        (401, "/api/v1/sessions", {"Authorization": "Bearer wrong"}),
        (401, "/api/v1/summary", basic("ada", "wrong horse")),
        (401, "/api/v1/summary", basic("mallory", "correct horse")),
        (401, "/sessions", {}),
        (401, "/static/console.js", {}),
        (403, "/api/v1/sessions", {"X-Forwarded-Email": "intern@example.com"}),
        (
            403,
            "/sessions/s-ada-1",
            {"X-Forwarded-Email": "x@example.com", "X-Forwarded-Groups": "dev"},
        ),
    ]
    for status, path, headers in refused:
        answer = get(guarded + path, headers)
        assert answer.status == status, (path, headers, answer.status)
        assert "s-ada" not in answer.text and "example.com" not in answer.text.replace(
            headers.get("X-Forwarded-Email", "-"), ""
        )
        assert set(answer.json()) == {"error"}
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Basic")


def test_each_method_lets_the_right_people_in(guarded: str) -> None:
    allowed = [
        {"Authorization": "Bearer s3cret-token"},
        basic("ada", "correct horse"),
        {"X-Forwarded-Email": "lead@example.com"},
        {"X-Forwarded-Email": "cfo@example.com", "X-Forwarded-Groups": "staff, finance"},
    ]
    for headers in allowed:
        answer = get(f"{guarded}/api/v1/sessions", headers)
        assert answer.status == 200, headers
        assert answer.json()["total"] == 5
    assert get(f"{guarded}/sessions", basic("ada", "correct horse")).status == 200
    # Probes need no credentials and get no data.
    health = get(f"{guarded}/healthz")
    assert (health.status, health.text) == (200, "ok\n")
