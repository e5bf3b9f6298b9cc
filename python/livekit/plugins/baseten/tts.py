# SPDX-License-Identifier: Apache-2.0

"""Text-to-speech with Orpheus on Baseten, over WebSocket (streaming) or HTTP predict.

The endpoint's scheme picks the protocol: ``wss://`` streams text in and audio out on one
socket per utterance; ``https://`` posts the whole text and streams the audio back.
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
from ._spare_socket import SpareSocket
from ._websocket import connect, failure_of
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
        temperature: float = 0.6,
        max_tokens: int = 2000,
        buffer_size: NotGivenOr[int] = NOT_GIVEN,
        http_session: aiohttp.ClientSession | None = None,
    ) -> None:
        """Baseten Orpheus text-to-speech, 24 kHz mono.

        The endpoint, in priority order: ``model_endpoint``; ``model_id`` or ``chain_id``
        (built for ``transport``); the ``BASETEN_MODEL_ENDPOINT`` environment variable.
        ``wss://`` endpoints stream (``orpheus-3b-websockets`` trusses), ``https://`` ones use
        predict (``orpheus-best-performance`` trusses). URLs built from ids:

        - websocket (the default): ``wss://model-{id}.api.baseten.co/environments/production/websocket``
          (``chain-{id}`` for chains)
        - predict: ``https://model-{id}.api.baseten.co/environments/production/predict``
          (``https://chain-{id}.../environments/production/run_remote`` for chains)

        Args:
            model: only ``"orpheus"``: this plugin speaks Baseten's Orpheus protocols.
            transport: ``"websocket"`` or ``"predict"``, for URLs built from ``model_id`` or
                ``chain_id``; with ``model_endpoint`` it must agree with the scheme.
            voice: an Orpheus voice (tara, leah, jess, leo, dan, mia, zac, zoe) or another
                name the deployment knows; default ``"tara"``.
            language: Orpheus' voices are English; only ``"en"`` is accepted.
            temperature: sampling temperature (both transports).
            max_tokens: cap on generated audio tokens per request (both transports).
            buffer_size: words the WebSocket server gathers before generating when no
                sentence has ended (default 10); WebSocket endpoints only.
            http_session: the aiohttp session to use; defaults to the job's. TLS certificates
                are always verified; to trust a private CA (a proxy, a local server), pass a
                session whose connector does:
                ``aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context))``.
        """
        if model != "orpheus":
            raise ValueError(
                f"model {model!r} is not supported: this plugin speaks Baseten's Orpheus "
                "protocols (model='orpheus')"
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
        self._opts = OrpheusOptions(
            voice=voice if is_given(voice) else "tara",
            temperature=temperature,
            max_tokens=max_tokens,
            buffer_size=buffer_size if is_given(buffer_size) else DEFAULT_BUFFER_SIZE,
        )
        _check_options(self._opts)
        self._session = http_session
        self._streams: weakref.WeakSet[SynthesizeStream] = weakref.WeakSet()
        # One socket per utterance: the next one is dialled while the current one speaks.
        self._spare = SpareSocket(self._dial, refill=True) if streaming else None
        self._warming: asyncio.Task[None] | None = None
        # Predict takes whole text: stream() synthesizes sentence by sentence, as LiveKit's
        # StreamAdapter does for every non-streaming TTS. One adapter: each registers itself.
        self._adapter = (
            None
            if streaming
            else tts.StreamAdapter(tts=self, sentence_tokenizer=tokenize.basic.SentenceTokenizer())
        )

    @property
    def model(self) -> str:
        return "orpheus"

    @property
    def provider(self) -> str:
        return "Baseten"

    def __repr__(self) -> str:
        return f"baseten.TTS(endpoint={self._endpoint!r}, voice={self._opts.voice!r})"

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = utils.http_context.http_session()
        return self._session

    async def _dial(
        self, timeout: float, heartbeat: float | None
    ) -> aiohttp.ClientWebSocketResponse:
        return await connect(
            self._ensure_session(),
            self._endpoint,
            api_key=self._api_key,
            timeout=timeout,
            max_msg_size=MAX_MESSAGE_BYTES,
            heartbeat=heartbeat,
        )

    def prewarm(self) -> None:
        """Opens the connection the next synthesis will use, in the background (LiveKit's
        AgentSession calls this as the agent starts): a WebSocket dialled ahead for
        ``wss://`` endpoints, a kept-alive HTTP connection for predict. Needs a running event
        loop; failures are logged, and the synthesis then connects by itself."""
        if self._spare is not None:
            self._spare.prewarm()
        elif self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self._warm_http(), name="baseten.TTS.prewarm")

    async def _warm_http(self) -> None:
        """A HEAD request to the predict endpoint: the answer does not matter (often 405), the
        TCP and TLS connection it leaves in the session's keep-alive pool does."""
        try:
            async with self._ensure_session().head(
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
    ) -> None:
        """Changes options for the next synthesis (one already running keeps its own)."""
        if is_given(language) and language.split("-")[0].lower() not in ("en", "english"):
            raise ValueError(f"Orpheus' voices are English; language {language!r} is not offered")
        if is_given(buffer_size) and not self.capabilities.streaming:
            raise ValueError("buffer_size applies to WebSocket endpoints only")
        opts = dataclasses.replace(self._opts)
        if is_given(voice):
            opts.voice = voice
        if is_given(temperature):
            opts.temperature = temperature
        if is_given(max_tokens):
            opts.max_tokens = max_tokens
        if is_given(buffer_size):
            opts.buffer_size = buffer_size
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
        if self._adapter is not None:
            return self._adapter.stream(conn_options=conn_options)
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in list(self._streams)))
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
        session = self._tts._ensure_session()
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
            if await self._supervise(turn, sender, receiver):
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

    async def _supervise(
        self, turn: _Turn, sender: asyncio.Task[bool], receiver: asyncio.Task[None]
    ) -> bool:
        """Waits for the synthesis; returns whether there was text (and so a segment). Owns
        the deadline: once __END__ is out, the server must keep talking or close within the
        timeout. (No deadline before that: the LLM sets the pace of the text.)"""
        timeout = self._conn_options.timeout
        pending: set[asyncio.Task[Any]] = {sender, receiver}
        while True:
            wait = None
            if turn.ended_at is not None:
                deadline = max(turn.ended_at, turn.last_message_at) + timeout
                wait = max(deadline - time.monotonic(), 0.0)
            done, pending = await asyncio.wait(
                pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if (error := task.exception()) is not None:
                    raise _api_error(error)
            if sender in done and not sender.result():
                return False  # no text at all: nothing to synthesize, no segment
            if receiver in done:
                return True
            if not done and turn.ended_at is not None:
                if time.monotonic() >= max(turn.ended_at, turn.last_message_at) + timeout:
                    raise APITimeoutError(
                        f"Baseten TTS sent nothing for {timeout:g}s after the end of the text"
                    )

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


def _api_error(e: BaseException) -> BaseException:
    """What to raise for a task's exception: network failures become a retryable
    APIConnectionError; anything else (a bug) is raised as itself, not disguised as a
    retryable error."""
    if isinstance(e, (aiohttp.ClientError, ConnectionError)):
        return APIConnectionError(f"Baseten TTS connection lost: {type(e).__name__}: {e}")
    return e
