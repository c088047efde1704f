"""A corpus of realistic secrets as coding agents meet them: commands, config files, headers,
prompts. Each entry is one kind of secret in one realistic context; the values are random per
run, so a scanner can only find them by their shape and nothing can be hard-coded.

Used by tests/processors/test_secrets_oracle.py, which plants every entry in every agent's
telemetry.
"""

from __future__ import annotations

import secrets as pysecrets
import string
from collections.abc import Callable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(pysecrets.choice(alphabet) for _ in range(n))


def password() -> str:
    """A password a person would pick for a service account: letters, digits, a symbol."""
    return (
        rand(6, string.ascii_letters)
        + rand(4, string.digits)
        + pysecrets.choice("!#%^*_-")
        + rand(3)
    )


@dataclass(frozen=True)
class Planted:
    """One corpus entry: ``text`` carries every value of ``secrets``."""

    kind: str
    text: str
    secrets: tuple[str, ...]


def _one(kind: str, make: Callable[[], str], template: str) -> Callable[[], Planted]:
    def build() -> Planted:
        value = make()
        return Planted(kind, template.format(S=value), (value,))

    return build


def _pem(kind: str) -> str:
    body = "\n".join(rand(64, B64) for _ in range(6))
    return f"-----BEGIN {kind} PRIVATE KEY-----\n{body}\n-----END {kind} PRIVATE KEY-----"


BUILDERS: list[Callable[[], Planted]] = [
    # AI providers
    _one(
        "anthropic",
        lambda: "sk-ant-api03-" + rand(93, URLSAFE) + "AA",
        "export ANTHROPIC_API_KEY={S} && claude -p 'fix the build'",
    ),
    _one(
        "anthropic_admin",
        lambda: "sk-ant-admin01-" + rand(93, URLSAFE) + "AA",
        'curl https://api.anthropic.com/v1/organizations/users -H "x-api-key: {S}"',
    ),
    _one(
        "openai_project",
        lambda: "sk-proj-" + rand(74, URLSAFE) + "T3BlbkFJ" + rand(74, URLSAFE),
        "OPENAI_API_KEY={S}",
    ),
    _one(
        "openai_legacy",
        lambda: "sk-" + rand(20) + "T3BlbkFJ" + rand(20),
        "client = OpenAI(api_key='{S}')",
    ),
    _one("openrouter", lambda: "sk-or-v1-" + rand(64, HEX), "use this key for openrouter: {S}"),
    _one(
        "google_api_key",
        lambda: "AIza" + rand(35, URLSAFE),
        "curl 'https://generativelanguage.googleapis.com/v1beta/models?key={S}'",
    ),
    _one(
        "google_oauth_secret",
        lambda: "GOCSPX-" + rand(28, URLSAFE),
        '{{"installed": {{"client_id": "1234.apps.googleusercontent.com", '
        '"client_secret": "{S}"}}}}',
    ),
    _one(
        "google_access_token",
        lambda: "ya29." + rand(120, URLSAFE),
        "gcloud auth print-access-token\n{S}",
    ),
    _one("groq", lambda: "gsk_" + rand(52), "GROQ_API_KEY {S}"),
    _one("xai", lambda: "xai-" + rand(80), "my xai key is {S} please wire it in"),
    _one("perplexity", lambda: "pplx-" + rand(48), "PPLX={S}"),
    _one(
        "huggingface",
        lambda: "hf_" + rand(34, string.ascii_letters),
        "huggingface-cli login --token {S}",
    ),
    _one(
        "huggingface_org",
        lambda: "api_org_" + rand(34, string.ascii_letters),
        "the org token api is {S}",
    ),
    _one("replicate", lambda: "r8_" + rand(37), "REPLICATE_API_TOKEN {S}"),
    # code hosting and registries
    _one(
        "github_pat",
        lambda: "ghp_" + rand(36),
        'curl -H "Authorization: token {S}" https://api.github.com/user',
    ),
    _one(
        "github_fine_grained",
        lambda: "github_pat_11" + rand(20, UPPER_DIGITS) + "_" + rand(59),
        "git clone https://{S}@github.com/acme/private.git",
    ),
    _one("github_oauth_escaped", lambda: "gho_" + rand(36), 'printf "line1\\n{S}\\n" > token.txt'),
    _one(
        "gitlab_pat",
        lambda: "glpat-" + rand(20, URLSAFE),
        'curl --header "PRIVATE-TOKEN: {S}" https://gitlab.example.com/api/v4/projects',
    ),
    _one(
        "gitlab_runner",
        lambda: "glrt-" + rand(20, URLSAFE),
        "gitlab-runner register --url https://gitlab.example.com --token {S}",
    ),
    _one(
        "npm_token", lambda: "npm_" + rand(36), "cat ~/.npmrc\n//registry.npmjs.org/:_authToken={S}"
    ),
    _one(
        "npm_config_set",
        lambda: (
            rand(8, HEX)
            + "-"
            + rand(4, HEX)
            + "-"
            + rand(4, HEX)
            + "-"
            + rand(4, HEX)
            + "-"
            + rand(12, HEX)
        ),
        "npm config set //registry.npmjs.org/:_authToken {S}",
    ),
    _one(
        "pypi",
        lambda: "pypi-AgEIcHlwaS5vcmc" + rand(120, URLSAFE),
        "twine upload -u __token__ -p {S} dist/*",
    ),
    _one("rubygems", lambda: "rubygems_" + rand(48, HEX), "GEM_HOST_API_KEY: {S}"),
    _one("docker_hub_pat", lambda: "dckr_pat_" + rand(27, URLSAFE), "docker login -u acme -p {S}"),
    _one("docker_login_password", password, "docker login registry.example.com -u ci -p {S}"),
    # cloud
    lambda: _aws_credentials(),
    _one(
        "aws_configure_set",
        lambda: rand(40, B64),
        "aws configure set aws_secret_access_key {S} --profile prod",
    ),
    _one(
        "aws_session_token",
        lambda: "FwoGZXIvYXdzE" + rand(200, B64),
        "aws configure set aws_session_token {S}",
    ),
    _one(
        "azure_account_key",
        lambda: rand(86, B64) + "==",
        "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={S};"
        "EndpointSuffix=core.windows.net",
    ),
    _one(
        "azure_sas",
        lambda: rand(43, ALNUM) + "%3D",
        "azcopy copy ./dist 'https://acme.blob.core.windows.net/web?sv=2022-11-02&ss=b&srt=co"
        "&sp=rwdlac&se=2026-12-31T00:00:00Z&sig={S}' --recursive",
    ),
    _one(
        "azure_client_secret",
        lambda: rand(3) + "8Q~" + rand(34, ALNUM + "_~.-"),
        "az ad sp credential reset --id 1234 # new secret: {S}",
    ),
    _one("az_login_password", password, "az login -u deploy@acme.example -p {S}"),
    lambda: _gcp_service_account(),
    _one("digitalocean", lambda: "dop_v1_" + rand(64, HEX), "doctl auth init -t {S}"),
    _one("alibaba", lambda: "LTAI" + rand(20), "aliyun configure set --access-key-id {S}"),
    _one("vault", lambda: "hvs." + rand(90, URLSAFE), '-H "X-Vault-Token: {S}"'),
    _one("doppler", lambda: "dp.pt." + rand(43), "DOPPLER_TOKEN={S} doppler run -- npm start"),
    _one(
        "new_relic", lambda: "NRAK-" + rand(27, UPPER_DIGITS), "newrelic profile add --apiKey {S}"
    ),
    _one("databricks", lambda: "dapi" + rand(32, HEX), "databricks configure --token <<< {S}"),
    _one("grafana", lambda: "glsa_" + rand(32) + "_" + rand(8, HEX), "GRAFANA_SA={S}"),
    _one("heroku", lambda: "HRKU-AA" + rand(58, URLSAFE), "heroku auth:token\n{S}"),
    _one("pulumi", lambda: "pul-" + rand(40, HEX), "PULUMI_ACCESS_TOKEN: {S}"),
    _one("sentry", lambda: "sntryu_" + rand(64, HEX), "sentry-cli login --auth-token {S}"),
    # messaging and SaaS
    _one(
        "slack_bot",
        lambda: "xoxb-" + rand(11, string.digits) + "-" + rand(12, string.digits) + "-" + rand(24),
        "SLACK_BOT_TOKEN={S}",
    ),
    _one(
        "slack_webhook",
        lambda: "T" + rand(10, UPPER_DIGITS) + "/B" + rand(10, UPPER_DIGITS) + "/" + rand(24),
        "curl -X POST https://hooks.slack.com/services/{S} -d '{{\"text\":1}}'",
    ),
    _one(
        "discord_webhook",
        lambda: rand(19, string.digits) + "/" + rand(68, URLSAFE),
        "https://discord.com/api/webhooks/{S}",
    ),
    _one(
        "discord_bot",
        lambda: "MT" + rand(24) + "." + rand(6, URLSAFE) + "." + rand(38, URLSAFE),
        "DISCORD_TOKEN: {S}",
    ),
    _one(
        "telegram_bot",
        lambda: rand(10, string.digits) + ":AA" + rand(33, URLSAFE),
        "curl https://api.telegram.org/bot{S}/sendMessage -d chat_id=42",
    ),
    _one("twilio_sid", lambda: "AC" + rand(32, HEX), "Twilio account {S} is the prod one"),
    _one("twilio_api_key", lambda: "SK" + rand(32, HEX), "twilio api key sid: {S}"),
    _one("twilio_auth_token", lambda: rand(32, HEX), "TWILIO_AUTH_TOKEN={S}"),
    _one(
        "sendgrid", lambda: "SG." + rand(22, URLSAFE) + "." + rand(43, URLSAFE), "sendgrid key {S}"
    ),
    _one("mailchimp", lambda: rand(32, HEX) + "-us" + rand(2, string.digits), "MC {S}"),
    _one("mailgun", lambda: "key-" + rand(32, HEX), "mailgun api {S}"),
    _one("stripe_live", lambda: "sk_live_" + rand(99), "stripe.api_key = {S}"),
    _one("stripe_webhook", lambda: "whsec_" + rand(32), "stripe listen --forward-to x  # {S}"),
    _one("square", lambda: "sq0csp-" + rand(43, URLSAFE), "SQUARE_SECRET {S}"),
    _one("shopify", lambda: "shpat_" + rand(32, HEX), "X-Shopify-Access-Token: {S}"),
    _one("atlassian", lambda: "ATATT3xFfGF0" + rand(180, URLSAFE + "="), "jira login --token {S}"),
    _one("artifactory", lambda: "AKCp" + rand(69), "ARTIFACTORY {S}"),
    _one("linear", lambda: "lin_api_" + rand(40), "LINEAR_API_KEY={S}"),
    _one(
        "postman",
        lambda: "PMAK-" + rand(24, HEX) + "-" + rand(34, HEX),
        "newman run c.json --postman-api-key {S}",
    ),
    # tokens in headers and URLs
    _one(
        "jwt_bearer",
        lambda: (
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI"
            + rand(40, URLSAFE)
            + "In0."
            + rand(86, URLSAFE)
        ),
        "curl -H 'Authorization: Bearer {S}' https://api.internal/v1/me",
    ),
    _one(
        "basic_auth_header",
        lambda: rand(40, B64) + "=",
        "GET /admin HTTP/1.1\nAuthorization: Basic {S}",
    ),
    _one("x_auth_header", lambda: rand(32), 'curl -H "X-Auth: {S}" https://legacy.internal/api'),
    _one("x_api_key_header", lambda: rand(40, HEX), "-H 'X-Api-Key: {S}'"),
    _one("cookie", lambda: rand(48, URLSAFE), "Cookie: sessionid={S}; csrftoken=abc"),
    _one("url_password", password, "psql postgres://app:{S}@db.internal:5432/app"),
    # password flags and secrets after a space
    _one("mysql_attached", password, "mysql -h db -u root -p{S} app < dump.sql"),
    _one("mysql_spaced", password, "mysqldump -u backup -p {S} --all-databases"),
    _one("curl_user", password, "curl -u deploy:{S} https://ci.internal/job/build"),
    _one("sshpass", password, "sshpass -p '{S}' ssh deploy@10.0.0.5 uptime"),
    _one("redis_cli", password, "redis-cli -h cache -a {S} ping"),
    _one("ldapsearch", password, "ldapsearch -x -D cn=admin,dc=acme -w {S} -b dc=acme"),
    _one("zip_password", password, "zip -P {S} backup.zip secrets.txt"),
    _one("keytool", password, "keytool -importcert -keystore ks.jks -storepass {S} -file ca.pem"),
    _one("openssl_passin", password, "openssl pkcs12 -in cert.p12 -passin pass:{S} -nodes"),
    _one("htpasswd", password, "htpasswd -bc /etc/nginx/.htpasswd admin {S}"),
    _one("smbclient", password, "smbclient //fs/share -U alice%{S} -c ls"),
    _one(
        "netrc",
        password,
        "cat ~/.netrc\nmachine api.heroku.com\n  login me@acme.example\n  password {S}",
    ),
    _one("password_flag", password, "pg_dump --dbname app --password={S}"),
    _one("token_flag", lambda: rand(40), "vercel deploy --token {S} --prod"),
    # names that say secret
    _one("env_password", password, "DB_PASSWORD={S} npm run migrate"),
    _one("yaml_password", password, "database:\n  user: app\n  password: {S}\n"),
    _one(
        "json_client_secret",
        lambda: rand(40, URLSAFE),
        '{{"client_id": "abc", "client_secret": "{S}"}}',
    ),
    _one("rails_secret_key_base", lambda: rand(128, HEX), "SECRET_KEY_BASE={S} rails s"),
    _one("sql_server_pwd", password, "Server=tcp:sql.acme,1433;Database=app;Uid=sa;Pwd={S};"),
    _one("prompt_password", password, "use the staging db, the password: {S} (don't commit it)"),
    # key material
    _one("rsa_private_key", lambda: _pem("RSA"), "cat id_rsa\n{S}"),
    _one("openssh_private_key", lambda: _pem("OPENSSH"), "{S}"),
    _one("age_key", lambda: "AGE-SECRET-KEY-1" + rand(58, UPPER_DIGITS), "# age key\n{S}"),
]


def _aws_credentials() -> Planted:
    key_id = "AKIA" + rand(16, UPPER_DIGITS)
    secret = rand(40, B64)
    text = (
        "cat ~/.aws/credentials\n[default]\n"
        f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    return Planted("aws_credentials_file", text, (key_id, secret))


def _gcp_service_account() -> Planted:
    key_id = rand(40, HEX)
    pem = _pem("")
    text = (
        '{"type": "service_account", "project_id": "acme", "private_key_id": "'
        + key_id
        + '", "private_key": "'
        + pem.replace("\n", "\\n")
        + '\\n", "client_email": "ci@acme.iam.gserviceaccount.com"}'
    )
    body_line = pem.split("\n")[1]
    return Planted("gcp_service_account", text, (key_id, body_line))


def corpus() -> list[Planted]:
    """A fresh corpus (new random values every call)."""
    return [build() for build in BUILDERS]
