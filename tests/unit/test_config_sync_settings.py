"""config_sync settings: env names, required tokens, secrets kept out of reprs and logs."""

import json
import logging
from pathlib import Path

import pytest

from core_voice_config_sync.errors import SettingsError
from core_voice_config_sync.settings import Settings, load_settings
from core_voice_contracts.logs import JsonFormatter

pytestmark = pytest.mark.unit

ADMIN = "admin-secret-canary-1234-0f9e8d7c6b5a"
RUNTIME = "runtime-secret-canary-5678-a1b2c3d4e5f6"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NATS_URL",
        "CONFIG_SYNC_NATS_URL",
        "CONFIG_SYNC_ADMIN_TOKEN",
        "CONFIG_SYNC_RUNTIME_TOKEN",
        "CONFIG_SYNC_DATABASE_URL",
        "CONFIG_SYNC_HTTP_PORT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_missing_tokens_are_named_by_their_env_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "CONFIG_SYNC_ADMIN_TOKEN is required" in str(caught.value)
    assert "CONFIG_SYNC_RUNTIME_TOKEN is required" in str(caught.value)


def test_empty_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", "")
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", RUNTIME)
    with pytest.raises(SettingsError, match="CONFIG_SYNC_ADMIN_TOKEN must be at least 32"):
        load_settings()


@pytest.mark.parametrize("variable", ["CONFIG_SYNC_ADMIN_TOKEN", "CONFIG_SYNC_RUNTIME_TOKEN"])
def test_a_short_bootstrap_token_is_refused_by_name_without_its_value(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", RUNTIME)
    short = "short-canary-" + "x" * 18  # 31 characters
    monkeypatch.setenv(variable, short)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == f"{variable} must be at least 32 characters"
    assert "canary" not in str(caught.value)
    monkeypatch.setenv(variable, short + "x")  # 32 is enough
    assert load_settings()


def test_the_admin_token_must_differ_from_the_runtime_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", ADMIN)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        "CONFIG_SYNC_RUNTIME_TOKEN must differ from CONFIG_SYNC_ADMIN_TOKEN"
    )
    assert ADMIN not in str(caught.value) and "canary" not in repr(caught.value)


def test_bad_value_is_named_but_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", RUNTIME)
    monkeypatch.setenv("CONFIG_SYNC_HTTP_PORT", "not-a-port-canary")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "CONFIG_SYNC_HTTP_PORT" in str(caught.value)
    assert "canary" not in str(caught.value)


def test_environment_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", RUNTIME)
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.1:4222")
    settings = load_settings()
    assert settings.nats_url == "nats://10.0.0.1:4222"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/.data/config_sync.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8081)
    assert settings.default_tenant == "default"
    assert settings.max_body_bytes == 64 * 1024
    assert settings.admin_token.get_secret_value() == ADMIN


def test_explicit_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", RUNTIME)
    monkeypatch.setenv("CONFIG_SYNC_HTTP_PORT", "9000")
    monkeypatch.setenv("NATS_URL", "nats://from-env:4222")
    settings = load_settings(http_port=9100, nats_url="nats://explicit:4222")
    assert (settings.http_port, settings.nats_url) == (9100, "nats://explicit:4222")


def test_tokens_never_appear_in_reprs_or_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_SYNC_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CONFIG_SYNC_RUNTIME_TOKEN", RUNTIME)
    settings = load_settings()
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "settings", None, None)
    record.settings = settings
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        JsonFormatter("config_sync").format(record),
    ]
    for text in shown:
        assert ADMIN not in text
        assert RUNTIME not in text


def test_json_log_lines_carry_extra_fields() -> None:
    logger = logging.getLogger("cs-test")
    record = logger.makeRecord(
        "cs-test", logging.INFO, __file__, 1, "config_sync ready", (), None,
        extra={"host": "127.0.0.1", "port": 8081},
    )  # fmt: skip
    line = json.loads(JsonFormatter("config_sync").format(record))
    assert (line["msg"], line["host"], line["port"], line["level"]) == (
        "config_sync ready",
        "127.0.0.1",
        8081,
        "info",
    )


def test_settings_document_their_env_variables() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        # The NATS login is the stack-wide NATS_* (the names the `nats` CLI reads too).
        expected = name.upper() if name.startswith("nats_") else f"CONFIG_SYNC_{name.upper()}"
        assert expected in field.description, name
