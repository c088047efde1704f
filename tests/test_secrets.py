"""The secret scrubber: every shipped pattern against real-shaped secrets and near misses."""

from __future__ import annotations

import secrets as pysecrets
import string
from pathlib import Path

import pytest

from processors.secrets import (
    DEFAULT_PATTERNS_FILE,
    PatternFileError,
    SecretScrubber,
    default_patterns,
    load_patterns,
    scrub_and_truncate,
    truncate,
)

ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(pysecrets.choice(alphabet) for _ in range(n))


ANTHROPIC = "sk-ant-api03-" + rand(93, ALNUM + "-_") + "AA"
OPENAI_PROJECT = "sk-proj-" + rand(120, ALNUM + "-_")
OPENAI_LEGACY = "sk-" + rand(20) + "T3BlbkFJ" + rand(19) + "7"
GOOGLE = "AIza" + rand(35, ALNUM + "-_")
GITHUB_PAT = "ghp_" + rand(36)
GITHUB_FINE = "github_pat_11ABCDEFG0" + rand(72, ALNUM + "_")
AWS_ID = "AKIA" + rand(16, string.ascii_uppercase + string.digits)
AWS_SECRET = rand(40, ALNUM + "/+")
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "\n".join(rand(70, ALNUM + "+/") for _ in range(5))
    + "\n-----END OPENSSH PRIVATE KEY-----"
)

# kind -> (texts that must be redacted, the exact secret inside each), near misses that must stay
CASES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "private_key": (
        [
            (f"key:\n{PEM}\nend", PEM),
            (
                "-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY-----",
                "-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY-----",
            ),
            # cut off before its END line: redacted to the end of the value
            (
                "cat id_rsa: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB",
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB",
            ),
        ],
        [
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----",
            "the private key is stored in the vault",
        ],
    ),
    "anthropic_api_key": (
        [
            (f"ANTHROPIC_API_KEY={ANTHROPIC}", ANTHROPIC),
            (f'"x-api-key: {ANTHROPIC}"', ANTHROPIC),
            ("sk-ant-admin01-" + "a" * 30, "sk-ant-admin01-" + "a" * 30),
        ],
        ["sk-ant-api03-short", "task-ant-api03-" + "a" * 30, "desk-ant-api03-" + "b" * 30],
    ),
    "openai_api_key": (
        [
            (f"OPENAI_API_KEY={OPENAI_PROJECT}", OPENAI_PROJECT),
            (f"key {OPENAI_LEGACY} here", OPENAI_LEGACY),
            ("sk-svcacct-" + "Ab1_" * 8, "sk-svcacct-" + "Ab1_" * 8),
        ],
        [
            "sk-12345",
            "risk-" + "a1" * 15,
            "sk-learn-pipeline-configuration-guide",
            "sk-abcdefghijklmnopqrstuvwxyz",
        ],
    ),
    "google_api_key": (
        [(f"GEMINI_API_KEY={GOOGLE}", GOOGLE), (f"?key={GOOGLE}&q=1", GOOGLE)],
        ["AIza" + "a" * 34, "aiza" + "a" * 35, "AIzb" + "a" * 35],
    ),
    "github_token": (
        [
            (f"GH_TOKEN={GITHUB_PAT}", GITHUB_PAT),
            (f"git clone https://{GITHUB_FINE}@github.com/o/r", GITHUB_FINE),
            ("ghs_" + "Z9" * 18, "ghs_" + "Z9" * 18),
        ],
        ["ghp_" + "a" * 35, "ghx_" + "a" * 36, "github_pat_short"],
    ),
    "aws_access_key_id": (
        [
            (f"aws_access_key_id = {AWS_ID}", AWS_ID),
            ("ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
        ],
        [
            "AKIA" + "A" * 15,
            "akiaiosfodnn7example",
            "AKIAIOSFODNN7EXAMPLEX",
            "XAKIAIOSFODNN7EXAMPLE",
        ],
    ),
    "aws_secret_access_key": (
        [
            (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
            (f'"SecretAccessKey": "{AWS_SECRET}"', AWS_SECRET),
            (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
        ],
        [f"aws_secret_access_key = {AWS_SECRET[:39]}", f"random 40 chars {AWS_SECRET} alone"],
    ),
    "slack_token": (
        [
            ("xoxb-2401234567-5558888999-" + rand(24), "xoxb-2401234567-5558888999-"),
            ("SLACK=xoxp-1234567890-abcdefghij", "xoxp-1234567890-abcdefghij"),
        ],
        ["xoxq-1234567890-abcdefghij", "xoxb-123", "xoxbx-1234567890abc"],
    ),
    "slack_webhook": (
        [
            (
                "https://hooks.slack.com/services/T00000000/B00000000/" + rand(24),
                "https://hooks.slack.com/services/T00000000/B00000000/",
            )
        ],
        ["https://hooks.slack.com/", "https://api.slack.com/services/T000/B000/XXXXXXXXXXXX"],
    ),
    "stripe_key": (
        [
            ("sk_live_" + rand(24), "sk_live_"),
            ("rk_live_" + rand(24), "rk_live_"),
            ("sk_test_" + rand(24), "sk_test_"),
        ],
        ["pk_live_" + rand(24), "sk_live_short", "ask_live_" + rand(24)],
    ),
    "jwt": (
        [(f"token: {JWT}", JWT), (f"Cookie: session={JWT}; path=/", JWT)],
        ["eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.notjson.sig", "eyJ.eyJ."],
    ),
    "authorization_header": (
        [
            ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
            ('{"authorization": "token abcdef123456"}', "abcdef123456"),
            ("proxy-authorization=Digest qwerty123", "qwerty123"),
        ],
        ["authorization required", "the Authorization header", "authorization_code flow"],
    ),
    "bearer_token": (
        [
            ("curl -H 'Bearer abc.def-123456'", "abc.def-123456"),
            ("token_type bearer   Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
        ],
        ["bearer of bad news", "a Bearer token", "Bearer ${TOKEN}"],
    ),
    "url_password": (
        [
            ("postgres://admin:s3cr3t-P4ss@db.example.com:5432/app", "s3cr3t-P4ss"),
            ("redis://:hunter22@cache:6379", "hunter22"),
            ("git clone https://user:tok3n@git.example.com/r.git", "tok3n"),
        ],
        [
            "https://example.com:8080/path@v2",
            "ssh://git@github.com/org/repo",
            "https://user@host/x",
            "mailto:someone@example.com",
        ],
    ),
    "secret_flag": (
        [
            ("mysql --password=hunter22 -u root", "hunter22"),
            ("gh auth login --token abcdef123", "abcdef123"),
            ("tool --api-key 'k3y-value'", "k3y-value"),
        ],
        ["mysql --password -u root", "cli --token-file ./tok", "--passenger-count 3"],
    ),
    "secret_assignment": (
        [
            ("DB_PASSWORD=hunter22", "hunter22"),
            ('{"password": "correct horse"}', "correct"),
            ('{\\"client_secret\\": \\"abc123def\\"}', "abc123def"),
            ("export GITHUB_TOKEN=xyz789abc", "xyz789abc"),
            ("api_key: 0123456789abcdef", "0123456789abcdef"),
            ("SECRET_KEY = 'django-insecure-x1'", "django-insecure-x1"),
            ("credentials=c0ffee99", "c0ffee99"),
        ],
        [
            "max_tokens=1000",
            "input_token_count: 42",
            "PWD=/home/dev",
            "PASSWORD_FILE=/run/pw",
            "token_type: bearer",
            "the password is never logged",
            "keyboard=us",
        ],
    ),
}


@pytest.fixture(scope="module")
def scrubber() -> SecretScrubber:
    return SecretScrubber()


def test_every_shipped_pattern_has_cases() -> None:
    assert {p.kind for p in default_patterns()} == set(CASES)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pattern_true_positives(scrubber: SecretScrubber, kind: str) -> None:
    for text, secret in CASES[kind][0]:
        out, kinds = scrubber.scrub(text)
        assert secret not in out, (kind, text, out)
        assert f"[REDACTED:{kind}]" in out, (kind, text, out)
        assert kind in kinds


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pattern_near_misses(scrubber: SecretScrubber, kind: str) -> None:
    for text in CASES[kind][1]:
        out, kinds = scrubber.scrub(text)
        assert kind not in kinds, (kind, text, out)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_anchors_cover_every_positive(kind: str) -> None:
    """Anchors are a prefilter: a match whose anchor is missing would be silently skipped."""
    pattern = next(p for p in default_patterns() if p.kind == kind)
    for text, _ in CASES[kind][0]:
        assert any(a in text.lower() for a in pattern.anchors), (kind, text)


def test_contextual_secret_gets_its_specific_kind(scrubber: SecretScrubber) -> None:
    out, kinds = scrubber.scrub(f'curl -H "Authorization: Bearer {ANTHROPIC}" https://api')
    assert out == 'curl -H "Authorization: Bearer [REDACTED:anthropic_api_key]" https://api'
    assert kinds == ("anthropic_api_key",)


def test_scrubbing_is_idempotent(scrubber: SecretScrubber) -> None:
    text = f"A={ANTHROPIC} password=hunter22 {JWT} postgres://u:p4ss@h/db Bearer abcdefgh123"
    once, kinds = scrubber.scrub(text)
    assert len(kinds) == 5
    twice, again = scrubber.scrub(once)
    assert twice == once and again == ()


def test_many_secrets_in_one_value(scrubber: SecretScrubber) -> None:
    text = " ".join([GITHUB_PAT, AWS_ID, GOOGLE, "sk_live_" + rand(24)])
    out, kinds = scrubber.scrub(text)
    assert sorted(kinds) == ["aws_access_key_id", "github_token", "google_api_key", "stripe_key"]
    assert out.count("[REDACTED:") == 4


def test_high_entropy_only_when_enabled() -> None:
    token = "Zx8" + rand(37)
    assert SecretScrubber().scrub(f"value {token} end")[1] == ()
    out, kinds = SecretScrubber(high_entropy=True).scrub(f"value {token} end")
    assert kinds == ("high_entropy",) and token not in out


@pytest.mark.parametrize(
    "text",
    [
        "8cec9ec8abb326a464b5617add529d97c544f92ef70b9fa95d607a5801202b5e",  # user.id hash
        "6d76f337-39b7-406d-a78f-4e1d4e510849",  # uuid
        "claude-sonnet-4-5-20250929",
        "test_redaction_processor_handles_nested_values",
        "src/components/Button2Component.test.tsx",
    ],
)
def test_high_entropy_spares_ids_and_words(text: str) -> None:
    assert SecretScrubber(high_entropy=True).scrub(text)[1] == ()


def test_extra_patterns_file_extends_the_defaults(tmp_path: Path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        "patterns:\n"
        "  - kind: acme_token\n"
        "    regex: 'acme_(?P<secret>[0-9a-f]{16})'\n"
        "    anchors: [acme_]\n"
    )
    scrubber = SecretScrubber.from_files([extra])
    out, kinds = scrubber.scrub(f"acme_0123456789abcdef and {GITHUB_PAT}")
    assert out == "acme_[REDACTED:acme_token] and [REDACTED:github_token]"
    assert sorted(kinds) == ["acme_token", "github_token"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("patterns: [{kind: x, regex: '('}]", "pattern 1 (kind 'x'): invalid regex"),
        ("patterns: [{kind: Bad Kind, regex: 'a'}]", "pattern 1 (kind 'Bad Kind'): 'kind'"),
        (
            "patterns: [{kind: ok, regex: 'a'}, {kind: y, regex: 'a', colour: red}]",
            "pattern 2 (kind 'y'): unknown field 'colour'",
        ),
        ("patterns: [{kind: z, regex: 'a*'}]", "matches the empty string"),
        ("patterns: [{kind: z, regex: '(a)\\1'}]", "numbered back-references"),
        ("nope: []", "expected a mapping with a 'patterns' list"),
        ("patterns: [", "not valid YAML"),
    ],
)
def test_bad_pattern_files_are_rejected_with_file_and_position(
    tmp_path: Path, content: str, problem: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    with pytest.raises(PatternFileError) as e:
        load_patterns(bad)
    assert str(bad) in str(e.value) and problem in str(e.value)


def test_default_file_loads() -> None:
    assert len(load_patterns(DEFAULT_PATTERNS_FILE)) == len(CASES)


def test_truncate_marks_what_was_cut() -> None:
    assert truncate("abcdef", 10) == ("abcdef", 0)
    assert truncate("abcdefghij" * 3, 10) == ("abcdefghij…[truncated 20 chars]", 20)
    assert truncate("x" * 100, 0) == ("x" * 100, 0)


def test_truncation_never_splits_a_redaction_marker(scrubber: SecretScrubber) -> None:
    text, _, removed = scrub_and_truncate(scrubber, f"aaaa {GITHUB_PAT} tail", 10)
    assert text == "aaaa …[truncated 28 chars]" and removed == len("[REDACTED:github_token] tail")


def test_secret_straddling_the_cut_is_scrubbed_before_cutting(scrubber: SecretScrubber) -> None:
    """A key half inside the kept part must not leave its prefix behind."""
    text = "x" * 500 + " " + ANTHROPIC + " " + "y" * 50_000
    out, kinds, removed = scrub_and_truncate(scrubber, text, 512)
    assert kinds == ("anthropic_api_key",)
    assert "sk-ant" not in out and out.startswith("x" * 500 + " ")
    scrubbed_length = len(text) - len(ANTHROPIC) + len("[REDACTED:anthropic_api_key]")
    assert removed == scrubbed_length - len(out.split("…[truncated")[0])


def test_large_pem_block_cut_by_the_window_is_still_redacted(scrubber: SecretScrubber) -> None:
    big_pem = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + rand(6000, ALNUM + "+/\n")
        + "\n-----END RSA PRIVATE KEY-----"
    )
    out, kinds, _ = scrub_and_truncate(scrubber, "cat key\n" + big_pem, 512)
    assert kinds == ("private_key",)
    assert out.startswith("cat key\n[REDACTED:private_key]")
