"""`AgentRecord`: one agent at one config version, and the two ways the API shows it."""

import datetime as dt
from dataclasses import dataclass

from core_voice_contracts.admin_api import AgentView
from core_voice_contracts.runtime_config import ProviderSpec, RuntimeConfig


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """What the repository returns: plain values, detached from any session."""

    id: str
    tenant_id: str
    name: str
    status: str
    version: int
    instructions: str
    greeting: str
    llm: ProviderSpec
    stt: ProviderSpec
    tts: ProviderSpec
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> AgentView:
        return AgentView(
            id=self.id,
            tenant_id=self.tenant_id,
            name=self.name,
            status=self.status,
            version=self.version,
            instructions=self.instructions,
            greeting=self.greeting,
            llm=self.llm,
            stt=self.stt,
            tts=self.tts,
            created_at=self.created_at.isoformat(),
            updated_at=self.updated_at.isoformat(),
        )

    def runtime(self) -> RuntimeConfig:
        return RuntimeConfig(
            agent_id=self.id,
            tenant_id=self.tenant_id,
            version=self.version,
            name=self.name,
            instructions=self.instructions,
            greeting=self.greeting,
            llm=self.llm,
            stt=self.stt,
            tts=self.tts,
        )
