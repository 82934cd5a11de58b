"""`scripted` LLM: deterministic replies from rules in the agent config.

For canary / synthetic-monitoring calls and regulated scripts, where the same words must
always get the same reply, with no network and no key. A rule matches when every word of
its ``match`` is among the words of the caller's last turn (case and punctuation
ignored); the first matching rule wins, else ``fallback``. Tools are never called.

    >>> from core_voice_contracts.runtime_config import ScriptRule
    >>> options = ScriptedOptions(rules=[ScriptRule(match="opening hours", reply="9 to 5.")])
    >>> ScriptedLLM(options).reply_for("What are your OPENING hours?")
    '9 to 5.'
"""

from typing import Any, Never

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    llm,
    utils,
)

from core_voice_contracts.runtime_config import (
    SCRIPTED,
    ProviderSpec,
    ScriptedOptions,
)
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.keys import KeySource
from core_voice_worker.providers.registry import LLM_PROVIDERS, decode_options
from core_voice_worker.speech import normalize


class ScriptedLLM(llm.LLM[Never]):
    def __init__(self, options: ScriptedOptions) -> None:
        super().__init__()
        self._fallback = options.fallback
        self._rules: list[tuple[frozenset[str], str]] = []
        for rule in options.rules:
            words = frozenset(normalize(rule.match).split())
            if not words:
                # it would match every turn and shadow all the rules after it
                raise ProviderConfigError(f"scripted rule match {rule.match!r} has no words")
            self._rules.append((words, rule.reply))

    @property
    def model(self) -> str:
        return SCRIPTED

    @property
    def provider(self) -> str:
        return SCRIPTED

    def reply_for(self, text: str) -> str:
        heard = set(normalize(text).split())
        for words, reply in self._rules:
            if words <= heard:
                return reply
        return self._fallback

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> "ScriptedLLMStream":
        return ScriptedLLMStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class ScriptedLLMStream(llm.LLMStream):
    """One content chunk, then usage in words (the only "tokens" a script has)."""

    def __init__(
        self,
        scripted: ScriptedLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(scripted, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._scripted = scripted

    async def _run(self) -> None:
        heard = last_user_text(self._chat_ctx)
        reply = self._scripted.reply_for(heard)
        request_id = utils.shortuuid("scripted_")
        self._event_ch.send_nowait(
            llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=reply))
        )
        prompt_words, reply_words = len(heard.split()), len(reply.split())
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=request_id,
                usage=llm.CompletionUsage(
                    prompt_tokens=prompt_words,
                    completion_tokens=reply_words,
                    total_tokens=prompt_words + reply_words,
                ),
            )
        )


def last_user_text(chat_ctx: llm.ChatContext) -> str:
    for message in reversed(chat_ctx.messages()):
        if message.role == "user":
            return message.text_content or ""
    return ""


@LLM_PROVIDERS.register(SCRIPTED)
def scripted_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    return ScriptedLLM(decode_options(spec, "llm", ScriptedOptions))
