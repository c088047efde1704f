"""Who may read the console: bearer tokens, basic auth with hashed passwords, or the user
header of an authenticating proxy. Refusals carry no data: 401 (no or wrong credentials)
or 403 (authenticated, not allowed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from extensions.console.config import AuthConfig

ITERATIONS = 600_000
"""PBKDF2-SHA256 work factor of new hashes (OWASP 2023 recommendation)."""


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        computed = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True)
class Decision:
    status: int  # 200, 401 or 403
    user: str = ""
    message: str = ""


class Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        # A verified basic credential is remembered (as a digest) so that a page's dozen
        # requests do not each pay the deliberately slow hash.
        self._verified: dict[bytes, str] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.config.configured()

    @property
    def challenge(self) -> str:
        return (
            'Basic realm="agentwatch"' if self.config.basic_users else 'Bearer realm="agentwatch"'
        )

    def decide(self, headers: dict[str, str]) -> Decision:
        if not self.enabled:
            return Decision(200)
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.config.bearer_tokens:
            token = credentials.strip().encode()
            if any(hmac.compare_digest(token, t.encode()) for t in self.config.bearer_tokens):
                return Decision(200, user="token")
            return Decision(401, message="invalid bearer token")
        if scheme == "basic" and self.config.basic_users:
            user = self._basic(credentials.strip())
            if user:
                return Decision(200, user=user)
            return Decision(401, message="invalid user name or password")
        header = self.config.trusted_header
        if header is not None:
            user = headers.get(header.user_header.lower(), "").strip()
            if user:
                groups = {
                    g.strip() for g in headers.get(header.groups_header.lower(), "").split(",")
                }
                if user in header.allowed_users or groups & set(header.allowed_groups):
                    return Decision(200, user=user)
                return Decision(403, user=user, message=f"{user} is not allowed to see the console")
        return Decision(401, message="authentication required")

    def _basic(self, credentials: str) -> str:
        key = hashlib.sha256(credentials.encode()).digest()
        with self._lock:
            if key in self._verified:
                return self._verified[key]
        try:
            user, _, password = base64.b64decode(credentials).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return ""
        hashed = self.config.basic_users.get(user)
        if hashed is None or not verify_password(password, hashed):
            return ""
        with self._lock:
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[key] = user
        return user
