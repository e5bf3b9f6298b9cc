# SPDX-License-Identifier: Apache-2.0

"""An OpenAI-compatible chat-completions server on 127.0.0.1, as Baseten's Model APIs speak it:
`POST /v1/chat/completions`, streamed as server-sent events or as one JSON body, with tool
calls. The reply is scripted by the test."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .fake_tcp import serve


@dataclass
class Reply:
    content: list[str] = field(default_factory=lambda: ["Hel", "lo there", ", how can", " I help?"])
    tool_call: tuple[str, str] | None = None  # (name, JSON arguments), sent in two pieces
    status: int = 200
    error: str = "scripted failure"


class FakeOpenAIServer:
    def __init__(self) -> None:
        self.reply = Reply()
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> FakeOpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner, port = await serve(app)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        r = self.reply
        if r.status != 200:
            error = {"error": {"message": r.error, "type": "invalid_request_error"}}
            return web.json_response(error, status=r.status)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(r.content)}
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def event(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await event({"role": "assistant", "content": ""})
        for piece in r.content:
            await event({"content": piece})
        if r.tool_call is not None:
            name, arguments = r.tool_call
            half = len(arguments) // 2
            call = {"index": 0, "id": "call_1", "type": "function"}
            await event({"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]})
            await event({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]})
            await event({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]})
        await event({}, finish="tool_calls" if r.tool_call else "stop")
        usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
        await response.write(
            f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
        )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
