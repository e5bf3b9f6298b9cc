# SPDX-License-Identifier: Apache-2.0

"""`livekit-baseten` (also `python -m livekit.plugins.baseten`): the plugin's main jobs from a
shell. With `BASETEN_API_KEY` and an endpoint or model id, commands use Baseten; otherwise they
start the local Baseten-compatible server in-process (the `local` extra) and say so."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import aiohttp
import typer
from livekit import rtc
from livekit.agents import APIError, stt
from livekit.agents.types import NOT_GIVEN
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import STT, TTS
from .models import TTSModels, TTSVoices

app = typer.Typer(
    name="livekit-baseten",
    help="Baseten speech-to-text, text-to-speech and voice turns, on Baseten or a local server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
# soft_wrap: an error stays one line however long.
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

SAMPLE_RATE = 16000
FRAME_MS = 20


class CliError(Exception):
    """A failure to report as one line, without a traceback."""


def run(job: Callable[[], Awaitable[T]]) -> T:
    """Runs `job`, turning every expected failure into a one-line error and exit code 1."""
    try:
        return asyncio.run(_quietly(job))
    except CliError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _quietly(job: Callable[[], Awaitable[T]]) -> T:
    try:
        return await job()
    except CliError:
        raise
    except APIError as e:
        raise CliError(f"Baseten request failed: {e}") from None
    except (OSError, ValueError, aiohttp.ClientError) as e:
        raise CliError(str(e) or type(e).__name__) from None


# -- endpoints: Baseten when configured, the local server otherwise ----------------------------


@dataclass
class Endpoints:
    api_key: str
    stt: str | None = None
    tts: str | None = None
    llm_base_url: str | None = None
    qwen3_tts: str | None = None  # the local server's; on Baseten, `tts` is the endpoint
    local: bool = False


@contextlib.asynccontextmanager
async def endpoints(
    *,
    stt_url: str | None = None,
    tts_url: str | None = None,
    predict: bool = False,
    stt_model: str = "whisper",
    needs: tuple[str, ...] = (),
) -> AsyncIterator[Endpoints]:
    """Baseten's endpoints when `BASETEN_API_KEY` and every needed endpoint are given (an
    endpoint may come from `BASETEN_MODEL_ENDPOINT`), else a local server started here, and
    a line that says so."""
    key = os.environ.get("BASETEN_API_KEY")
    env = os.environ.get("BASETEN_MODEL_ENDPOINT")
    given = {"stt": stt_url or env, "tts": tts_url or env}
    if key and all(given[n] for n in needs):
        yield Endpoints(api_key=key, stt=given["stt"], tts=given["tts"])
        return
    try:
        from .local import LocalServer
    except ImportError as e:
        raise CliError(
            f"no Baseten endpoint configured, and the local server is not installed ({e.name} "
            "is missing): pip install 'livekit-plugins-baseten[local]', or set BASETEN_API_KEY "
            "and an endpoint"
        ) from None
    err.print("[dim]No Baseten key and endpoint given: using the local server.[/dim]")
    async with LocalServer() as server:
        yield Endpoints(
            api_key="local",
            stt=server.qwen3_asr_url if stt_model == "qwen3-asr" else server.whisper_url,
            tts=server.tts_predict_url if predict else server.tts_websocket_url,
            llm_base_url=server.llm_base_url,
            qwen3_tts=server.qwen3_tts_url,
            local=True,
        )


def model_url(endpoint: str | None, model_id: str | None, template: str) -> str | None:
    if endpoint:
        return endpoint
    if model_id:
        return template.format(model_id=model_id)
    return None


# -- audio files ----------------------------------------------------------------------------


def read_audio(path: Path) -> bytes:
    """Any file PyAV can decode, as 16 kHz mono int16."""
    import av

    if not path.is_file():
        raise CliError(f"no such file: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise CliError(f"{path} has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            pcm = bytearray()
            for frame in container.decode(audio=0):
                for out_frame in resampler.resample(frame):
                    pcm += bytes(out_frame.planes[0])[: out_frame.samples * 2]
            for out_frame in resampler.resample(None):
                pcm += bytes(out_frame.planes[0])[: out_frame.samples * 2]
    except av.FFmpegError as e:
        raise CliError(f"cannot decode {path}: {e}") from None
    return bytes(pcm)


def write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)


def frames_of(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> Iterator[rtc.AudioFrame]:
    step = sample_rate * FRAME_MS // 1000 * 2
    for i in range(0, len(pcm), step):
        chunk = pcm[i : i + step]
        yield rtc.AudioFrame(chunk, sample_rate, 1, len(chunk) // 2)


# -- serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Run the local Baseten-compatible server until interrupted."""

    async def job() -> None:
        try:
            from .local import LocalServer
        except ImportError as e:
            raise CliError(
                f"the local server needs the 'local' extra ({e.name} is missing)"
            ) from None
        async with LocalServer(host=host, port=port) as server:
            table = Table(title="Local Baseten-compatible server", show_header=False)
            table.add_row("Whisper streaming (STT)", server.whisper_url)
            table.add_row("Qwen3-ASR streaming (STT)", server.qwen3_asr_url)
            table.add_row("Orpheus WebSocket (TTS)", server.tts_websocket_url)
            table.add_row("Orpheus predict (TTS)", server.tts_predict_url)
            table.add_row("Qwen3-TTS (TTS, voices)", server.qwen3_tts_url)
            table.add_row("OpenAI-compatible base URL (LLM)", server.llm_base_url)
            out.print(table)
            out.print("Any API key works. Ctrl-C to stop.")
            await asyncio.Event().wait()

    run(job)


# -- transcribe -----------------------------------------------------------------------------


@app.command()
def transcribe(
    file: Annotated[Path, typer.Argument(help="An audio file (anything PyAV decodes).")],
    endpoint: Annotated[str | None, typer.Option(help="STT WebSocket URL.")] = None,
    model_id: Annotated[str | None, typer.Option(help="Baseten STT model id.")] = None,
    model: Annotated[str, typer.Option(help="The STT protocol: whisper or qwen3-asr.")] = "whisper",
    language: Annotated[
        str | None, typer.Option(help="Language code (default: en, or auto for qwen3-asr).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> None:
    """Stream FILE through baseten.STT, faster than real time; print partials and finals."""
    from ._endpoint import TRUSS_WS_URL

    async def job() -> None:
        if model not in ("whisper", "qwen3-asr"):
            raise CliError(f"--model must be whisper or qwen3-asr, not {model!r}")
        pcm = read_audio(file)
        url = model_url(endpoint, model_id, TRUSS_WS_URL)
        async with (
            endpoints(stt_url=url, stt_model=model, needs=("stt",)) as ep,
            aiohttp.ClientSession() as http,
        ):
            engine = STT(
                model="qwen3-asr" if model == "qwen3-asr" else "whisper",
                api_key=ep.api_key,
                model_endpoint=ep.stt,
                http_session=http,
                language=language if language is not None else NOT_GIVEN,
            )
            stream = engine.stream()
            seconds = len(pcm) / 2 / SAMPLE_RATE
            with Progress(
                TextColumn("[dim]streaming"),
                BarColumn(),
                TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
                disable=as_json,
            ) as progress:
                task = progress.add_task("audio", total=seconds)
                for frame in frames_of(pcm):
                    stream.push_frame(frame)
                    progress.advance(task, FRAME_MS / 1000)
                    await asyncio.sleep(0)  # let the sender go while pushing
                stream.end_input()
                async for ev in stream:
                    _print_event(ev, as_json)
            await stream.aclose()

    run(job)


def _print_event(ev: stt.SpeechEvent, as_json: bool) -> None:
    if ev.type not in (
        stt.SpeechEventType.INTERIM_TRANSCRIPT,
        stt.SpeechEventType.FINAL_TRANSCRIPT,
    ):
        return
    alt = ev.alternatives[0]
    final = ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    words = [
        {"word": str(w), "start": round(w.start_time, 3), "end": round(w.end_time, 3)}
        for w in alt.words or []
        if isinstance(w.start_time, float) and isinstance(w.end_time, float)
    ]
    if as_json:
        record: dict[str, Any] = {
            "type": "final" if final else "partial",
            "text": alt.text,
            "start": round(alt.start_time, 3),
            "end": round(alt.end_time, 3),
            "language": str(alt.language),
            "confidence": round(alt.confidence, 4),
            "words": words,
        }
        print(json.dumps(record), flush=True)
    elif final:
        out.print(f"[bold green]final[/]   [{alt.start_time:6.2f}-{alt.end_time:6.2f}] {alt.text}")
        timings = "  ".join(f"{w['word']}@{w['start']:.2f}" for w in words)
        if timings:
            out.print(f"        [dim]{timings}[/dim]", highlight=False)
    else:
        out.print(f"[yellow]partial[/] {alt.text}", highlight=False)


# -- speak ----------------------------------------------------------------------------------


@app.command()
def speak(
    text: Annotated[str, typer.Argument(help="What to say.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    endpoint: Annotated[
        str | None, typer.Option(help="TTS endpoint (wss:// or, for Orpheus, https://).")
    ] = None,
    model_id: Annotated[str | None, typer.Option(help="Baseten TTS model id.")] = None,
    voice: Annotated[
        str,
        typer.Option(
            help=f"Voice: Orpheus' ({', '.join(TTSVoices.__args__)}), or a Qwen3-TTS voice "
            "registered on the deployment (the local server knows Orpheus' names too)."
        ),
    ] = "tara",
    predict: Annotated[
        bool, typer.Option(help="Use HTTP predict instead of the WebSocket (Orpheus).")
    ] = False,
    model: Annotated[
        str, typer.Option(help="The deployment's protocol: orpheus or qwen3-tts.")
    ] = "orpheus",
) -> None:
    """Synthesize TEXT through baseten.TTS into a 24 kHz WAV file."""
    from ._endpoint import TRUSS_WS_URL
    from .tts import TRUSS_PREDICT_URL

    async def job() -> None:
        if model not in get_args(TTSModels):
            raise CliError(
                f"--model must be one of {', '.join(get_args(TTSModels))}, not {model!r}"
            )
        if model == "qwen3-tts" and predict:
            raise CliError("Qwen3-TTS is served over the WebSocket only: drop --predict")
        url = model_url(endpoint, model_id, TRUSS_PREDICT_URL if predict else TRUSS_WS_URL)
        async with (
            endpoints(tts_url=url, predict=predict, needs=("tts",)) as ep,
            aiohttp.ClientSession() as http,
        ):
            tts_url = ep.qwen3_tts if ep.local and model == "qwen3-tts" else ep.tts
            engine = TTS(
                model=model,  # type: ignore[arg-type]  # checked above
                api_key=ep.api_key,
                model_endpoint=tts_url,
                http_session=http,
                voice=voice,
            )
            started = time.perf_counter()
            frame = await engine.synthesize(text).collect()
            write_wav(output, frame.data.tobytes(), frame.sample_rate)
            out.print(
                f"wrote {output} ({frame.duration:.2f} s of audio in "
                f"{time.perf_counter() - started:.2f} s)"
            )

    run(job)


# -- turn -----------------------------------------------------------------------------------


@app.command()
def turn(
    input: Annotated[Path, typer.Option("--input", "-i", help="The question (any audio file).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file for the reply.")],
    stt_endpoint: Annotated[str | None, typer.Option(help="Whisper WebSocket URL.")] = None,
    stt_model_id: Annotated[str | None, typer.Option(help="Baseten Whisper model id.")] = None,
    tts_endpoint: Annotated[str | None, typer.Option(help="Orpheus endpoint.")] = None,
    tts_model_id: Annotated[str | None, typer.Option(help="Baseten Orpheus model id.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Baseten Model APIs model id.")] = None,
    llm_base_url: Annotated[
        str | None, typer.Option(help="Another OpenAI-compatible API for the LLM.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The outcome as one JSON object.")
    ] = False,
) -> None:
    """One voice turn through a LiveKit AgentSession: baseten STT -> LLM -> TTS."""
    from ._endpoint import TRUSS_WS_URL
    from .llm import LLM
    from .voice_turn import run_turn

    async def job() -> None:
        question = read_audio(input)
        stt_url = model_url(stt_endpoint, stt_model_id, TRUSS_WS_URL)
        tts_url = model_url(tts_endpoint, tts_model_id, TRUSS_WS_URL)
        async with (
            endpoints(stt_url=stt_url, tts_url=tts_url, needs=("stt", "tts")) as ep,
            aiohttp.ClientSession() as http,
        ):
            llm_kwargs: dict[str, Any] = {"api_key": ep.api_key}
            if llm_base_url or ep.llm_base_url:
                base_url = llm_base_url or ep.llm_base_url
                llm_kwargs.update(base_url=base_url, model=llm_model or "local-stand-in")
            elif llm_model:
                llm_kwargs["model"] = llm_model
            result = await run_turn(
                question,
                SAMPLE_RATE,
                stt_engine=STT(api_key=ep.api_key, model_endpoint=ep.stt, http_session=http),
                llm_engine=LLM(**llm_kwargs),
                tts_engine=TTS(api_key=ep.api_key, model_endpoint=ep.tts, http_session=http),
            )
        if result.errors:
            raise CliError("; ".join(result.errors))
        write_wav(output, result.audio, result.sample_rate)
        if as_json:
            outcome = asdict(result)
            del outcome["audio"]  # in the WAV file
            print(json.dumps(outcome))
            return
        table = Table(show_header=False)
        table.add_row("user said", result.transcript)
        table.add_row("agent replied", result.reply)
        table.add_row(
            "reply audio", f"{len(result.audio) / 2 / result.sample_rate:.2f} s -> {output}"
        )
        for name, value in (
            ("STT final latency", result.stt_final_latency_s),
            ("LLM time to first token", result.llm_ttft_s),
            ("TTS time to first byte", result.tts_ttfb_s),
            ("end of question -> first reply audio", result.end_to_end_s),
        ):
            table.add_row(name, f"{value * 1000:.0f} ms" if value is not None else "n/a")
        out.print(table)

    run(job)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log warnings too.")] = False,
) -> None:
    # Retry warnings and the like are for debugging; a command ends with one line of outcome.
    logging.basicConfig(
        level=logging.WARNING if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    app(prog_name="livekit-baseten")


if __name__ == "__main__":
    main()
