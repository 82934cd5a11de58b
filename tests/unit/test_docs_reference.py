"""docs/configuration.md names every environment variable the settings objects read, and
every value of the Helm chart (once deploy/helm/core-voice/values.yaml exists).

The names come from the settings classes themselves (pydantic-settings: a field's
validation alias, each of its `AliasChoices`, else ``env_prefix`` + the field name), not
from a list kept by hand, so a new setting without its line in the reference fails here.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from core_voice_config_sync.settings import Settings as ConfigSyncSettings
from core_voice_config_sync.settings import StoreSettings
from core_voice_contracts.settings import ServiceSettings
from core_voice_dispatcher.settings import DispatcherSettings
from core_voice_telemetry.settings import TelemetrySettings
from core_voice_worker.settings import WorkerSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
VALUES = ROOT / "deploy" / "helm" / "core-voice" / "values.yaml"

SETTINGS: tuple[type[BaseSettings], ...] = (
    ServiceSettings,
    StoreSettings,
    ConfigSyncSettings,
    DispatcherSettings,
    WorkerSettings,
    TelemetrySettings,
)
"""Every settings object a service reads its environment through."""
OTHER_VARIABLES = ("LOG_LEVEL", "POD_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED")
"""Read outside a settings object (logs.py, the worker id's default, tracing.py)."""


def env_variables(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable ``cls`` reads a field from."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        else:
            names.add((prefix + field).upper())
    return names


def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """``a.b.c`` for every leaf of a YAML mapping (a list or an empty map is a leaf)."""
    if isinstance(node, dict) and node:
        paths: list[str] = []
        for key, value in node.items():
            paths += leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [prefix] if prefix else []


def documented(name: str, text: str) -> bool:
    """``name`` appears as a word of its own (not as the prefix of a longer one)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text) is not None


def test_the_names_are_derived_from_the_classes() -> None:
    # The derivation itself: prefixes, plain aliases and alias choices all count.
    assert {"NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_CA"} <= env_variables(ServiceSettings)
    assert {"NATS_URL", "CONFIG_SYNC_NATS_URL", "CONFIG_SYNC_ADMIN_TOKEN"} <= env_variables(
        ConfigSyncSettings
    )
    assert {"LIVEKIT_API_KEY", "DISPATCHER_ACK_WAIT_S"} <= env_variables(DispatcherSettings)
    assert {"WORKER_AGENT_NAME", "WORKER_WORKER_ID"} <= env_variables(WorkerSettings)
    assert "TELEMETRY_HTTP_PORT" in env_variables(TelemetrySettings)


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda cls: cls.__name__)
def test_every_env_variable_is_in_the_reference(cls: type[BaseSettings]) -> None:
    text = REFERENCE.read_text()
    missing = sorted(name for name in env_variables(cls) if not documented(name, text))
    assert not missing, f"{REFERENCE.name} does not document {missing} ({cls.__name__})"


def test_variables_read_outside_the_settings_are_in_the_reference() -> None:
    text = REFERENCE.read_text()
    missing = [name for name in OTHER_VARIABLES if not documented(name, text)]
    assert not missing, f"{REFERENCE.name} does not document {missing}"


def test_leaf_paths() -> None:
    values = {"a": {"b": 1, "c": {"d": [1]}, "e": {}}, "f": None}
    assert leaf_paths(values) == ["a.b", "a.c.d", "a.e", "f"]


@pytest.mark.skipif(not VALUES.exists(), reason="the Helm chart has no values.yaml yet")
def test_every_chart_value_is_in_the_reference() -> None:
    text = REFERENCE.read_text()
    values = yaml.safe_load(VALUES.read_text()) or {}
    missing = [path for path in leaf_paths(values) if not documented(path, text)]
    assert not missing, (
        f"{REFERENCE.name} does not document the chart values {missing}: run "
        ".venv/bin/python scripts/chart_values_table.py --write"
    )
