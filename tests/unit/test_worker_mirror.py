"""The pool's config mirror: the rules a starting call's config follows.

config_sync is replaced here by a function answering from a table (the mirror takes
any ``fetch``); the same rules against the real config_sync and NATS are in
tests/integration/test_worker_pool.py.
"""

import asyncio

import pytest

from core_voice_contracts.events import (
    CallFailure,
    ChangeKind,
    ConfigChanged,
)
from core_voice_contracts.runtime_config import RuntimeConfig
from core_voice_worker.mirror import CONFIRM_WAIT_S, ConfigMirror, ConfigRefusedError
from tests.fakes.config_sync_table import ConfigSyncTable

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.versions: list[int] = []
        self.gone: list[CallFailure] = []

    def on_config(self, config: RuntimeConfig, stale: bool) -> None:
        self.versions.append(config.version)

    def on_gone(self, agent_id: str, reason: CallFailure) -> None:
        self.gone.append(reason)


def changed(agent_id: str, version: int, kind: ChangeKind = ChangeKind.UPDATED) -> ConfigChanged:
    return ConfigChanged(agent_id=agent_id, tenant_id="t1", version=version, kind=kind)


@pytest.fixture
def table() -> ConfigSyncTable:
    return ConfigSyncTable()


@pytest.fixture
def mirror(table: ConfigSyncTable) -> ConfigMirror:
    m = ConfigMirror(table, timeout=0.5)
    m.reconciled()
    return m


async def test_a_prefetched_config_is_served_without_asking_again(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 3)
    mirror.prefetch("a1", None)
    await mirror.settle()
    asked = len(table.asked)
    entry = await mirror.config_for_call("a1", None)
    assert entry.config.version == 3 and not entry.stale
    assert len(table.asked) == asked
    assert mirror.stats.hits == 1


async def test_an_announced_version_is_fetched_at_once_and_pushed_to_watchers(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    watcher = Recorder()
    mirror.watch(("a1", None), watcher)
    table.put("a1", 2, "new")
    mirror.announce(changed("a1", 2))
    await mirror.settle()
    assert watcher.versions == [2]
    assert table.asked[-1] == ("a1", None, 2)  # asked for at least the announced version
    assert (await mirror.config_for_call("a1", None)).config.instructions == "new"


async def test_a_lagging_answer_never_takes_the_mirror_backwards(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 5)
    await mirror.config_for_call("a1", None)
    table.put("a1", 4)  # a replica behind the one that answered first
    mirror.prefetch("a1", None)
    await mirror.settle()
    assert (await mirror.config_for_call("a1", None)).config.version == 5


async def test_a_call_never_starts_older_than_the_announced_version(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    table.down = True
    mirror.announce(changed("a1", 2))
    with pytest.raises(ConfigRefusedError) as refused:
        await mirror.config_for_call("a1", None)
    assert refused.value.error == CallFailure.CONFIG_OUTDATED
    assert refused.value.retryable
    assert "version 2" in refused.value.detail and "version 1" in refused.value.detail


async def test_config_sync_down_serves_the_last_known_good_version_marked_stale(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    stale: list[str] = []
    mirror.on_stale = lambda key, error: stale.append(f"{key[0]}:{error}")
    table.down = True
    mirror.prefetch("a1", None)  # the next job's confirmation fails
    await mirror.settle()
    entry = await mirror.config_for_call("a1", None)
    assert entry.config.version == 1 and entry.stale
    assert stale == ["a1:config_sync_unavailable"]
    assert mirror.stale_count() == 1 and mirror.stats.stale_served == 1

    table.down = False
    mirror.prefetch("a1", None)
    await mirror.settle()
    assert not (await mirror.config_for_call("a1", None)).stale


async def test_without_any_config_a_call_is_refused_with_the_reason(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    with pytest.raises(ConfigRefusedError) as unknown:
        await mirror.config_for_call("nobody", None)
    assert unknown.value.error == CallFailure.UNKNOWN_AGENT
    table.down = True
    table.put("a2", 1)
    with pytest.raises(ConfigRefusedError) as down:
        await mirror.config_for_call("a2", None)
    assert down.value.error == CallFailure.CONFIG_UNAVAILABLE and down.value.retryable


async def test_a_frozen_config_sync_is_waited_for_only_up_to_the_timeout(
    table: ConfigSyncTable,
) -> None:
    mirror = ConfigMirror(table, timeout=0.1)
    table.gate = asyncio.Event()  # never answers
    table.put("a1", 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConfigRefusedError) as refused:
        await mirror.config_for_call("a1", None)
    assert refused.value.error == CallFailure.CONFIG_UNAVAILABLE
    assert loop.time() - started < 0.5
    mirror.cancel()


async def test_a_deleted_agent_is_refused_at_once_and_its_calls_are_told(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    watcher = Recorder()
    mirror.watch(("a1", None), watcher)
    mirror.announce(changed("a1", 2, ChangeKind.DELETED))
    assert watcher.gone == [CallFailure.AGENT_DELETED]
    asked = len(table.asked)
    with pytest.raises(ConfigRefusedError) as refused:
        await mirror.config_for_call("a1", None)
    assert refused.value.error == CallFailure.AGENT_DELETED
    assert len(table.asked) == asked  # no round trip to learn it


async def test_a_disabled_agent_is_refused_until_it_is_enabled_again(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    table.disabled.add("a1")
    mirror.routing_changed("a1")
    await mirror.settle()
    with pytest.raises(ConfigRefusedError) as refused:
        await mirror.config_for_call("a1", None)
    assert refused.value.error == CallFailure.AGENT_DISABLED
    table.disabled.clear()
    mirror.routing_changed("a1")
    assert (await mirror.config_for_call("a1", None)).config.version == 1


async def test_a_burst_of_jobs_for_one_agent_asks_config_sync_once(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    table.gate = asyncio.Event()
    calls = [asyncio.create_task(mirror.config_for_call("a1", None)) for _ in range(50)]
    for _ in range(50):
        mirror.prefetch("a1", None)
    await asyncio.sleep(0)
    table.gate.set()
    entries = await asyncio.gather(*calls)
    assert {e.config.version for e in entries} == {1}
    assert len(table.asked) == 1


async def test_while_the_feed_is_down_everything_is_stale_until_reconciled(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    table.put("a2", 1)
    await mirror.config_for_call("a1", None)
    await mirror.config_for_call("a2", None)
    mirror.set_live(False)
    assert mirror.stale_count() == 2
    table.put("a2", 2)
    mirror.announce(changed("a2", 2))  # replayed on reconnect
    await mirror.settle()
    mirror.reconciled()
    assert mirror.stale_count() == 0
    assert (await mirror.config_for_call("a2", None)).config.version == 2


async def test_campaign_configs_are_held_apart_and_all_refreshed(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    await mirror.config_for_call("a1", "c1")
    table.put("a1", 2)
    mirror.announce(
        ConfigChanged(
            agent_id="a1", tenant_id="t1", version=2, kind=ChangeKind.CAMPAIGN, campaign_id="c1"
        )
    )
    await mirror.settle()
    assert mirror.peek("a1", None) is not None and mirror.peek("a1", None).config.version == 2  # type: ignore[union-attr]
    assert mirror.peek("a1", "c1") is not None and mirror.peek("a1", "c1").config.version == 2  # type: ignore[union-attr]


async def test_the_mirror_is_bounded(table: ConfigSyncTable) -> None:
    mirror = ConfigMirror(table, timeout=0.5, max_entries=3)
    for i in range(5):
        table.put(f"a{i}", 1)
        await mirror.config_for_call(f"a{i}", None)
    assert len(mirror) == 3
    assert mirror.peek("a0", None) is None and mirror.peek("a4", None) is not None


async def test_a_call_does_not_wait_for_a_confirmation_config_sync_never_gives(
    mirror: ConfigMirror, table: ConfigSyncTable
) -> None:
    table.put("a1", 1)
    await mirror.config_for_call("a1", None)
    table.gate = asyncio.Event()  # frozen from now on
    mirror.prefetch("a1", None)
    fresh = await mirror.config_for_call("a1", None)
    assert not fresh.stale, "a confirmation just asked for is not overdue yet"
    await asyncio.sleep(CONFIRM_WAIT_S + 0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    entry = await mirror.config_for_call("a1", None)
    assert entry.stale and entry.config.version == 1
    assert loop.time() - started < 0.01, "served at once"
    mirror.cancel()
