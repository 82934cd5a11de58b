"""The demo agent `corevoice up` seeds: offline providers only, no API keys."""

import httpx
import msgspec

from core_voice_contracts.admin_api import AgentCreate, ProviderChoice

DEMO_AGENT_ID = "demo"

DEMO_RULES = [
    {"match": "opening hours", "reply": "We are open from nine to five, Monday to Friday."},
    {"match": "book appointment", "reply": "Sure. What day would you like to come in?"},
    {"match": "goodbye", "reply": "Thank you for calling. Goodbye!"},
]

DEMO_CALLER_PHRASES = [
    "what are your opening hours",
    "i would like to book an appointment",
    "goodbye",
]


def demo_agent() -> AgentCreate:
    return AgentCreate(
        id=DEMO_AGENT_ID,
        name="Demo receptionist",
        instructions="You are the friendly receptionist of a small clinic.",
        greeting="Hello, thank you for calling the clinic. How can I help you today?",
        llm=ProviderChoice(
            provider="scripted",
            options={"rules": DEMO_RULES, "fallback": "Sorry, could you say that again?"},
        ),
        stt=ProviderChoice(provider="local", options={"phrases": DEMO_CALLER_PHRASES}),
        tts=ProviderChoice(provider="local", voice="en-us"),
    )


def seed_demo_agent(config_sync_url: str, admin_token: str) -> str:
    """Create the demo agent through config_sync's admin API unless it exists; return
    'created' or 'kept' (`corevoice up`, single machine or cluster)."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=config_sync_url, headers=headers, timeout=10) as client:
        if client.get(f"/api/v1/agents/{DEMO_AGENT_ID}").status_code == 200:
            return "kept"
        resp = client.post(
            "/api/v1/agents",
            content=msgspec.json.encode(demo_agent()),
            headers={"Content-Type": "application/json"},
        )
        resp.raise_for_status()
        return "created"
