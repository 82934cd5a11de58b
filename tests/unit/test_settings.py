"""Every service's settings: one loader, one way to document a field, one exit on bad input."""

import json
import logging
import os
import subprocess
import sys

import pytest
from livekit.agents.cli.log import JsonFormatter as LiveKitJsonFormatter
from pydantic_settings import BaseSettings

from core_voice_config_sync.settings import Settings as ConfigSyncSettings
from core_voice_contracts.logs import JsonFormatter
from core_voice_contracts.settings import (
    EXIT_SETTINGS,
    SettingsError,
    env_names,
    load_settings,
    settings_or_exit,
)
from core_voice_dispatcher.settings import DispatcherSettings
from core_voice_telemetry.settings import TelemetrySettings
from core_voice_worker.server import log_as_every_service
from core_voice_worker.settings import WorkerSettings

pytestmark = pytest.mark.unit

SETTINGS = [ConfigSyncSettings, DispatcherSettings, WorkerSettings, TelemetrySettings]
CANARY = "canary-value-0042"
OWN_PREFIXES = ("CONFIG_SYNC_", "DISPATCHER_", "WORKER_", "TELEMETRY_", "LIVEKIT_", "NATS_")


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda cls: cls.__name__)
def test_every_field_documents_its_env_variable(cls: type[BaseSettings]) -> None:
    for field, name in env_names(cls).items():
        description = cls.model_fields[field].description or ""
        assert description.startswith(name), (field, name)


def test_a_bad_environment_is_named_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.setenv("LIVEKIT_API_SECRET", CANARY)
    monkeypatch.setenv("DISPATCHER_HTTP_PORT", CANARY)
    with pytest.raises(SettingsError) as caught:
        load_settings(DispatcherSettings)
    message = str(caught.value)
    assert message.startswith("DISPATCHER_HTTP_PORT ")
    assert "LIVEKIT_API_KEY is required" in message
    assert CANARY not in message
    with pytest.raises(KeyError, match="LIVEKIT_API_KEY is required"):
        load_settings(DispatcherSettings, {"http_port": 1}, error=KeyError)
    explicit = load_settings(DispatcherSettings, {"http_port": 1, "LIVEKIT_API_KEY": "k"})
    assert (explicit.http_port, explicit.livekit_api_key) == (1, "k")


def test_an_entry_point_exits_2_with_one_log_record(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TELEMETRY_MAX_AGENTS", "0")
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as caught:
        settings_or_exit(TelemetrySettings)
    assert caught.value.code == EXIT_SETTINGS
    (record,) = caplog.records
    assert record.getMessage() == "invalid configuration"
    assert record.problems.startswith("TELEMETRY_MAX_AGENTS ")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "variable", "required"),
    [
        ("core_voice_config_sync", "CONFIG_SYNC_HTTP_PORT", "CONFIG_SYNC_ADMIN_TOKEN"),
        ("core_voice_dispatcher", "DISPATCHER_HTTP_PORT", "LIVEKIT_API_KEY"),
        ("core_voice_worker", "WORKER_HEALTH_PORT", "LIVEKIT_API_KEY"),
        ("core_voice_telemetry", "TELEMETRY_HTTP_PORT", None),
    ],
)
def test_each_service_stops_on_a_bad_setting_with_one_json_line(
    module: str, variable: str, required: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env[variable] = CANARY
    done = subprocess.run(
        [sys.executable, "-m", module, *(["start"] if module == "core_voice_worker" else [])],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_SETTINGS, done.stderr[-2000:]
    (line,) = done.stderr.splitlines()
    logged = json.loads(line)
    assert logged["msg"] == "invalid configuration"
    assert variable in logged["problems"]
    assert required is None or f"{required} is required" in logged["problems"]
    assert CANARY not in done.stdout + done.stderr


def test_the_worker_swaps_livekits_json_handler_for_ours() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    livekit = logging.StreamHandler()
    livekit.setFormatter(LiveKitJsonFormatter())
    try:
        root.handlers[:] = [livekit]
        root.setLevel(logging.WARNING)
        log_as_every_service()
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.formatter.service == "voice_worker"
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
