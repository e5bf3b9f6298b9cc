# SPDX-License-Identifier: Apache-2.0

"""Text-to-speech on Baseten: Orpheus over WebSocket (streaming) or HTTP predict, and
Qwen3-TTS (`model="qwen3-tts"`, in _qwen3_tts.py) over WebSocket.

For Orpheus the endpoint's scheme picks the protocol: ``wss://`` streams text in and audio out
on one socket per utterance; ``https://`` posts the whole text and streams the audio back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from typing import Any, Literal

import aiohttp
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tokenize,
    tts,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from ._endpoint import CHAIN_WS_URL, TRUSS_WS_URL, resolve_api_key, resolve_endpoint
from ._options import replace_given
from ._orpheus import (
    END_OF_INPUT,
    NUM_CHANNELS,
    SAMPLE_RATE,
    SECONDS_PER_CHAR,
    OrpheusOptions,
    WavHeaderStripper,
    WordChunker,
    prompt_limit,
    split_prompt,
)
from ._qwen3_tts import MAX_MESSAGE_BYTES as QWEN3_MAX_MESSAGE_BYTES
from ._qwen3_tts import Qwen3Backend, Qwen3Options, Qwen3SynthesizeStream, load_ref_audio
from ._spare_socket import SpareSocket
from ._synthesis import supervise
from ._websocket import Dialer, failure_of
from .log import logger
from .models import TTSModels, TTSVoices

TRUSS_PREDICT_URL = "https://model-{model_id}.api.baseten.co/environments/production/predict"
CHAIN_PREDICT_URL = "https://chain-{chain_id}.api.baseten.co/environments/production/run_remote"
# The WebSocket server sends audio only; a text message is an error report, never large.
MAX_MESSAGE_BYTES = 1 << 20
# Of an HTTP error's body, this much is read (into the APIStatusError): a server or proxy that
# answers with an endless body must not hold the request until the timeout.
MAX_ERROR_BODY_BYTES = 2000
DEFAULT_BUFFER_SIZE = 10

Transport = Literal["websocket", "predict"]


class TTS(tts.TTS[None]):
    def __init__(
        self,
        *,
        model: TTSModels = "orpheus",
        api_key: str | None = None,
        model_endpoint: str | None = None,
        model_id: str | None = None,
        chain_id: str | None = None,
        transport: NotGivenOr[Transport] = NOT_GIVEN,
        voice: NotGivenOr[TTSVoices | str] = NOT_GIVEN,
        language: NotGivenOr[str] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        max_tokens: NotGivenOr[int] = NOT_GIVEN,
        buffer_size: NotGivenOr[int] = NOT_GIVEN,
        task_type: str = "Base",
        instructions: str | None = None,
        max_new_tokens: int | None = None,
        initial_codec_chunk_frames: int | None = None,
        x_vector_only_mode: bool | None = None,
        ref_audio: str | None = None,
        ref_text: str | None = None,
        word_timestamps: bool = False,
        extra_config: dict[str, Any] | None = None,
        http_session: aiohttp.ClientSession | None = None,
    ) -> None:
        """Baseten text-to-speech, 24 kHz mono: Orpheus (the default) or Qwen3-TTS.

        The endpoint, in priority order: ``model_endpoint``; ``model_id`` or ``chain_id``
        (built for ``transport``); the ``BASETEN_MODEL_ENDPOINT`` environment variable.
        ``wss://`` endpoints stream (``orpheus-3b-websockets`` trusses), ``https://`` ones use
        predict (``orpheus-best-performance`` trusses). URLs built from ids:

        - websocket (the default): ``wss://model-{id}.api.baseten.co/environments/production/websocket``
          (``chain-{id}`` for chains)
        - predict: ``https://model-{id}.api.baseten.co/environments/production/predict``
          (``https://chain-{id}.../environments/production/run_remote`` for chains)

        ``model="qwen3-tts"`` speaks Qwen3-TTS over WebSocket only (URLs built from ids as for
        Orpheus WebSocket), with one socket kept warm between syntheses; it takes ``voice``,
        ``language`` and the Qwen3 arguments below, and refuses Orpheus' (``transport``
        "predict", ``temperature``, ``max_tokens``, ``buffer_size``). Orpheus refuses the
        Qwen3 arguments.

        Args:
            model: ``"orpheus"`` or ``"qwen3-tts"``: the deployment's protocol.
            transport: ``"websocket"`` or ``"predict"``, for URLs built from ``model_id`` or
                ``chain_id``; with ``model_endpoint`` it must agree with the scheme.
            voice: Orpheus: a voice (tara, leah, jess, leo, dan, mia, zac, zoe) or another
                name the deployment knows; default ``"tara"``. Qwen3-TTS: required, a voice
                registered on the deployment (see ``register_voice``) or a preset of a
                CustomVoice deployment.
            language: Orpheus' voices are English: only ``"en"``. Qwen3-TTS: a language
                name for the server, default ``"Auto"``.
            temperature: Orpheus sampling temperature (both transports), default 0.6.
            max_tokens: Orpheus cap on audio tokens per request, default 2000.
            buffer_size: words the Orpheus WebSocket server gathers before generating when no
                sentence has ended (default 10); WebSocket endpoints only.
            task_type: Qwen3-TTS checkpoint kind: ``"Base"`` (voice clones, the default),
                ``"CustomVoice"`` or ``"VoiceDesign"``.
            instructions: Qwen3-TTS style prompt (CustomVoice and VoiceDesign).
            max_new_tokens: Qwen3-TTS cap on audio tokens per sentence.
            initial_codec_chunk_frames: Qwen3-TTS size of the first audio chunk: larger
                trades time to first audio for onset quality.
            x_vector_only_mode: Qwen3-TTS: condition on the speaker embedding alone.
            ref_audio: Qwen3-TTS inline clone: an http(s) URL, or a local file (sent as
                base64; read here, so a missing file is a ValueError now).
            ref_text: Qwen3-TTS transcript of ``ref_audio``.
            word_timestamps: Qwen3-TTS: ask for word alignment and hand it to LiveKit as an
                aligned transcript (``capabilities.aligned_transcript``), for
                ``AgentSession(use_tts_aligned_transcript=True)``.
            extra_config: Qwen3-TTS: merged last into ``session.config``, for server fields
                newer than this plugin (it may not set the fields the plugin manages).
            http_session: the aiohttp session to use; defaults to the job's. TLS certificates
                are always verified; to trust a private CA (a proxy, a local server), pass a
                session whose connector does:
                ``aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context))``.
        """
        self._qwen3: Qwen3Backend | None = None
        self._spare: SpareSocket | None = None  # Orpheus WebSocket's socket dialled ahead
        self._warming: asyncio.Task[None] | None = None  # Orpheus predict's prewarm
        self._streams: weakref.WeakSet[tts.SynthesizeStream] = weakref.WeakSet()
        if model == "qwen3-tts":
            if is_given(transport) and transport != "websocket":
                raise ValueError("model='qwen3-tts' is served over WebSocket only")
            _refuse(
                "model='orpheus'",
                temperature=is_given(temperature),
                max_tokens=is_given(max_tokens),
                buffer_size=is_given(buffer_size),
            )
            self._endpoint = resolve_endpoint(
                model_endpoint=model_endpoint,
                model_id=model_id,
                chain_id=chain_id,
                truss_template=TRUSS_WS_URL,
                chain_template=CHAIN_WS_URL,
                schemes=("wss", "ws"),
            )
            super().__init__(
                capabilities=tts.TTSCapabilities(
                    streaming=True, aligned_transcript=word_timestamps
                ),
                sample_rate=SAMPLE_RATE,
                num_channels=NUM_CHANNELS,
            )
            opts = Qwen3Options(
                voice=voice if is_given(voice) else "",
                task_type=task_type,
                language=language if is_given(language) else "Auto",
                instructions=instructions,
                max_new_tokens=max_new_tokens,
                initial_codec_chunk_frames=initial_codec_chunk_frames,
                x_vector_only_mode=x_vector_only_mode,
                ref_audio=load_ref_audio(ref_audio) if ref_audio is not None else None,
                ref_text=ref_text,
                word_timestamps=word_timestamps,
                extra_config=dict(extra_config or {}),
            )
            self._dialer = Dialer(
                self._endpoint,
                api_key=resolve_api_key(api_key),
                session=http_session,
                max_msg_size=QWEN3_MAX_MESSAGE_BYTES,
            )
            self._qwen3 = Qwen3Backend(dialer=self._dialer, opts=opts)
            return
        if model != "orpheus":
            raise ValueError(f"model must be 'orpheus' or 'qwen3-tts', got {model!r}")
        _refuse(
            "model='qwen3-tts'",
            task_type=task_type != "Base",
            instructions=instructions is not None,
            max_new_tokens=max_new_tokens is not None,
            initial_codec_chunk_frames=initial_codec_chunk_frames is not None,
            x_vector_only_mode=x_vector_only_mode is not None,
            ref_audio=ref_audio is not None,
            ref_text=ref_text is not None,
            word_timestamps=word_timestamps,
            extra_config=extra_config is not None,
        )
        if is_given(language) and language.split("-")[0].lower() not in ("en", "english"):
            raise ValueError(f"Orpheus' voices are English; language {language!r} is not offered")
        if is_given(transport) and transport not in ("websocket", "predict"):
            raise ValueError(f"transport must be 'websocket' or 'predict', got {transport!r}")
        websocket = transport != "predict"
        endpoint = resolve_endpoint(
            model_endpoint=model_endpoint,
            model_id=model_id,
            chain_id=chain_id,
            truss_template=TRUSS_WS_URL if websocket else TRUSS_PREDICT_URL,
            chain_template=CHAIN_WS_URL if websocket else CHAIN_PREDICT_URL,
            schemes=("wss", "ws", "https", "http"),
        )
        streaming = endpoint.startswith(("wss://", "ws://"))
        if is_given(transport) and (transport == "websocket") != streaming:
            raise ValueError(f"transport={transport!r} does not match the endpoint {endpoint!r}")
        if is_given(buffer_size) and not streaming:
            raise ValueError("buffer_size applies to WebSocket endpoints only")
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=streaming),
            sample_rate=SAMPLE_RATE,
            num_channels=NUM_CHANNELS,
        )
        self._api_key = resolve_api_key(api_key)
        self._endpoint = endpoint
        self._dialer = Dialer(
            endpoint, api_key=self._api_key, session=http_session, max_msg_size=MAX_MESSAGE_BYTES
        )
        self._opts = OrpheusOptions(
            voice=voice if is_given(voice) else "tara",
            temperature=temperature if is_given(temperature) else 0.6,
            max_tokens=max_tokens if is_given(max_tokens) else 2000,
            buffer_size=buffer_size if is_given(buffer_size) else DEFAULT_BUFFER_SIZE,
        )
        _check_options(self._opts)
        # One socket per utterance: the next one is dialled while the current one speaks.
        self._spare = SpareSocket(self._dialer.dial, refill=True) if streaming else None
        # Predict takes whole text: stream() synthesizes sentence by sentence, as LiveKit's
        # StreamAdapter does for every non-streaming TTS. One adapter: each registers itself.
        self._adapter = (
            None
            if streaming
            else tts.StreamAdapter(tts=self, sentence_tokenizer=tokenize.basic.SentenceTokenizer())
        )

    @property
    def model(self) -> str:
        return "orpheus" if self._qwen3 is None else "qwen3-tts"

    @property
    def provider(self) -> str:
        return "Baseten"

    def __repr__(self) -> str:
        voice = self._opts.voice if self._qwen3 is None else self._qwen3.opts.voice
        return f"baseten.TTS(model={self.model!r}, endpoint={self._endpoint!r}, voice={voice!r})"

    def prewarm(self) -> None:
        """Opens the connection the next synthesis will use, in the background (LiveKit's
        AgentSession calls this as the agent starts): a WebSocket dialled ahead for
        ``wss://`` endpoints, a kept-alive HTTP connection for predict. Needs a running event
        loop; failures are logged, and the synthesis then connects by itself. Qwen3-TTS: opens
        and configures its warm socket."""
        if self._qwen3 is not None:
            self._qwen3.prewarm(DEFAULT_API_CONNECT_OPTIONS.timeout)
        elif self._spare is not None:
            self._spare.prewarm()
        elif self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self._warm_http(), name="baseten.TTS.prewarm")

    async def _warm_http(self) -> None:
        """A HEAD request to the predict endpoint: the answer does not matter (often 405), the
        TCP and TLS connection it leaves in the session's keep-alive pool does."""
        try:
            async with self._dialer.session().head(
                self._endpoint,
                headers={"Authorization": f"Api-Key {self._api_key}"},
                timeout=aiohttp.ClientTimeout(total=DEFAULT_API_CONNECT_OPTIONS.timeout),
            ):
                pass
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            # Not the exception itself: aiohttp's carry the request headers.
            logger.warning("could not prewarm %s: %s", self._endpoint, type(e).__name__)

    def update_options(
        self,
        *,
        voice: NotGivenOr[TTSVoices | str] = NOT_GIVEN,
        language: NotGivenOr[str] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        max_tokens: NotGivenOr[int] = NOT_GIVEN,
        buffer_size: NotGivenOr[int] = NOT_GIVEN,
        instructions: NotGivenOr[str | None] = NOT_GIVEN,
        max_new_tokens: NotGivenOr[int | None] = NOT_GIVEN,
    ) -> None:
        """Changes options for the next synthesis (one already running keeps its own).
        Qwen3-TTS takes voice, language, instructions and max_new_tokens (a changed config
        goes out once, before the next synthesis); Orpheus the others."""
        if self._qwen3 is not None:
            _refuse(
                "model='orpheus'",
                temperature=is_given(temperature),
                max_tokens=is_given(max_tokens),
                buffer_size=is_given(buffer_size),
            )
            self._qwen3.update_options(
                voice=voice, language=language, instructions=instructions,
                max_new_tokens=max_new_tokens,
            )  # fmt: skip
            return
        _refuse(
            "model='qwen3-tts'",
            instructions=is_given(instructions),
            max_new_tokens=is_given(max_new_tokens),
        )
        if is_given(language) and language.split("-")[0].lower() not in ("en", "english"):
            raise ValueError(f"Orpheus' voices are English; language {language!r} is not offered")
        if is_given(buffer_size) and not self.capabilities.streaming:
            raise ValueError("buffer_size applies to WebSocket endpoints only")
        opts = replace_given(
            self._opts,
            voice=voice,
            temperature=temperature,
            max_tokens=max_tokens,
            buffer_size=buffer_size,
        )
        _check_options(opts)
        self._opts = opts

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        if self.capabilities.streaming:
            return self._synthesize_with_stream(text, conn_options=conn_options)
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.SynthesizeStream:
        stream: tts.SynthesizeStream
        if self._qwen3 is not None:
            stream = Qwen3SynthesizeStream(tts=self, backend=self._qwen3, conn_options=conn_options)
        elif self._adapter is not None:
            return self._adapter.stream(conn_options=conn_options)
        else:
            stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in list(self._streams)))
        if self._qwen3 is not None:
            await self._qwen3.aclose()  # ends the warm socket's session
        if self._spare is not None:
            await self._spare.aclose()
        if self._warming is not None:
            await utils.aio.cancel_and_wait(self._warming)


class ChunkedStream(tts.ChunkedStream):
    """One utterance over HTTP predict, its audio streamed into the emitter as it arrives."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = dataclasses.replace(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = _start(output_emitter, stream=False)
        session = self._tts._dialer.session()
        timeout = self._conn_options.timeout
        pushed = False
        for prompt in split_prompt(self._input_text, prompt_limit(self._opts.max_tokens)):
            error: APIError | None = None
            try:
                async with session.post(
                    self._tts._endpoint,
                    json=self._opts.predict_body(prompt, request_id),
                    headers={"Authorization": f"Api-Key {self._tts._api_key}"},
                    # A total that grows with the text; sock_read catches a server that stops.
                    timeout=aiohttp.ClientTimeout(
                        total=timeout + SECONDS_PER_CHAR * len(prompt),
                        sock_connect=timeout,
                        sock_read=timeout,
                    ),
                ) as resp:
                    if resp.status >= 400:
                        body = await _error_body(resp)
                        raise APIStatusError(
                            f"Baseten TTS returned HTTP {resp.status}: {body}",
                            status_code=resp.status,
                            request_id=request_id,
                            body=body,
                        )
                    stripper = WavHeaderStripper()
                    async for chunk in resp.content.iter_any():
                        if pcm := stripper.feed(chunk):
                            output_emitter.push(pcm)
                            pushed = True
            except APIError as e:
                error = e
            except asyncio.TimeoutError:
                error = APITimeoutError(f"Baseten TTS timed out after {timeout:g}s without data")
            except aiohttp.ClientConnectorCertificateError as e:
                # As for the WebSocket: a certificate that fails verification will fail again.
                error = APIConnectionError(
                    f"TLS certificate of {self._tts._endpoint} failed verification: "
                    f"{e.certificate_error}",
                    retryable=False,
                )
            except aiohttp.ClientError as e:
                error = APIConnectionError(f"Baseten TTS request failed: {type(e).__name__}: {e}")
            if error is not None:
                # After audio reached the listener a retry would repeat it: stop here.
                if pushed:
                    error.retryable = False
                raise error
        output_emitter.flush()


@dataclasses.dataclass
class _Turn:
    """What the sender and receiver of one WebSocket synthesis share."""

    ended_at: float | None = None  # when __END__ went out
    last_message_at: float = 0.0
    audio: bool = False  # some audio reached the emitter


class SynthesizeStream(tts.SynthesizeStream):
    """One utterance over Orpheus' WebSocket: whole words in, 24 kHz PCM out as generated."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = dataclasses.replace(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = _start(output_emitter, stream=True)
        # Before the first text arrives: the spare dialled ahead, or a handshake that overlaps
        # the LLM's first tokens.
        assert self._tts._spare is not None
        acquired = await self._tts._spare.acquire(self._conn_options.timeout)
        ws = acquired.ws
        self._acquire_time = acquired.acquire_time
        self._connection_reused = acquired.reused
        turn = _Turn(last_message_at=time.monotonic())
        sender = asyncio.create_task(self._send(ws, turn), name="baseten.TTS.send")
        receiver = asyncio.create_task(
            self._receive(ws, turn, output_emitter, request_id), name="baseten.TTS.recv"
        )
        try:
            if await supervise(
                turn,
                sender,
                receiver,
                timeout=self._conn_options.timeout,
                server="Baseten TTS",
                api_error=_api_error,
            ):
                output_emitter.end_segment()
        except APIError as e:
            # After audio reached the listener a retry would say it twice.
            if turn.audio:
                e.retryable = False
            raise
        finally:
            tasks = (sender, receiver)
            try:
                await utils.aio.cancel_and_wait(*tasks)
                for task in tasks:  # retrieve what a task raised while the other decided
                    if not task.cancelled():
                        task.exception()
            finally:
                await ws.close()

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, turn: _Turn) -> bool:
        """Sends the words; returns whether there was any text."""
        chunker = WordChunker()
        started = False

        async def send_words(words: str) -> None:
            nonlocal started
            if not words:
                return
            if not started:
                started = True
                self._mark_started()
                await ws.send_str(self._opts.websocket_metadata())
            # A message that is exactly __END__ would end the session: the LLM said the word.
            await ws.send_str(f"{words} " if words == END_OF_INPUT else words)

        async for item in self._input_ch:
            if isinstance(item, str):
                await send_words(chunker.push(item))
            elif started or chunker.flush_pending():
                break  # a flush ends the (single) segment: Orpheus synthesizes once per socket
        await send_words(chunker.flush())
        if started:
            await ws.send_str(END_OF_INPUT)
            turn.ended_at = time.monotonic()
        return started

    async def _receive(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        turn: _Turn,
        output_emitter: tts.AudioEmitter,
        request_id: str,
    ) -> None:
        while True:
            msg = await ws.receive()  # the deadline is the supervisor's
            turn.last_message_at = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not turn.audio:
                    turn.audio = True
                    output_emitter.start_segment(segment_id=request_id)
                output_emitter.push(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                raise APIStatusError(
                    f"Baseten TTS error: {msg.data[:2000]}",
                    status_code=500,
                    request_id=request_id,
                    body=msg.data[:2000],
                )
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                # The server closes normally once it has spoken everything; any other close
                # (an error code, a dropped connection) loses the rest of the utterance.
                if turn.ended_at is not None and ws.close_code == aiohttp.WSCloseCode.OK:
                    if not turn.audio:  # text but no audio: still one (empty) segment
                        output_emitter.start_segment(segment_id=request_id)
                    return
                raise APIConnectionError(
                    f"Baseten TTS closed the connection before the end (code {ws.close_code})"
                )
            else:  # ERROR: the socket failed, or a message was over MAX_MESSAGE_BYTES
                raise APIConnectionError(f"Baseten TTS connection error: {failure_of(msg, ws)}")


async def _error_body(resp: aiohttp.ClientResponse) -> str:
    """The start of an error response's body, at most MAX_ERROR_BODY_BYTES of it."""
    body = bytearray()
    while len(body) < MAX_ERROR_BODY_BYTES:
        chunk = await resp.content.read(MAX_ERROR_BODY_BYTES - len(body))
        if not chunk:
            break
        body += chunk
    return body.decode(errors="replace")


def _start(output_emitter: tts.AudioEmitter, *, stream: bool) -> str:
    """Sets the emitter up for Orpheus' raw 24 kHz mono PCM; returns the request id."""
    request_id = utils.shortuuid()
    output_emitter.initialize(
        request_id=request_id,
        sample_rate=SAMPLE_RATE,
        num_channels=NUM_CHANNELS,
        mime_type="audio/pcm",
        stream=stream,
    )
    return request_id


def _check_options(opts: OrpheusOptions) -> None:
    if not opts.voice:
        raise ValueError("voice must not be empty")
    if opts.max_tokens <= 0 or opts.buffer_size <= 0:
        raise ValueError("max_tokens and buffer_size must be positive")
    if not 0.0 < opts.temperature <= 2.0:
        raise ValueError(f"temperature must be in (0, 2], got {opts.temperature}")


def _refuse(model: str, **given: bool) -> None:
    """A ValueError naming the arguments given that only `model` takes."""
    if names := [name for name, is_set in given.items() if is_set]:
        raise ValueError(f"{', '.join(names)} apply to {model} only")


def _api_error(e: BaseException) -> BaseException:
    """What to raise for a task's exception: network failures become a retryable
    APIConnectionError; anything else (a bug) is raised as itself, not disguised as a
    retryable error."""
    if isinstance(e, (aiohttp.ClientError, ConnectionError)):
        return APIConnectionError(f"Baseten TTS connection lost: {type(e).__name__}: {e}")
    return e
