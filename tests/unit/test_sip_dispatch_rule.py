"""The SIP dispatch rule we ship (`deploy/livekit/sip-dispatch-rule.json`, for
``lk sip dispatch create``) is a valid `CreateSIPDispatchRuleRequest` naming the hold agent."""

import pytest
from google.protobuf import json_format
from livekit.protocol import sip

from core_voice_cli.stack import WORKER_AGENT_NAME
from core_voice_contracts.room import HOLD_AGENT_NAME
from tests.harness.repo import repo_path

pytestmark = pytest.mark.unit


def test_the_shipped_sip_dispatch_rule_names_the_hold_agent_in_its_room_config() -> None:
    text = (repo_path() / "deploy/livekit/sip-dispatch-rule.json").read_text()
    request = json_format.Parse(text, sip.CreateSIPDispatchRuleRequest())  # strict: no typos
    rule = request.dispatch_rule
    assert [a.agent_name for a in rule.room_config.agents] == [HOLD_AGENT_NAME]
    # Not the pool itself: the dispatcher routes the room (dialed number -> agent or
    # campaign) and dispatches the pool with the routed job, as for any other room.
    assert WORKER_AGENT_NAME not in {a.agent_name for a in rule.room_config.agents}
    # One room per caller, so each call is its own job.
    assert rule.rule.WhichOneof("rule") == "dispatch_rule_individual"
    # LiveKit SIP omits sip.trunkPhoneNumber (the dialed number the dispatcher routes on)
    # from the caller's attributes when the rule hides phone numbers.
    assert not rule.hide_phone_number
