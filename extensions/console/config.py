"""Configuration of the ``console`` extension: where it listens, what it reads, who may see it."""

from __future__ import annotations

import ipaddress

from pydantic import Field

from collector.component import ComponentConfig, ConfigContext, Duration, parse_endpoint
from collector.config import resolve_path


class TrustedHeaderConfig(ComponentConfig):
    """An authenticating proxy in front (oauth2-proxy style) names the user in a header."""

    user_header: str = Field(
        default="X-Forwarded-Email", description="Header carrying the authenticated user."
    )
    groups_header: str = Field(
        default="X-Forwarded-Groups",
        description="Header carrying the user's groups, comma-separated.",
    )
    allowed_users: list[str] = Field(
        default_factory=list, description="Users (as the proxy names them) who may see the console."
    )
    allowed_groups: list[str] = Field(
        default_factory=list, description="Groups whose members may see the console."
    )


class AuthConfig(ComponentConfig):
    """Any one configured method that accepts the request lets it in."""

    bearer_tokens: list[str] = Field(
        default_factory=list,
        description="Accepted 'Authorization: Bearer' tokens (use ${env:VAR}); for scripts.",
    )
    basic_users: dict[str, str] = Field(
        default_factory=dict,
        description="User name -> password hash made by `agentwatch console hash-password` "
        "(pbkdf2_sha256$iterations$salt$hash); for HTTP basic auth.",
    )
    trusted_header: TrustedHeaderConfig | None = Field(
        default=None,
        description="Trust a user/groups header set by an authenticating proxy; only safe when "
        "the console is reachable through that proxy alone.",
    )

    def configured(self) -> bool:
        return bool(self.bearer_tokens or self.basic_users or self.trusted_header)


class ConsoleConfig(ComponentConfig):
    endpoint: str = Field(
        default="127.0.0.1:8080",
        description="host:port of the web console and /api/v1; port 0 picks a free port. Any "
        "address but loopback needs auth.",
    )
    clickhouse: str | None = Field(
        default=None,
        description="Name of the clickhouse exporter whose public views are read; default: the "
        "only one.",
    )
    refresh_interval: Duration = Field(
        default=30.0, description="How often open pages reload their data; 0 turns it off."
    )
    directory_file: str | None = Field(
        default=None,
        description="The user directory (same format as normalize's directory_file) whose users "
        "with no activity are listed as unused seats.",
    )
    unused_after: Duration = Field(
        default=30 * 86400.0, description="A directory user idle this long is an unused seat."
    )
    silent_after: Duration = Field(
        default=86400.0,
        description="Pipeline health lists agents and users active in the last 7 days and "
        "silent this long.",
    )
    query_timeout: Duration = Field(
        default=30.0, description="Longest a page's query may run before it is cancelled."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        try:
            host, _ = parse_endpoint(self.endpoint)
        except ValueError as exc:
            return [f"{path}.endpoint: {exc}"]
        if not is_loopback(host) and not self.auth.configured():
            errors.append(
                f"{path}.auth: the console listens on {host}, which is not a loopback address; "
                "configure bearer_tokens, basic_users or trusted_header (or bind 127.0.0.1)"
            )
        for user, hashed in self.auth.basic_users.items():
            if not hashed.startswith("pbkdf2_sha256$") or hashed.count("$") != 3:
                errors.append(
                    f"{path}.auth.basic_users.{user}: not a password hash; make one with "
                    "`agentwatch console hash-password`"
                )
        if any(not t for t in self.auth.bearer_tokens):
            errors.append(f"{path}.auth.bearer_tokens: a token is empty")
        header = self.auth.trusted_header
        if header and not (header.allowed_users or header.allowed_groups):
            errors.append(f"{path}.auth.trusted_header: list allowed_users or allowed_groups")
        if self.directory_file and not resolve_path(self.directory_file, ctx.base_dir).exists():
            errors.append(f"{path}.directory_file: {self.directory_file} does not exist")
        return errors


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; ``0.0.0.0`` (every address) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
