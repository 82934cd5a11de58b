"""Everything that crosses a Core Voice process boundary.

Message types (`events`), subject names (`subjects`), JetStream stream definitions
(`streams`), the runtime-config shape (`runtime_config`) and the codecs that turn them
into bytes (`codec`). Services import from here and never define a wire type of their own.
"""

from core_voice_contracts import codec, events, runtime_config, streams, subjects

__all__ = ["codec", "events", "runtime_config", "streams", "subjects"]
