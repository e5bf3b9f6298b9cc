# SPDX-License-Identifier: Apache-2.0

"""The Baseten servers the load benchmarks talk to, in a process of their own.

`/ws`, Whisper streaming STT: realistic message shapes at a fixed cadence, whatever the audio:
a 12-word partial every second of audio and a 40-word final with word timestamps every
`--final-every` seconds, as Baseten's server sends them. Lenient where the real server is
strict (any frame size, the existing plugin's unpadded last frame), so both plugins can be
measured. Every transcript's first word is `t<unix time>` of its sending, so clients can
measure delivery latency.

`/qwen3`, Qwen3-ASR streaming STT: the same transcripts at the same cadence, counted in
seconds of base64 audio from `input_audio_buffer.append` text messages of any length, with
the language by name ("English"); each `input_audio_buffer.commit` is answered by a final
marked `is_end_of_audio_flush`.

`/tts`, Orpheus streaming TTS (the `orpheus-3b-websockets` protocol): a JSON metadata message
(`buffer_size` is read, default 10), then text messages, each split on whitespace into words,
then the literal text `__END__`. Speech for the words gathered so far starts once
`buffer_size` words are waiting or a word ends a sentence (`.`, `!`, `?`), as the real server
generates, and at `__END__`; it goes out as binary messages of 24 kHz mono s16le, 2048
samples each (as Orpheus sends), at real time (`--tts-speed` times real time; 0 = as fast as
possible), exactly `tts_samples_per_word(--words-ms)` samples per word, and the server then
closes with 1000.
The audio is a tone that never crosses zero, so a client can count exactly the samples served
(LiveKit's AudioEmitter appends zeros at the end of a segment). The query string may override
the flags per connection: `/tts?words_ms=250&speed=0`.

`/qwen3-tts`, Qwen3-TTS streaming: `session.config`, `input.text`s, `input.done`; each
sentence then goes out as `audio.start`, the same tone in the same chunks at the same pace, and
`audio.done` with a word alignment when the config asks for one; then `session.done`. The socket
stays open for the next synthesis; an empty `input.done` is answered with `session.done` alone.

    python benches/bench_server.py --port 8766 [--final-every 5] [--words-ms 300] \
        [--tts-speed 1] [--announce]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import time

from aiohttp import WSMsgType, web
from baseten_messages import transcription

FRAME_S = 0.032

TTS_SAMPLE_RATE = 24000
TTS_CHUNK_SAMPLES = 2048  # ~85 ms: what Orpheus' WebSocket typically sends per message
TTS_END_OF_INPUT = "__END__"
TTS_SENTENCE_ENDS = (".", "!", "?")
# 2000 + 1500 sin(2 pi 200 t): in [500, 3500], never zero; 200 Hz is 4 periods per chunk, so
# the chunks join seamlessly.
TTS_CHUNK = b"".join(
    round(2000 + 1500 * math.sin(2 * math.pi * 200 * i / TTS_SAMPLE_RATE)).to_bytes(
        2, "little", signed=True
    )
    for i in range(TTS_CHUNK_SAMPLES)
)


def tts_samples_per_word(words_ms: float) -> int:
    """How many samples `/tts` speaks per word (what a client should expect)."""
    return round(words_ms * TTS_SAMPLE_RATE / 1000)


def message(num: int, start: float, end: float, words: int, final: bool) -> str:
    # The first word carries the send time, for the clients' delivery latency.
    return transcription(
        num=num, start=start, end=end, words=words, final=final, first_word=f"t{time.time():.6f}"
    )


def make_app(
    final_every_s: float, words_ms: float = 300.0, tts_speed: float = 1.0
) -> web.Application:
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

    async def handle_qwen3(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        await ws.receive()  # the handshake
        samples = since = num = 0  # 16 kHz samples received, and at the last final
        next_partial = 16000

        def qwen3(text: str) -> str:
            return text.replace('"language_code": "en"', '"language_code": "English"')

        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "input_audio_buffer.append":
                samples += len(base64.b64decode(data["audio"])) // 2
                start, end = since / 16000, samples / 16000
                if end - start >= final_every_s:
                    await ws.send_str(qwen3(message(num, start, end, 40, True)))
                    num += 1
                    since, next_partial = samples, samples + 16000
                elif samples >= next_partial:
                    await ws.send_str(qwen3(message(num, start, end, 12, False)))
                    next_partial += 16000
            elif data.get("type") == "input_audio_buffer.commit":
                start, end = since / 16000, samples / 16000
                final = json.loads(qwen3(message(num, start, end, 40 if end > start else 0, True)))
                final["is_end_of_audio_flush"] = True
                await ws.send_str(json.dumps(final))
                num += 1
                since, next_partial = samples, samples + 16000
        return ws

    async def handle_tts(request: web.Request) -> web.StreamResponse:
        per_word = tts_samples_per_word(float(request.query.get("words_ms", words_ms)))
        speed = float(request.query.get("speed", tts_speed))
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        speech = _Speech(ws, speed)
        speaker = asyncio.create_task(speech.speak())
        buffer_size = 0  # from the metadata, the first message
        waiting = 0  # words received, not yet released for speaking
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if not buffer_size:
                    buffer_size = max(1, int(json.loads(msg.data).get("buffer_size", 10)))
                    continue
                if msg.data == TTS_END_OF_INPUT:
                    speech.release(waiting * per_word, end=True)
                    break
                for word in msg.data.split():
                    waiting += 1
                    if waiting >= buffer_size or word.endswith(TTS_SENTENCE_ENDS):
                        speech.release(waiting * per_word)
                        waiting = 0
            else:
                return ws  # the client left before __END__ (the finally stops the speaker)
            if await speaker:  # everything was spoken: the normal end of a synthesis
                await ws.close(code=1000)
        finally:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaker
        return ws

    async def handle_qwen3_tts(request: web.Request) -> web.StreamResponse:
        per_word = tts_samples_per_word(float(request.query.get("words_ms", words_ms)))
        speed = float(request.query.get("speed", tts_speed))
        ws = web.WebSocketResponse(max_msg_size=16 << 20)
        await ws.prepare(request)
        timed = False
        text = ""
        with contextlib.suppress(ConnectionError):
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if event["type"] == "session.config":
                    timed = event.get("timestamp_type") == "word"
                elif event["type"] == "input.text":
                    text += event["text"]
                elif event["type"] == "input.done":
                    for index, sentence in enumerate(_sentences(text)):
                        await _qwen3_sentence(ws, index, sentence.split(), per_word, speed, timed)
                    text = ""
                    await ws.send_str('{"type": "session.done"}')
                elif event["type"] == "session.close":
                    break
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/qwen3", handle_qwen3)
    app.router.add_get("/tts", handle_tts)
    app.router.add_get("/qwen3-tts", handle_qwen3_tts)
    return app


def _sentences(text: str) -> list[str]:
    sentences, current = [], []
    for word in text.split():
        current.append(word)
        if word.endswith(TTS_SENTENCE_ENDS):
            sentences.append(" ".join(current))
            current = []
    return sentences + ([" ".join(current)] if current else [])


async def _qwen3_sentence(
    ws: web.WebSocketResponse, index: int, words: list[str], per_word: int, speed: float,
    timed: bool,
) -> None:  # fmt: skip
    """One Qwen3-TTS sentence: audio.start, the tone at `speed` times real time, audio.done."""
    await ws.send_str(json.dumps({"type": "audio.start", "sentence_index": index,
                                  "sample_rate": TTS_SAMPLE_RATE}))  # fmt: skip
    speech = _Speech(ws, speed)
    speech.release(per_word * len(words), end=True)
    await speech.speak()
    done: dict[str, object] = {"type": "audio.done", "sentence_index": index}
    if timed:
        word_s = per_word / TTS_SAMPLE_RATE
        done["timestamp_info"] = {
            "word_alignment": {
                "words": words,
                "word_start_times_seconds": [i * word_s for i in range(len(words))],
                "word_end_times_seconds": [(i + 1) * word_s for i in range(len(words))],
            }
        }
    await ws.send_str(json.dumps(done))


class _Speech:
    """One `/tts` connection's audio: samples released for speaking go out in binary messages
    of up to TTS_CHUNK_SAMPLES at `speed` times real time (0: as fast as the socket takes
    them)."""

    def __init__(self, ws: web.WebSocketResponse, speed: float) -> None:
        self._ws = ws
        self._speed = speed
        self._owed = 0
        self._ended = False
        self._changed = asyncio.Event()

    def release(self, samples: int, end: bool = False) -> None:
        self._owed += samples
        self._ended = self._ended or end
        self._changed.set()

    async def speak(self) -> bool:
        """Sends the released audio until the end; False if the client went away."""
        loop = asyncio.get_running_loop()
        sent = 0
        due = loop.time()
        while True:
            await self._changed.wait()
            self._changed.clear()
            due = max(due, loop.time())  # after waiting for words, real time starts again
            while sent < self._owed:
                n = min(TTS_CHUNK_SAMPLES, self._owed - sent)
                try:
                    await self._ws.send_bytes(TTS_CHUNK[: 2 * n])
                except ConnectionError:
                    return False
                sent += n
                if self._speed > 0:
                    due += n / TTS_SAMPLE_RATE / self._speed
                    await asyncio.sleep(max(0.0, due - loop.time()))
            if self._ended:
                return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--final-every", type=float, default=5.0)
    parser.add_argument("--words-ms", type=float, default=300.0, help="/tts audio per word")
    parser.add_argument(
        "--tts-speed", type=float, default=1.0, help="/tts pace, times real time (0: no pacing)"
    )
    parser.add_argument(
        "--announce", action="store_true", help="print 'listening' to stdout once it listens"
    )
    args = parser.parse_args()
    web.run_app(
        make_app(args.final_every, args.words_ms, args.tts_speed),
        host="127.0.0.1",
        port=args.port,
        print=(lambda _: print("listening", flush=True)) if args.announce else None,
    )


if __name__ == "__main__":
    main()
