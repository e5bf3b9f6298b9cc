# SPDX-License-Identifier: Apache-2.0

"""OpenAI-compatible chat completions (`POST /v1/chat/completions`), streamed or not, with tool
calls, as Baseten's Model APIs speak them. The replies come from a small deterministic
responder: a stand-in for the protocol, not a language model.

- The reply to a user message is "You said: <the message>."
- If tools are offered and the user message names one, the reply is a call to that tool with
  empty arguments; the answer to a tool result is "The tool said: <result>."
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

logger = logging.getLogger("livekit.plugins.baseten.local")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(reply text, name of a tool to call or None) for a conversation."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"The tool said: {_text(last.get('content'))}.", None
    said = next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    for tool in tools:
        name = str(tool.get("function", {}).get("name", ""))
        if name and name in said:
            return "", name
    said = said.strip().rstrip(".!?")
    return (f"You said: {said}." if said else "I did not hear anything."), None


async def completions(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
        messages = list(body["messages"])
        model = str(body["model"])
    except (json.JSONDecodeError, KeyError, TypeError):
        error = {
            "message": "expected a JSON body with 'model' and 'messages'",
            "type": "invalid_request_error",
        }
        return web.json_response({"error": error}, status=400)
    text, tool = respond(messages, list(body.get("tools") or []))
    logger.info(
        "chat completion: model=%s, %d messages, stream=%s, %s",
        model,
        len(messages),
        bool(body.get("stream")),
        f"calls {tool}" if tool else f"{len(text.split())} words",
    )
    base = {
        "id": f"chatcmpl-{int(time.time() * 1000)}",
        "created": int(time.time()),
        "model": model,
    }
    usage = {"prompt_tokens": sum(len(_text(m.get("content")).split()) for m in messages),
             "completion_tokens": len(text.split()), "total_tokens": 0}  # fmt: skip
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    call = {"id": "call_local", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool:
            message["tool_calls"] = [call]
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}
        return web.json_response(
            {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {**base, "object": "chat.completion.chunk"}

    async def event(payload: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps({**chunk, **payload})}\n\n".encode())

    await event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for i, word in enumerate(text.split(" ") if text else []):
        await event(
            {"choices": [{"index": 0, "delta": {"content": word if i == 0 else f" {word}"}}]}
        )
    if tool:
        await event({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **call}]}}]})
    finish = "tool_calls" if tool else "stop"
    await event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    await event({"choices": [], "usage": usage})
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
