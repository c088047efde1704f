"""The secret scrubber: every shipped pattern against real-shaped secrets and near misses."""

from __future__ import annotations

import json
import re
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
        [(f"token: {JWT}", JWT), (f"jwt {JWT} end", JWT), (f"\\n{JWT}\\n", JWT)],
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


HEX = "0123456789abcdef"
GITLAB = "glpat-" + rand(20, ALNUM + "_-")
HUGGINGFACE = "hf_" + rand(34, string.ascii_letters)
SENDGRID = "SG." + rand(22, ALNUM + "_-") + "." + rand(43, ALNUM + "_-")
DIGITALOCEAN = "dop_v1_" + rand(64, HEX)
DOCKER_HUB = "dckr_pat_" + rand(27, ALNUM + "_-")
NPM = "npm_" + rand(36)
TELEGRAM = "7123456789:AA" + rand(33, ALNUM + "_-")
DISCORD_HOOK = "1190000000000000000/" + rand(68, ALNUM + "_-")
TWILIO_SID = "AC" + rand(32, HEX)
TWILIO_KEY = "SK" + rand(32, HEX)
AZURE_ACCOUNT_KEY = rand(86, ALNUM + "+/") + "=="

CASES.update(
    {
        "age_secret_key": (
            [("AGE-SECRET-KEY-1" + rand(58, string.ascii_uppercase + string.digits), "AGE-SECRET")],
            ["AGE-SECRET-KEY-1 is the prefix", "age-secret-key-1" + "q" * 20],
        ),
        "sk_prefixed_api_key": (
            [("OPENROUTER_API_KEY sk-or-v1-" + rand(64, HEX), "sk-or-v1-")],
            ["sk-learn-pipeline-configuration-guide", "risk-or-v1-" + "a" * 30],
        ),
        "google_oauth": (
            [
                ("GOCSPX-" + rand(28, ALNUM + "_-"), "GOCSPX-"),
                ("ya29." + rand(60, ALNUM + "_-"), "ya29."),
            ],
            ["GOCSPX-short", "ya29.short"],
        ),
        "ai_provider_key": (
            [
                ("gsk_" + rand(52), "gsk_"),
                ("xai-" + rand(80), "xai-"),
                ("pplx-" + rand(48), "pplx-"),
                ("r8_" + rand(37), "r8_"),
                ("api_org_" + rand(34, string.ascii_letters), "api_org_"),
            ],
            ["gsk_short", "pplx-models", "r8_tiny"],
        ),
        "huggingface_token": (
            [
                (f"HF_TOKEN {HUGGINGFACE}", HUGGINGFACE),
                (f"huggingface-cli login {HUGGINGFACE}", HUGGINGFACE),
            ],
            ["hf_transfer", "self.hf_model_config", "hf_" + "a" * 10],
        ),
        "gitlab_token": (
            [
                (f"glab auth login -t {GITLAB}", GITLAB),
                ("gldt-" + rand(20), "gldt-"),
                ("GR1348941" + rand(20), "GR1348941"),
                ("_gitlab_session=" + rand(32, HEX), "_gitlab_session=X"),
            ],
            ["glpat-short", "see glpat- tokens", "gitlab.com/glpat"],
        ),
        "atlassian_token": (
            [("ATATT3xFfGF0" + rand(180, ALNUM + "_-="), "ATATT3xFfGF0")],
            ["ATATT3 is a prefix"],
        ),
        "npm_token": (
            [(f"//registry.npmjs.org/:_authToken {NPM}", NPM), (f"NPM={NPM}", NPM)],
            ["npm_config_cache", "npm_" + "a" * 20, "run npm_install_helper"],
        ),
        "pypi_token": (
            [("pypi-AgEIcHlwaS5vcmc" + rand(70, ALNUM + "_-"), "pypi-AgEI")],
            ["pypi-AgEshort", "pypi-simple"],
        ),
        "rubygems_token": ([("rubygems_" + rand(48, HEX), "rubygems_")], ["rubygems_org"]),
        "docker_hub_token": (
            [(f"echo {DOCKER_HUB} | docker login -u me --password-stdin", DOCKER_HUB)],
            ["dckr_pat_", "dckr_pat_short"],
        ),
        "artifactory_token": (
            [("AKCp" + rand(69), "AKCp"), ("APB" + rand(12), "APB")],
            ["APPROVED", "AKC short", "the API key"],
        ),
        "ci_token": (
            [
                ("CLOJARS_" + rand(60, string.ascii_lowercase + string.digits), "CLOJARS_"),
                ("pul-" + rand(40, HEX), "pul-"),
                ("pnu_" + rand(36), "pnu_"),
                (rand(14, string.ascii_lowercase) + ".atlasv1." + rand(66), ".atlasv1."),
            ],
            ["pul-request", "pnu_short", "API-VERSION"],
        ),
        "azure_secret": (
            [("client_secret " + "abc8Q~" + rand(34, ALNUM + "_~.-"), "8Q~")],
            ["8Q~ alone", "abc8Q~short"],
        ),
        "connection_string_key": (
            [
                (
                    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="
                    f"{AZURE_ACCOUNT_KEY};EndpointSuffix=core.windows.net",
                    AZURE_ACCOUNT_KEY,
                ),
                (
                    "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;"
                    "SharedAccessKey=" + rand(43, ALNUM + "+/") + "=",
                    "SharedAccessKey=" + "X",
                ),
                ("Server=tcp:db,1433;Database=app;Uid=sa;Pwd=Sup3r-S3cret;", "Sup3r-S3cret"),
            ],
            ["PWD=/home/dev", "cd $PWD; ls", "SharedAccessKeyName=RootManageSharedAccessKey"],
        ),
        "gcp_service_account_key": (
            [('"private_key_id": "' + rand(40, HEX) + '"', '"private_key_id": "X')],
            ['"private_key_id": "short"'],
        ),
        "digitalocean_token": (
            [(f"doctl auth init -t {DIGITALOCEAN}", DIGITALOCEAN)],
            ["dop_v1_short", "dop_v1_" + "z" * 64],
        ),
        "alibaba_access_key_id": ([("LTAI" + rand(20), "LTAI")], ["LTAI", "ALTAI mountains"]),
        "cloud_platform_token": (
            [
                ("hvs." + rand(90, ALNUM + "_-"), "hvs."),
                ("dp.pt." + rand(43), "dp.pt."),
                ("NRAK-" + rand(27, string.ascii_uppercase + string.digits), "NRAK-"),
                ("glsa_" + rand(32) + "_" + rand(8, HEX), "glsa_"),
                ("dapi" + rand(32, HEX), "dapi"),
                ("pscale_pw_" + rand(43), "pscale_pw_"),
                ("sha256~" + rand(43, ALNUM + "_-"), "sha256~"),
                ("lin_api_" + rand(40), "lin_api_"),
                ("PMAK-" + rand(24, HEX) + "-" + rand(34, HEX), "PMAK-"),
            ],
            ["hvs.short", "dapi docs", "sha256:" + "a" * 64, "pat.md"],
        ),
        "slack_token": (
            [
                ("xoxb-2401234567-5558888999-" + rand(24), "xoxb-2401234567-5558888999-"),
                ("SLACK=xoxp-1234567890-abcdefghij", "xoxp-1234567890-abcdefghij"),
                (
                    "xoxe.xoxp-1-" + rand(150, string.ascii_uppercase + string.digits),
                    "xoxe.xoxp-1-",
                ),
                ("xapp-1-A0123456789-" + rand(30), "xapp-1-A0123456789-"),
            ],
            ["xoxq-1234567890-abcdefghij", "xoxb-123", "xoxbx-1234567890abc"],
        ),
        "discord_webhook": (
            [(f"https://discord.com/api/webhooks/{DISCORD_HOOK}", DISCORD_HOOK)],
            ["https://discord.com/api/webhooks/", "https://discord.com/channels/1/2"],
        ),
        "discord_bot_token": (
            [("MTE5" + rand(20) + "." + rand(6) + "." + rand(38, ALNUM + "_-"), "MTE5")],
            ["Mozilla.Firefox.Browser", "N.A.S.A", "module.exports.default"],
        ),
        "telegram_bot_token": (
            [
                (f"https://api.telegram.org/bot{TELEGRAM}/getMe", TELEGRAM),
                (f"TELEGRAM_TOKEN {TELEGRAM}", TELEGRAM),
            ],
            ["12:30:45", "1700000000:short", "2026-09-27T09:35:29.776Z"],
        ),
        "microsoft_teams_webhook": (
            [
                (
                    "https://acme.webhook.office.com/webhookb2/"
                    + rand(36, HEX + "-")
                    + "@"
                    + rand(36, HEX + "-")
                    + "/IncomingWebhook/"
                    + rand(32)
                    + "/"
                    + rand(36, HEX),
                    "IncomingWebhook",
                )
            ],
            ["https://outlook.office.com/mail"],
        ),
        "twilio_key": (
            [
                (f"TWILIO_ACCOUNT_SID {TWILIO_SID}", TWILIO_SID),
                (f"api key {TWILIO_KEY}", TWILIO_KEY),
            ],
            ["AC" + "0" * 31, "ACCOUNT", "TASK" + "a" * 32],
        ),
        "sendgrid_api_key": (
            [(f"SENDGRID {SENDGRID}", SENDGRID)],
            ["SG.short.key", "SG.docs"],
        ),
        "mail_api_key": (
            [
                (rand(32, HEX) + "-us21", "-us21"),
                ("key-" + rand(32, HEX), "key-"),
                ("xkeysib-" + rand(64, HEX) + "-" + rand(16), "xkeysib-"),
            ],
            ["monkey-business", "key-value store", "en-us1"],
        ),
        "payment_token": (
            [
                ("sq0csp-" + rand(43, ALNUM + "_-"), "sq0csp-"),
                ("shpat_" + rand(32, HEX), "shpat_"),
                ("shippo_live_" + rand(40, HEX), "shippo_live_"),
                ("EZAK" + rand(54), "EZAK"),
            ],
            ["shpat_short", "sq0csp-", "access-control-allow-origin"],
        ),
        "saas_token": (
            [
                ("fio-u-" + rand(64, ALNUM + "_-"), "fio-u-"),
                ("tfp_" + rand(59, ALNUM + "_-"), "tfp_"),
                ("api.softlayer.com/soap/v3/" + rand(64, HEX), "soap/v3/X"),
            ],
            ["tfp_short", "pattern matching", "access"],
        ),
        "password_flag": (
            [
                ("mysql -u root -pS3cretPw app", "S3cretPw"),
                ("mysql -h db -u root -p S3cretPw2 app", "S3cretPw2"),
                ("sshpass -p 'hunter2!' ssh deploy@host", "hunter2!"),
                ("docker login -u me -p dckrPassw0rd registry.example.com", "dckrPassw0rd"),
                ("az login -u me@example.com -p AzureP4ss!", "AzureP4ss!"),
                ("curl -u alice:pa55word https://api.example.com", "pa55word"),
                ("curl -sS --user 'bob:Tr0ub4dor' https://x", "Tr0ub4dor"),
                ("redis-cli -h cache -a R3disPass ping", "R3disPass"),
                ("zip -P Z1pPass out.zip f", "Z1pPass"),
                ("openssl rsa -in k.pem -passin pass:OpenSSLpw", "OpenSSLpw"),
                ("keytool -list -keystore ks.jks -storepass St0reP4ss", "St0reP4ss"),
                ("ldapsearch -x -D cn=admin -w LdapPw99 -b dc=x", "LdapPw99"),
                ("smbclient //srv/share -U alice%Smb-Pass1", "Smb-Pass1"),
                ("htpasswd -bc .htpasswd admin Htp4sswd", "Htp4sswd"),
            ],
            [
                "ssh -p 2222 deploy@host",
                "docker run -p 8080:80 nginx",
                "mkdir -p src/app",
                "mysql -u root -p -h db",
                "mysql -u root -p",
                "curl -u $USER:$TOKEN https://x",
                "docker run -u 1000:1000 img",
                "git commit -p",
                "mysql -u root -p$(cat /run/pw)",
            ],
        ),
        "secret_after_space": (
            [
                ("aws configure set aws_session_token FwoGZXIvYXdzE" + rand(40), "FwoGZXIvYXdzE"),
                (
                    "npm config set //registry.npmjs.org/:_authToken " + rand(36, HEX),
                    "_authToken X",
                ),
                ("git config --global github.token " + rand(20), "github.token X"),
                ("setx API_KEY Zz8" + rand(20), "Zz8"),
            ],
            [
                "git config --global user.name Alice",
                "set the token expiry to 1h",
                "npm config set registry https://registry.npmjs.org",
                "aws configure set region eu-west-1",
            ],
        ),
        "netrc_password": (
            [
                ("machine api.example.com login bob password N3trcPw", "N3trcPw"),
                ("machine h\n  login bob\n  password N3trcPw2\n", "N3trcPw2"),
                ("cat ~/.netrc\\nmachine h\\nlogin u\\npassword N3trcPw3", "N3trcPw3"),
            ],
            ["the password is never logged", "enter your password below"],
        ),
        "auth_header": (
            [
                ('curl -H "X-Auth: abcdef123456" https://x', "abcdef123456"),
                ("X-Api-Key: 0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7b"),
                ('{"x-auth-token": "tok-9f8e7d6c5b"}', "tok-9f8e7d6c5b"),
                ("-H 'X-Vault-Token: s.Abcdef1234567890'", "s.Abcdef1234567890"),
            ],
            ["X-Request-Id: 3f9c2a1b-77", "X-Api-Version: 2024-06-01", "X-Forwarded-For: 10.0.0.1"],
        ),
        "cookie": (
            [("Cookie: session=9f8e7d6c5b4a3f2e1d; theme=dark", "9f8e7d6c5b4a3f2e1d")],
            ["cookie: chocolate chip", "the cookie banner"],
        ),
        "url_query_secret": (
            [
                (
                    "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=Abc%2Bdef123456789%3D",
                    "Abc%2B",
                ),
                ("https://x/cb?access_token=Zx81kLmn0pQ&state=1", "Zx81kLmn0pQ"),
                ("https://s3/x?Expires=1&Signature=" + rand(64, HEX), "Signature=X"),
            ],
            [
                "https://x/search?q=token&page=2",
                "https://x/?code=200",
                "https://x/?key=aaaaaaaaaaaa",
            ],
        ),
    }
)
CASES["aws_secret_access_key"][0].append(
    (f"aws configure set aws_secret_access_key {AWS_SECRET}", AWS_SECRET)
)
CASES["aws_secret_access_key"][0].append((f"aws_secret = '{AWS_SECRET}'", AWS_SECRET))
CASES["secret_flag"][0].extend(
    [
        ("psql --db-pass Pg-Pass-1 x", "Pg-Pass-1"),
        ("gpg --batch --passphrase Gpg-Phrase-9 -d f", "Gpg-Phrase-9"),
        ("skaffold --registry-token " + rand(24), "--registry-token X"),
    ]
)
CASES["secret_flag"][1].extend(["--bypass-cache now", "--password-stdin < f", "--no-auth-check"])
CASES["secret_assignment"][0].extend(
    [
        ("SECRET_KEY_BASE=" + rand(64, HEX), "SECRET_KEY_BASE=X"),
        ("DD_APP_KEY_V2=" + rand(40, HEX), "DD_APP_KEY_V2=X"),
        ("DB_PWD=hunter22", "hunter22"),
        ("_auth=dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("GPG_PASSPHRASE: correct-horse", "correct-horse"),
    ]
)
CASES["secret_assignment"][1].extend(
    ["sort_key=created_at_timestamp", "api_version=2024-06-01", "keyboard_layout=us-intl"]
)
CASES["openai_api_key"][0].append((f"\\n{OPENAI_LEGACY}\\n", OPENAI_LEGACY))
CASES["github_token"][0].append((f'"cmd": "echo hi\\n{GITHUB_PAT}"', GITHUB_PAT))
CASES["private_key"][0].append(
    (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\n"
        + rand(44)
        + "\nPrivate-MAC: "
        + rand(64, HEX),
        "Private-Lines: 1",
    )
)
CASES["aws_access_key_id"][0].append(("AROA" + rand(16, string.ascii_uppercase + "234567"), "AROA"))
CASES["stripe_key"][0].append(("whsec_" + rand(32), "whsec_"))


@pytest.fixture(scope="module")
def scrubber() -> SecretScrubber:
    return SecretScrubber()


def test_every_shipped_pattern_has_cases() -> None:
    assert {p.kind for p in default_patterns()} == set(CASES)


def _hidden(secret: str, out: str) -> bool:
    """The secret is gone; an "X" in a case's secret stands for "whatever followed" (the test
    names the visible context and a redaction marker must follow it)."""
    if secret.endswith("X"):
        context = secret[:-1]
        return context + "[REDACTED:" in out or context not in out
    return secret not in re.sub(r"\[REDACTED:\w+\]", "", out)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pattern_true_positives(scrubber: SecretScrubber, kind: str) -> None:
    for text, secret in CASES[kind][0]:
        out, kinds = scrubber.scrub(text)
        assert _hidden(secret, out), (kind, text, out)
        assert kind in kinds, (kind, text, out)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pattern_near_misses(scrubber: SecretScrubber, kind: str) -> None:
    for text in CASES[kind][1]:
        out, kinds = scrubber.scrub(text)
        assert kind not in kinds, (kind, text, out)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_anchors_cover_every_positive(kind: str) -> None:
    """Anchors are a prefilter: a match whose anchor is missing would be silently skipped."""
    patterns = [p for p in default_patterns() if p.kind == kind]
    for text, _ in CASES[kind][0]:
        lowered = text.lower()
        assert any(not p.anchors or any(a in lowered for a in p.anchors) for p in patterns), (
            kind,
            text,
        )


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


def test_bad_pattern_file_errors_give_the_exact_path_of_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("patterns: [{kind: ok, regex: a}, {kind: y, regex: a, anchors: [x, '']}]")
    with pytest.raises(PatternFileError) as e:
        load_patterns(bad)
    assert str(e.value).startswith(f"{bad}: pattern 2 (kind 'y'): ")
    assert str(e.value).endswith("(at patterns[1].anchors[1])")


def test_default_file_loads() -> None:
    assert {p.kind for p in load_patterns(DEFAULT_PATTERNS_FILE)} == set(CASES)


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


# Issue 10: the families that reached storage before, each in the shape it was seen in.
MISSED_BEFORE = {
    "aws-configure-set-space": (
        f"aws configure set aws_secret_access_key {AWS_SECRET}",
        AWS_SECRET,
    ),
    "netrc-password-space": ("machine github.com login bob password N3trc-Pw-42", "N3trc-Pw-42"),
    "connection-string-accountkey": (
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={AZURE_ACCOUNT_KEY};",
        AZURE_ACCOUNT_KEY,
    ),
    "custom-header-x-auth": ('curl -H "X-Auth: 9f8e7d6c5b4a3f2e" https://x', "9f8e7d6c5b4a3f2e"),
    "password-flag-attached-pX": ("mysql -u root -pSup3rS3cret db", "Sup3rS3cret"),
    "password-flag-spaced-p-X": ("mysql -u root -p Sup3rS3cret db", "Sup3rS3cret"),
    "curl-u-user-pass": ("curl -u admin:Sup3rS3cret https://x", "Sup3rS3cret"),
    "sshpass-p": ("sshpass -p Sup3rS3cret ssh host", "Sup3rS3cret"),
    "docker-login-p": ("docker login -u me -p Sup3rS3cret", "Sup3rS3cret"),
    "az-login-p": ("az login -u me@x.com -p Sup3rS3cret", "Sup3rS3cret"),
    "gitlab-token": (f"export GL={GITLAB}", GITLAB),
    "huggingface-token": (f"use {HUGGINGFACE} for the hub", HUGGINGFACE),
    "sendgrid-key": (f"key: {SENDGRID}", SENDGRID),
    "digitalocean-token": (f"doctl auth init -t {DIGITALOCEAN}", DIGITALOCEAN),
    "docker-hub-token": (f"docker login -u me -p {DOCKER_HUB}", DOCKER_HUB),
    "npm-token": (f"//registry.npmjs.org/:_authToken {NPM}", NPM),
    "telegram-bot-token": (f"curl https://api.telegram.org/bot{TELEGRAM}/getMe", TELEGRAM),
    "discord-webhook": (f"https://discord.com/api/webhooks/{DISCORD_HOOK}", DISCORD_HOOK),
    "twilio-sid": (f"twilio {TWILIO_SID} {TWILIO_KEY}", TWILIO_SID),
}


@pytest.mark.parametrize("family", sorted(MISSED_BEFORE))
def test_issue_10_missed_families_are_scrubbed(scrubber: SecretScrubber, family: str) -> None:
    text, secret = MISSED_BEFORE[family]
    for shape in (text, json.dumps({"command": text}), json.dumps(json.dumps([text]))):
        out, kinds = scrubber.scrub(shape)
        assert secret not in out and kinds, (family, shape, out)
