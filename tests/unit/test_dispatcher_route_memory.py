"""What the dispatcher's route memory forgets on change events (`route_memory.apply`)."""

import pytest

from core_voice_contracts.events import ChangeKind, ConfigChanged, RoutingChanged
from core_voice_contracts.routing import RouteRequest, RouteResolved
from core_voice_dispatcher.route_memory import RouteMemory

pytestmark = pytest.mark.unit


def request(agent_id: str) -> RouteRequest:
    return RouteRequest(room_key=f"RM_{agent_id}", agent_id=agent_id)


def remembered(agent_id: str) -> RouteMemory:
    memory = RouteMemory(100, 300.0)
    memory.remember(request(agent_id), RouteResolved(agent_id=agent_id, tenant_id="t1"))
    assert memory.recall(request(agent_id)) is not None
    return memory


def changed(agent_id: str, kind: ChangeKind) -> ConfigChanged:
    return ConfigChanged(agent_id=agent_id, tenant_id="t1", version=1, kind=kind)


def test_the_creation_event_arriving_after_the_first_route_forgets_nothing() -> None:
    """The outbox publishes after the commit: the agent's first room can be routed (and
    remembered) before its `ConfigChanged(created)` reaches the dispatcher."""
    memory = remembered("a1")
    memory.apply(changed("a1", ChangeKind.CREATED))
    recalled = memory.recall(request("a1"))
    assert recalled is not None and recalled.answer.agent_id == "a1"


@pytest.mark.parametrize("kind", [ChangeKind.UPDATED, ChangeKind.DELETED, ChangeKind.CAMPAIGN])
def test_any_other_change_of_the_agent_forgets_it(kind: ChangeKind) -> None:
    memory = remembered("a1")
    memory.remember(request("a2"), RouteResolved(agent_id="a2", tenant_id="t1"))
    memory.apply(changed("a1", kind))
    assert memory.recall(request("a1")) is None
    assert memory.recall(request("a2")) is not None  # another agent is kept


def test_a_routing_change_forgets_what_it_names_and_unconfirms_the_tenant() -> None:
    memory = remembered("a1")
    memory.remember(request("a2"), RouteResolved(agent_id="a2", tenant_id="t1"))
    memory.apply(RoutingChanged(tenant_id="t1", agent_id="a1"))
    assert memory.recall(request("a1")) is None
    kept = memory.recall(request("a2"))
    assert kept is not None and not kept.confirmed
