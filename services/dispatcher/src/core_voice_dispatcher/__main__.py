"""``python -m core_voice_dispatcher``: run the webhook endpoint and the dispatch consumer."""

import asyncio

from core_voice_contracts.logs import setup_logging
from core_voice_contracts.tracing import configure_tracing
from core_voice_dispatcher.app import main

if __name__ == "__main__":
    setup_logging("dispatcher")
    configure_tracing("dispatcher")
    asyncio.run(main())
