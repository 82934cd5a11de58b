"""``python -m core_voice_telemetry``: serve /metrics from the event streams."""

import asyncio

from core_voice_contracts.logs import setup_logging
from core_voice_contracts.tracing import configure_tracing
from core_voice_telemetry.app import main

if __name__ == "__main__":
    setup_logging("telemetry")
    configure_tracing("telemetry")
    asyncio.run(main())
