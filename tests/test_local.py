# SPDX-License-Identifier: Apache-2.0

"""The local Baseten-compatible server (real offline engines), the plugin through it, a voice
turn through AgentSession, and the livekit-baseten CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError, llm, stt
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import baseten
from livekit.plugins.baseten.local import LocalServer
from livekit.plugins.baseten.voice_turn import run_turn

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "question.wav"
E = stt.SpeechEventType

pytestmark = pytest.mark.local

# Spoken by the local TTS, heard by the local STT, through the plugin.
SENTENCES = [
    ("tara", "Please send the report to the office before noon."),
    ("leo", "The meeting has been moved to Thursday afternoon."),
    ("dan", "Can you book a table for two people tonight?"),
    ("mia", "My flight arrives at the airport at six in the evening."),
    ("zac", "Turn off the lights in the kitchen and lock the door."),
    ("zoe", "We need three more chairs for the conference room."),
]
# tiny.en on eSpeak NG speech. eSpeak's output differs from call to call (its synthesizer
# carries state from one utterance into the next, so the order the six are spoken in matters),
# and tiny.en tips on a few words: measured 48 to 53 of 57 words over eight runs here. A bound
# well below that still fails wrong audio (a rate or framing bug gives almost nothing back).
MIN_WORD_RECALL = 0.7


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with LocalServer() as s:
        yield s


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


async def say_and_hear(
    server: LocalServer, http: aiohttp.ClientSession, voice: str, text: str
) -> str:
    voice_tts = baseten.TTS(
        api_key="local", model_endpoint=server.tts_websocket_url, http_session=http, voice=voice
    )
    frame = await voice_tts.synthesize(text).collect()
    pcm = bytes(9600) + frame.data.tobytes() + bytes(9600)  # 0.2 s of quiet around it
    ear = baseten.STT(api_key="local", model_endpoint=server.whisper_url, http_session=http)
    stream = ear.stream()
    for i in range(0, len(pcm), 960):
        chunk = pcm[i : i + 960]
        stream.push_frame(rtc.AudioFrame(chunk, 24000, 1, len(chunk) // 2))
    stream.end_input()
    finals = [ev.alternatives[0].text async for ev in stream if ev.type == E.FINAL_TRANSCRIPT]
    return " ".join(finals)


async def test_speech_from_the_local_tts_comes_back_from_the_local_stt(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    heard = await asyncio.wait_for(
        asyncio.gather(*(say_and_hear(server, http, v, t) for v, t in SENTENCES)), 120
    )
    hits = total = 0
    for (_, said), got in zip(SENTENCES, heard, strict=True):
        ref, hyp = words(said), words(got)
        hits += sum(min(ref.count(w), hyp.count(w)) for w in set(ref))
        total += len(ref)
    assert hits / total >= MIN_WORD_RECALL, list(zip(SENTENCES, heard, strict=True))


@pytest.mark.parametrize("model", ["whisper", "qwen3-asr"])
async def test_words_are_timed_on_the_input_timeline(
    server: LocalServer, http: aiohttp.ClientSession, model: str
) -> None:
    url = server.qwen3_asr_url if model == "qwen3-asr" else server.whisper_url
    ear = baseten.STT(
        model=model,  # type: ignore[arg-type]
        api_key="local",
        model_endpoint=url,
        http_session=http,
        show_word_timestamps=True,
    )
    stream = ear.stream()
    with wave.open(str(SAMPLE)) as w:
        pcm, rate = w.readframes(w.getnframes()), w.getframerate()
    for i in range(0, len(pcm), rate // 50 * 2):
        chunk = pcm[i : i + rate // 50 * 2]
        stream.push_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2))
    stream.end_input()
    events = [ev async for ev in stream]
    (final,) = [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]
    assert "quarterly report" in final.text
    # On the input's timeline (the clip starts with 0.4 s of quiet), not the utterance's.
    starts = [w.start_time for w in final.words or []]
    assert starts and all(isinstance(t, float) and 0.1 < t < 4.0 for t in starts)
    assert E.INTERIM_TRANSCRIPT in [ev.type for ev in events]


async def test_the_local_qwen3_asr_server_answers_every_commit(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(server.qwen3_asr_url) as ws:
        await ws.send_json({"whisper_params": {"audio_language": "English"}})
        await ws.send_json({"type": "input_audio_buffer.append", "audio": "AAAA"})
        await ws.send_json({"type": "input_audio_buffer.commit"})
        answer = await asyncio.wait_for(ws.receive_json(), 10)
        assert answer["is_final"] and answer["is_end_of_audio_flush"]
        assert answer["segments"] == [] and answer["language_code"] == "English"
        await ws.send_str("{oops")
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "error"


async def hear_sample(
    server: LocalServer, http: aiohttp.ClientSession, **options: object
) -> list[stt.SpeechEvent]:
    ear = baseten.STT(
        api_key="local",
        model_endpoint=server.whisper_url,
        http_session=http,
        **options,  # type: ignore[arg-type]
    )
    stream = ear.stream()
    with wave.open(str(SAMPLE)) as w:
        pcm, rate = w.readframes(w.getnframes()), w.getframerate()
    for i in range(0, len(pcm), rate // 50 * 2):
        chunk = pcm[i : i + rate // 50 * 2]
        stream.push_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2))
    stream.end_input()
    return [ev async for ev in stream]


async def test_mulaw_is_decoded_as_the_real_server_decodes_it(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    events = await hear_sample(server, http, encoding="pcm_mulaw")
    finals = " ".join(ev.alternatives[0].text for ev in events if ev.type == E.FINAL_TRANSCRIPT)
    assert "quarterly report" in finals


async def test_a_long_utterance_is_cut_at_the_max_duration(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    # About 3.2 s of continuous speech, cut every second: several finals, in order.
    events = await hear_sample(server, http, final_transcript_max_duration_s=1)
    finals = [ev.alternatives[0] for ev in events if ev.type == E.FINAL_TRANSCRIPT]
    assert len(finals) >= 3
    assert all(a.end_time <= b.start_time + 0.3 for a, b in itertools.pairwise(finals))
    assert all(f.end_time - f.start_time <= 1.3 for f in finals[:-1])


async def raw_session(
    server: LocalServer, http: aiohttp.ClientSession, meta: object
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(server.whisper_url)
    await ws.send_str(json.dumps(meta))
    return ws


async def test_the_local_server_refuses_what_the_real_one_refuses(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    # Unknown metadata keys: closed with 1011, no error message (pydantic raises first).
    ws = await raw_session(server, http, {"whisper_params": {"audio_language": "en", "beam": 5}})
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1011
    # A frame that is not 512 samples: an AUDIO_PROCESSING_ERROR, then the session is dead.
    ws = await raw_session(server, http, {"streaming_params": {"encoding": "pcm_s16le"}})
    await ws.send_bytes(bytes(300))
    error = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert error["type"] == "error" and error["body"]["error_type"] == "AUDIO_PROCESSING_ERROR"
    assert error["body"]["recoverable"] is False
    assert (await asyncio.wait_for(ws.receive(), 5)).type == aiohttp.WSMsgType.CLOSE
    # English only, and it says so.
    ws = await raw_session(server, http, {"whisper_params": {"audio_language": "de"}})
    error = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert error["body"]["error_type"] == "CONFIGURATION_ERROR"
    assert "English only" in error["body"]["message"]
    # A control message it does not know: a recoverable error, the session goes on.
    ws = await raw_session(server, http, {})
    await ws.send_str(json.dumps({"terminate_session": True}))
    error = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert error["body"]["recoverable"] is True
    await ws.send_str(json.dumps({"type": "health_check", "body": {"get_partial_interval": True}}))
    health = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert health["body"] == {"healthy": True, "partial_interval": 0.5}
    await ws.close()


async def test_the_plugin_sees_the_local_servers_refusals_as_typed_errors(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    ear = baseten.STT(
        api_key="local", model_endpoint=server.whisper_url, http_session=http, language="de"
    )
    stream = ear.stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_frame(rtc.AudioFrame(bytes(640), 16000, 1, 320))
    with pytest.raises(APIStatusError, match="English only"):
        _ = [ev async for ev in stream]


async def test_predict_and_a_too_long_prompt(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    voice = baseten.TTS(api_key="local", model_endpoint=server.tts_predict_url, http_session=http)
    frame = await voice.synthesize("Good morning.").collect()
    assert frame.sample_rate == 24000 and frame.duration > 0.5
    async with http.post(server.tts_predict_url, json={"prompt": "x " * 4000}) as resp:
        assert resp.status == 400


async def test_qwen3_tts_speaks_a_registered_voice_with_word_times(
    server: LocalServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    clip = tmp_path / "me.wav"
    clip.write_bytes(SAMPLE.read_bytes())
    url = server.qwen3_tts_url
    voice = await baseten.register_voice(
        model_endpoint=url, name="me", ref_audio_path=str(clip), api_key="local", http_session=http
    )
    listed = await baseten.list_voices(model_endpoint=url, api_key="local", http_session=http)
    assert [v["name"] for v in listed["uploaded_voices"]] == [voice["name"]] == ["me"]
    assert "tara" in listed["voices"]
    engine = baseten.TTS(model="qwen3-tts", api_key="local", model_endpoint=url,
                         http_session=http, voice="me", word_timestamps=True)  # fmt: skip
    text = "Please send the report. The meeting has moved to Thursday."
    stream = engine.stream()
    stream.push_text(text)
    stream.end_input()
    audio, timed = bytearray(), []
    async for ev in stream:
        audio += ev.frame.data.tobytes()
        timed += ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])
    assert words("".join(timed)) == words(text)
    starts = [w.start_time for w in timed]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert timed[-1].end_time == pytest.approx(len(audio) / 48000, abs=0.01)
    assert starts[4] > 1.0  # "The": after the first sentence's audio
    engine.update_options(voice="nobody")
    with pytest.raises(APIStatusError, match="not found"):
        await engine.synthesize("Hi.", conn_options=APIConnectOptions(max_retry=0)).collect()
    await engine.aclose()


async def test_chat_completions_stand_in(server: LocalServer) -> None:
    model = baseten.LLM(api_key="local", base_url=server.llm_base_url, model="local")
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="Hello there")
    text = ""
    async with model.chat(chat_ctx=ctx) as reply:
        async for chunk in reply:
            text += (chunk.delta.content or "") if chunk.delta else ""
    assert text == "You said: Hello there."

    @llm.function_tool
    async def get_weather() -> str:
        """Weather."""
        return "sunny"

    ctx.add_message(role="user", content="Call get_weather please")
    calls = []
    async with model.chat(chat_ctx=ctx, tools=[get_weather]) as reply:
        async for chunk in reply:
            calls += (chunk.delta.tool_calls or []) if chunk.delta else []
    assert [c.name for c in calls] == ["get_weather"]


async def test_a_voice_turn_through_agent_session(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    with wave.open(str(SAMPLE)) as w:
        pcm, rate = w.readframes(w.getnframes()), w.getframerate()
    result = await run_turn(
        pcm,
        rate,
        stt_engine=baseten.STT(
            api_key="local", model_endpoint=server.whisper_url, http_session=http
        ),
        llm_engine=baseten.LLM(api_key="local", base_url=server.llm_base_url, model="local"),
        tts_engine=baseten.TTS(
            api_key="local", model_endpoint=server.tts_websocket_url, http_session=http
        ),
    )
    assert result.errors == []
    assert "quarterly report" in result.transcript
    assert result.reply.startswith("You said:") and "quarterly report" in result.reply
    reply = np.frombuffer(result.audio, dtype=np.int16).astype(np.float64)
    assert len(reply) / result.sample_rate > 1.0
    assert np.sqrt(np.mean(reply**2)) > 500  # speech, not silence
    for delay in (result.stt_final_latency_s, result.llm_ttft_s, result.tts_ttfb_s):
        assert delay is not None and 0 <= delay < 10


# -- CLI --------------------------------------------------------------------------------------


def cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASETEN_")}
    if key:
        env["BASETEN_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "livekit.plugins.baseten", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("model", ["whisper", "qwen3-asr"])
def test_cli_transcribe_json_on_the_local_server(model: str) -> None:
    result = cli("transcribe", str(SAMPLE), "--json", "--model", model)
    assert result.returncode == 0, result.stderr
    assert "using the local server" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    finals = [r for r in records if r["type"] == "final"]
    assert len(finals) == 1 and "quarterly report" in finals[0]["text"]
    if model == "whisper":  # qwen3-asr's word timestamps are off by default
        assert finals[0]["words"][0]["start"] > 0.1  # the clip starts with 0.4 s of quiet


def test_cli_speak_and_turn(tmp_path: Path) -> None:
    spoken = tmp_path / "hello.wav"
    result = cli("speak", "Hello from the local server.", "-o", str(spoken), "--voice", "zoe")
    assert result.returncode == 0, result.stderr
    with wave.open(str(spoken)) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 24000
    answer = tmp_path / "answer.wav"
    result = cli("turn", "--input", str(SAMPLE), "--output", str(answer))
    assert result.returncode == 0, result.stderr
    assert "quarterly report" in result.stdout and "You said" in result.stdout
    assert "STT final latency" in result.stdout and answer.stat().st_size > 48000


def test_cli_speak_qwen3_tts(tmp_path: Path) -> None:
    spoken = tmp_path / "hello.wav"
    result = cli("speak", "Hello there.", "-o", str(spoken), "--model", "qwen3-tts")
    assert result.returncode == 0, result.stderr
    with wave.open(str(spoken)) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 12000


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (("transcribe", "no-such-file.wav"), None, "no such file: no-such-file.wav"),
        (("transcribe", str(SAMPLE), "--model", "parakeet"), None, "--model must be"),
        (("transcribe", "Cargo.lock"), None, "Cargo.lock"),
        (
            ("transcribe", str(SAMPLE), "--endpoint", "ws://127.0.0.1:9/ws"),
            "k",
            "Baseten request failed",
        ),
        (
            ("speak", "hi", "-o", "out.wav", "--endpoint", "ftp://x"),
            "k",
            "invalid Baseten endpoint",
        ),
        (
            ("speak", "hi", "-o", "out.wav", "--model", "qwen3-tts", "--predict"),
            None,
            "drop --predict",
        ),
    ],
)
def test_cli_errors_are_one_line(args: tuple[str, ...], key: str | None, message: str) -> None:
    result = cli(*args, key=key)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


# `python -m livekit.plugins.baseten`, with Python's own SIGINT handler as from a terminal. A
# shell starts background jobs with SIGINT ignored, a child inherits that, and Python then
# installs no handler: under such a CI runner the server would rightly ignore the interrupt.
_WITH_SIGINT_HANDLED = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('livekit.plugins.baseten', run_name='__main__', alter_sys=True)"
)


def test_cli_serve_prints_its_endpoints_and_stops_on_interrupt() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASETEN_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_SIGINT_HANDLED, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert re.search(r"ws://127\.0\.0\.1:\d+/whisper/websocket", text), text
        assert re.search(r"http://127\.0\.0\.1:\d+/v1", text), text
    finally:
        proc.send_signal(signal.SIGINT)
        # communicate, not wait: a process blocked writing to a pipe nobody reads would look
        # like one that ignored the interrupt, and what it wrote says why it did not stop.
        try:
            rest, errors = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, errors = proc.communicate()
            raise AssertionError(f"serve ignored the interrupt: {errors[-2000:]}") from None
        assert proc.returncode == 130, (rest, errors)
