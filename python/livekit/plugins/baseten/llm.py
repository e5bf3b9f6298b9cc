# SPDX-License-Identifier: Apache-2.0

"""Baseten's Model APIs: OpenAI-compatible chat completions, through LiveKit's OpenAI plugin."""

from __future__ import annotations

import os
from typing import Any

import httpx2 as httpx
import openai
from livekit.agents import llm
from livekit.agents.llm import ChatContext, ToolChoice
from livekit.agents.llm import utils as llm_utils
from livekit.agents.llm._provider_format.utils import convert_mid_conversation_instructions
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)
from livekit.agents.utils import is_given
from livekit.plugins.openai import LLM as OpenAILLM
from livekit.plugins.openai import LLMStream
from openai.types import ReasoningEffort
from openai.types.chat import completion_create_params

from .models import LLMModels

BASE_URL = "https://inference.baseten.co/v1"
# The existing plugin's default, Llama 4 Maverick, is no longer in Baseten's catalogue.
DEFAULT_MODEL = "openai/gpt-oss-120b"
# Models whose chat template only takes a leading system message.
_INLINE_INSTRUCTIONS_MODELS = frozenset({"qwen/qwen3.8-27b"})


class LLM(OpenAILLM):
    def __init__(
        self,
        *,
        model: str | LLMModels = DEFAULT_MODEL,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        user: NotGivenOr[str] = NOT_GIVEN,
        safety_identifier: NotGivenOr[str] = NOT_GIVEN,
        prompt_cache_key: NotGivenOr[str] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        top_p: NotGivenOr[float] = NOT_GIVEN,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        reasoning_effort: NotGivenOr[ReasoningEffort] = NOT_GIVEN,
        base_url: NotGivenOr[str] = BASE_URL,
        client: openai.AsyncClient | None = None,
        timeout: httpx.Timeout | None = None,
        inline_mid_conversation_instructions: NotGivenOr[bool] = NOT_GIVEN,
    ) -> None:
        """Baseten Model APIs (OpenAI-compatible chat completions).

        Args:
            model: a Baseten model id (see `LLMModels`; any other id is passed through).
                Defaults to ``openai/gpt-oss-120b``.
            api_key: Baseten API key; defaults to ``BASETEN_API_KEY``. Sent as
                ``Authorization: Bearer``.
            reasoning_effort: defaults to ``"low"`` for ``openai/gpt-oss-120b`` (voice wants
                short latency), unset for other models.
            base_url: ``https://inference.baseten.co/v1``, or a dedicated deployment's
                ``https://model-{id}.api.baseten.co/environments/production/sync/v1``.
            inline_mid_conversation_instructions: rewrite system messages that come after the
                conversation started (e.g. ``generate_reply(instructions=...)``) as
                ``<instructions>``-wrapped user messages, for chat templates that accept only
                a leading system message. Defaults to True only for ``Qwen/Qwen3.8-27B``.

            The other arguments are the OpenAI plugin's.
        """
        key = api_key if is_given(api_key) else os.environ.get("BASETEN_API_KEY", "")
        if not key:
            raise ValueError(
                "BASETEN_API_KEY is required, either as argument or set BASETEN_API_KEY "
                "environmental variable"
            )
        if not is_given(reasoning_effort) and model == "openai/gpt-oss-120b":
            reasoning_effort = "low"
        if not is_given(inline_mid_conversation_instructions):
            inline_mid_conversation_instructions = model.lower() in _INLINE_INSTRUCTIONS_MODELS
        self._inline_mid_conversation_instructions = inline_mid_conversation_instructions
        super().__init__(
            model=model,
            api_key=key,
            base_url=base_url,
            client=client,
            user=user,
            safety_identifier=safety_identifier,
            prompt_cache_key=prompt_cache_key,
            temperature=temperature,
            top_p=top_p,
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            timeout=timeout,
            reasoning_effort=reasoning_effort,
        )

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "Baseten"

    def __repr__(self) -> str:
        return f"baseten.LLM(model={self._opts.model!r})"

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        response_format: NotGivenOr[
            completion_create_params.ResponseFormat | type[llm_utils.ResponseFormatT]
        ] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> LLMStream:
        if self._inline_mid_conversation_instructions:
            # A new ChatContext: the caller's is left untouched.
            chat_ctx = convert_mid_conversation_instructions(chat_ctx)
        return super().chat(
            chat_ctx=chat_ctx,
            tools=tools,
            conn_options=conn_options,
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            response_format=response_format,
            extra_kwargs=extra_kwargs,
        )
