# SPDX-License-Identifier: Apache-2.0

"""baseten.LLM against a local OpenAI-compatible server, and the LLM -> TTS chain a voice
agent runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit.agents import APIConnectOptions, APIStatusError, llm
from livekit.plugins import baseten

from .fake_openai import FakeOpenAIServer, Reply
from .fake_orpheus import FakeOrpheusServer
from .test_tts import assert_spoken

KEY = "sk-test-llm-0123456789"
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    s = await FakeOpenAIServer().start()
    yield s
    await s.close()


def chat_ctx(*turns: tuple[str, str]) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    for role, text in turns:
        ctx.add_message(role=role, content=text)  # type: ignore[arg-type]
    return ctx


async def reply_text(stream: llm.LLMStream) -> tuple[str, list[llm.FunctionToolCall]]:
    text, calls = "", []
    async with stream:
        async for chunk in stream:
            if chunk.delta is not None:
                text += chunk.delta.content or ""
                calls += chunk.delta.tool_calls or []
    return text, calls


async def test_streaming_chat_request_and_reply(server: FakeOpenAIServer) -> None:
    model = baseten.LLM(api_key=KEY, base_url=server.base_url)
    assert (model.model, model.provider) == ("openai/gpt-oss-120b", "Baseten")
    ctx = chat_ctx(("system", "Be brief."), ("user", "Hi!"))
    text, calls = await asyncio.wait_for(reply_text(model.chat(chat_ctx=ctx)), 10)
    assert (text, calls) == ("Hello there, how can I help?", [])
    ((headers, body),) = server.requests
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "openai/gpt-oss-120b"
    assert body["stream"] is True
    assert body["reasoning_effort"] == "low"  # the default for gpt-oss-120b
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


async def test_other_models_get_no_reasoning_effort(server: FakeOpenAIServer) -> None:
    model = baseten.LLM(api_key=KEY, base_url=server.base_url, model="zai-org/GLM-5")
    await asyncio.wait_for(reply_text(model.chat(chat_ctx=chat_ctx(("user", "Hi")))), 10)
    assert "reasoning_effort" not in server.requests[0][1]


async def test_tool_calls_stream_back(server: FakeOpenAIServer) -> None:
    @llm.function_tool
    async def get_weather(city: str) -> str:
        """Look up the weather in a city."""
        return "sunny"

    server.reply = Reply(content=[], tool_call=("get_weather", json.dumps({"city": "Paris"})))
    model = baseten.LLM(api_key=KEY, base_url=server.base_url)
    stream = model.chat(chat_ctx=chat_ctx(("user", "Weather in Paris?")), tools=[get_weather])
    _, calls = await asyncio.wait_for(reply_text(stream), 10)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    tools = server.requests[0][1]["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather"]


async def test_errors_are_typed(server: FakeOpenAIServer) -> None:
    server.reply = Reply(status=401, error="invalid api key")
    model = baseten.LLM(api_key=KEY, base_url=server.base_url)
    with pytest.raises(APIStatusError) as info:
        await asyncio.wait_for(
            reply_text(model.chat(chat_ctx=chat_ctx(("user", "Hi")), conn_options=NO_RETRY)), 10
        )
    assert info.value.status_code == 401
    assert KEY not in str(info.value)


async def test_mid_conversation_instructions_are_inlined_for_qwen(server: FakeOpenAIServer) -> None:
    model = baseten.LLM(api_key=KEY, base_url=server.base_url, model="Qwen/Qwen3.8-27B")
    ctx = chat_ctx(("system", "Be brief."), ("user", "Hi"), ("system", "Now speak French."))
    await asyncio.wait_for(reply_text(model.chat(chat_ctx=ctx)), 10)
    roles = [m["role"] for m in server.requests[0][1]["messages"]]
    assert roles == ["system", "user", "user"]  # the late system message became a user turn
    last = ctx.items[2]  # the caller's context is untouched
    assert len(ctx.items) == 3 and isinstance(last, llm.ChatMessage) and last.role == "system"


def test_the_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    with pytest.raises(ValueError, match="BASETEN_API_KEY is required"):
        baseten.LLM()
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    assert KEY not in repr(baseten.LLM())


async def test_an_agent_turn_llm_stream_into_tts_stream(server: FakeOpenAIServer) -> None:
    """What AgentSession does with a reply: every LLM delta goes straight into a TTS stream."""
    orpheus = await FakeOrpheusServer().start()
    try:
        async with aiohttp.ClientSession() as http:
            voice = baseten.TTS(api_key=KEY, model_endpoint=orpheus.ws_url, http_session=http)
            model = baseten.LLM(api_key=KEY, base_url=server.base_url)
            speech = voice.stream()

            async def speak() -> bytes:
                return b"".join([ev.frame.data.tobytes() async for ev in speech])

            speaking = asyncio.create_task(speak())
            async with model.chat(chat_ctx=chat_ctx(("user", "Hi!"))) as reply:
                async for chunk in reply:
                    if chunk.delta and chunk.delta.content:
                        speech.push_text(chunk.delta.content)
            speech.end_input()
            audio = await asyncio.wait_for(speaking, 10)
            await speech.aclose()
        words = "Hello there, how can I help?".split()
        assert " ".join(orpheus.sessions[0].texts[:-1]).split() == words
        assert_spoken(audio, words)
    finally:
        await orpheus.close()
