"""Fuzzing the admin API from its own OpenAPI document (schemathesis): whatever it sends,
config_sync answers 2xx/4xx, never 5xx. Bounded (``MAX_EXAMPLES`` per operation), on
both backends: PostgreSQL is the strict one (NUL bytes, integer ranges, lengths).
"""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok

from core_voice_cli.servers import NatsServer
from core_voice_contracts.permissions import Role
from tests.harness.config_sync import ADMIN_TOKEN, ConfigSync, keyring, start_config_sync
from tests.harness.config_sync_api import auth

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def fuzzed(
    nats_server: NatsServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfigSync]:
    base = tmp_path_factory.mktemp("config_sync_fuzz")
    running = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=database_url,
        log_dir=base,
        encryption_keys=keyring("k1"),
        extra_env={"CONFIG_SYNC_LOG_LEVEL": "INFO"},
    )
    try:
        yield running
    finally:
        assert running.process.stop() == 0, running.process.log_tail()


def test_no_input_makes_a_server_error(fuzzed: ConfigSync) -> None:
    """Every operation, valid and schema-violating inputs, as the tenant's admin.

    Hypothesis drives each operation directly (not schemathesis' pytest plugin, which
    cannot take a per-backend parametrized fixture) and shrinks a failure to a minimal
    request, printed with a curl command to reproduce it.
    """
    schema = schemathesis.openapi.from_url(f"{fuzzed.base_url}/schema/openapi.json")
    headers = auth(ADMIN_TOKEN)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) >= 20

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case: Case[Any]) -> None:
                response = case.call(base_url=fuzzed.base_url, headers=headers, timeout=10)
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}\nreproduce: {case.as_curl_command()}"
                )

            try:
                no_server_error()
            except Unsatisfiable:  # nothing to get wrong (e.g. no parameters, no body)
                assert mode == GenerationMode.NEGATIVE, operation.label
    assert fuzzed.process.running()
