"""The API refuses to start with a missing, short or placeholder secret."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys

import pytest
from apihelpers import secret_env

from api.mail.settings import MailSettings
from api.settings import ApiSettings
from runtime.env import SettingsError


def env_with(**overrides: str) -> dict[str, str]:
    env = secret_env()
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


def test_valid_secrets_parse_into_keys_by_kid() -> None:
    """kid:base64 pairs become a key map, with the active kid selected."""
    settings = ApiSettings.from_env(env_with())
    assert list(settings.jwt_keys) == ["k2", "k1"]
    assert settings.jwt_active_kid == "k2"
    assert all(len(key) == 32 for key in settings.jwt_keys.values())


@pytest.mark.parametrize(
    "overrides",
    [
        {"API_JWT_KEYS": "<unset>"},
        {"API_JWT_KEYS": ""},
        {"API_PASSWORD_PEPPER": "<unset>"},
        {"API_ACCOUNT_TOKEN_KEYS": "<unset>"},
        {"API_ACCOUNT_TOKEN_KEYS": "t1:changeme"},
        {"API_PUBLIC_URL": "ftp://example.com"},
        {"API_JWT_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(16)).decode()},
        {"API_PASSWORD_PEPPER": base64.b64encode(secrets.token_bytes(31)).decode()},
        {"API_JWT_KEYS": "k1:changeme"},
        {"API_PASSWORD_PEPPER": "secret"},
        {
            "API_JWT_KEYS": "k1:"
            + base64.b64encode(b"my-super-secret-jwt-signing-key-1234").decode()
        },
        {"API_PASSWORD_PEPPER": base64.b64encode(b"\x00" * 48).decode()},
        {"API_JWT_KEYS": "k1:not base64!!"},
        {"API_JWT_KEYS": "no-colon"},
        {"API_JWT_ACTIVE_KID": "missing"},
        {"API_BCRYPT_COST": "3"},
        {"API_ACCESS_TTL_S": "abc"},
    ],
)
def test_bad_or_placeholder_configuration_is_refused(overrides: dict[str, str]) -> None:
    """Missing, short, human-typed or malformed secrets (and bad numbers) raise SettingsError."""
    with pytest.raises(SettingsError):
        ApiSettings.from_env(env_with(**overrides))


def test_the_wsgi_module_refuses_to_load_with_a_placeholder_secret() -> None:
    """Importing api.wsgi (what a gunicorn worker does) fails with a clear message."""
    env = env_with(API_PASSWORD_PEPPER="changeme")
    result = subprocess.run(
        [sys.executable, "-c", "import api.wsgi"],
        env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": "."},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "API_PASSWORD_PEPPER" in result.stderr
    assert "changeme" not in result.stderr.replace("API_PASSWORD_PEPPER", "")


def test_hash_niceness_defaults_to_10_and_is_bounded() -> None:
    """Hashing threads are niced by default; a nice value outside 0-19 is refused."""
    assert ApiSettings.from_env(env_with()).hash_niceness == 10
    assert ApiSettings.from_env(env_with(API_HASH_NICENESS="0")).hash_niceness == 0
    with pytest.raises(SettingsError):
        ApiSettings.from_env(env_with(API_HASH_NICENESS="20"))


def test_mail_settings_parse_and_hide_the_password() -> None:
    """SMTP_* and MAIL_OUTBOX_DIR fill MailSettings; the password never shows in its repr, and
    a bad flag names its variable."""
    s = MailSettings.from_env({"SMTP_HOST": "mx", "SMTP_PASSWORD": "s3cret", "SMTP_PORT": "2525"})
    assert (s.smtp_host, s.smtp_port, s.outbox_dir) == ("mx", 2525, "var/outbox")
    assert "s3cret" not in repr(s)
    with pytest.raises(SettingsError, match="SMTP_STARTTLS='maybe': must be 0 or 1"):
        MailSettings.from_env({"SMTP_STARTTLS": "maybe"})
