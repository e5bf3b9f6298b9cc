"""The Baseten Whisper server the load harness talks to, in a process of its own.

Realistic message shapes at a fixed cadence, whatever the audio: a 12-word partial every
second of audio and a 40-word final with word timestamps every `--final-every` seconds, as
Baseten's server sends them. Lenient where the real server is strict (any frame size, the
existing plugin's unpadded last frame), so both plugins can be measured. Every transcript's
first word is `t<unix time>` of its sending, so clients can measure delivery latency.

    python benches/bench_server.py --port 8766 [--final-every 5]
"""

from __future__ import annotations

import argparse
import json
import time

from aiohttp import WSMsgType, web
from baseten_messages import transcription

FRAME_S = 0.032


def message(num: int, start: float, end: float, words: int, final: bool) -> str:
    # The first word carries the send time, for the clients' delivery latency.
    return transcription(
        num=num, start=start, end=end, words=words, final=final, first_word=f"t{time.time():.6f}"
    )


def make_app(final_every_s: float) -> web.Application:
    partial_frames = round(1.0 / FRAME_S)
    final_frames = round(final_every_s / FRAME_S)

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        frames = since = num = 0
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                frames += 1
                span = frames - since
                start, end = since * FRAME_S, frames * FRAME_S
                if span == final_frames:
                    await ws.send_str(message(num, start, end, 40, True))
                    num += 1
                    since = frames
                elif span % partial_frames == 0:
                    await ws.send_str(message(num, start, end, 12, False))
            elif msg.type == WSMsgType.TEXT:
                kind = json.loads(msg.data).get("type")
                if kind == "end_audio":
                    if frames > since:
                        await ws.send_str(message(num, since * FRAME_S, frames * FRAME_S, 40, True))
                    await ws.send_str(
                        json.dumps({"type": "end_audio", "body": {"status": "finished"}})
                    )
                elif kind == "health_check":
                    await ws.send_str(
                        json.dumps({"type": "health_check", "body": {"healthy": True}})
                    )
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--final-every", type=float, default=5.0)
    args = parser.parse_args()
    web.run_app(make_app(args.final_every), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
