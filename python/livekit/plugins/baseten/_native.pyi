# SPDX-License-Identifier: Apache-2.0

"""The Rust core of the plugin (crate `baseten-py` over `baseten-core`).

Audio arguments accept `bytes` and `bytearray` without copying, and any other buffer
(`memoryview`, `array.array`) with one copy. Bad values are `ValueError`s; an argument of the
wrong type is a `TypeError` (a negative size an `OverflowError`).
"""

from typing import Literal, final

from livekit.agents.types import TimedString
from typing_extensions import Buffer

__all__ = [
    "AppendPipeline",
    "EndAudio",
    "HealthCheck",
    "Rebuffer",
    "SendPipeline",
    "ServerError",
    "Transcription",
    "UnknownMessage",
    "mulaw_decode",
    "mulaw_encode",
    "parse_message",
    "qwen3_language_code",
    "qwen3_language_name",
    "reseed_masks",
]

@final
class SendPipeline:
    """One stream's send path: little-endian int16 PCM at any rate and channel count in,
    Baseten wire frames out (mono, 16 kHz s16le in 1024-byte frames, or 8 kHz mu-law in
    256-byte frames). With `websocket=True` each frame comes out as one masked client
    WebSocket binary message (RFC 6455), ready to write to the socket."""

    def __new__(
        cls,
        input_rate: int,
        channels: int,
        encoding: Literal["pcm_s16le", "pcm_mulaw"],
        mulaw_flavour: Literal["continuous", "g711"] = "continuous",
        *,
        websocket: bool = False,
    ) -> SendPipeline: ...
    @property
    def input_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def wire_rate(self) -> int: ...
    @property
    def frame_bytes(self) -> int:
        """The audio bytes in each frame (the WebSocket message around them adds 8)."""
    @property
    def websocket(self) -> bool: ...
    @property
    def added_latency_s(self) -> float:
        """The latency the resampler adds, in seconds: its filter's look-ahead (about 1 ms
        at 48 kHz; 0.0 when the input is at the wire rate)."""
    @property
    def pending_samples(self) -> int:
        """Wire-rate samples buffered towards the next frame."""
    def push(
        self, pcm: Buffer, sample_rate: int | None = None, channels: int | None = None
    ) -> list[bytes]:
        """Adds input bytes (any size; a sample may be split across pushes) and returns the
        wire frames completed by them. Given `sample_rate` and `channels` (both or neither),
        first checks they are the pipeline's, raising ValueError if not."""
    def flush(self, pad: bool = True) -> list[bytes]:
        """Returns the resampler's tail and the leftover samples as a last frame, zero-padded to
        a whole frame unless `pad` is False."""

@final
class AppendPipeline:
    """Qwen3-ASR's send path: little-endian int16 PCM at any rate and channel count in,
    `{"type":"input_audio_buffer.append","audio":"<base64>"}` messages out, each carrying
    100 ms of 16 kHz mono audio. With `websocket=True` each message comes out as one masked
    client WebSocket text message (RFC 6455), ready to write to the socket."""

    def __new__(
        cls, input_rate: int, channels: int, *, websocket: bool = False
    ) -> AppendPipeline: ...
    @property
    def input_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def websocket(self) -> bool: ...
    @property
    def message_bytes(self) -> int:
        """The size of every append message (with its WebSocket framing, if any)."""
    @property
    def added_latency_s(self) -> float:
        """Worst-case latency the resampler adds (0.0 when the input is at 16 kHz)."""
    @property
    def pending_samples(self) -> int:
        """16 kHz samples buffered towards the next message."""
    def push(
        self, pcm: Buffer, sample_rate: int | None = None, channels: int | None = None
    ) -> list[bytes]:
        """Adds input bytes (any size; a sample may be split across pushes) and returns one
        append message per 100 ms they complete. Given `sample_rate` and `channels` (both or
        neither), first checks they are the pipeline's, raising ValueError if not."""
    def flush(self, commit: bool = True) -> list[bytes]:
        """Returns the leftover samples as a last message, zero-padded to 100 ms. With
        `commit`, `{"type":"input_audio_buffer.commit"}` follows the last message, in the same
        `bytes` (a message of silence carries it when no samples were left over); when nothing
        went out since the last commit, nothing is returned at all. So a committing flush
        returns messages exactly when it committed."""

def qwen3_language_code(name: str) -> str | None:
    """The code of a language as Qwen3-ASR names it ("English" -> "en", "Cantonese" ->
    "yue"), in any case; None for a name it does not list."""

def qwen3_language_name(code: str) -> str | None:
    """The name Qwen3 models give the language of `code` (a code or BCP 47 tag: "en-US" ->
    "English"); None for a language they do not list."""

@final
class Rebuffer:
    """Cuts a byte stream into frames of `frame_bytes`, like livekit-agents'
    `AudioByteStream`, made of samples of `sample_bytes` bytes."""

    def __new__(cls, frame_bytes: int, sample_bytes: int = 2) -> Rebuffer: ...
    @property
    def frame_bytes(self) -> int: ...
    @property
    def buffered_bytes(self) -> int: ...
    def push(self, data: Buffer) -> list[bytes]: ...
    def flush(self, pad: bool = False) -> list[bytes]:
        """Returns the complete samples left as one last frame (zero-padded when `pad`); a
        trailing partial sample stays buffered."""
    def clear(self) -> None: ...

def reseed_masks() -> None:
    """Reseeds this thread's WebSocket masking-key generator (in a process just forked, which
    would otherwise send the keys its parent sends)."""

def mulaw_encode(pcm: Buffer, flavour: Literal["g711", "continuous"] = "g711") -> bytes:
    """int16 little-endian PCM -> mu-law; "g711" is bit-exact with `audioop.lin2ulaw(pcm, 2)`."""

def mulaw_decode(ulaw: Buffer, flavour: Literal["g711", "continuous"] = "g711") -> bytes:
    """mu-law -> int16 little-endian PCM; "g711" is bit-exact with `audioop.ulaw2lin(ulaw, 2)`."""

@final
class Transcription:
    """A partial or final transcript, its times on the caller's timeline (`parse_message`)."""

    @property
    def is_final(self) -> bool: ...
    @property
    def text(self) -> str: ...
    @property
    def language(self) -> str | None: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def audio_start(self) -> float:
        """Where the transcript starts in its connection's own audio, in seconds (clamped)."""
    @property
    def audio_end(self) -> float:
        """Where the transcript ends in its connection's own audio, in seconds (clamped)."""
    @property
    def clamped(self) -> bool:
        """Whether the times reached past the audio sent and were clamped to it."""
    @property
    def confidence(self) -> float | None:
        """Mean probability of the words that carry one."""
    @property
    def words(self) -> list[TimedString]: ...
    @property
    def audio_length_sec(self) -> float | None: ...
    @property
    def is_end_of_audio_flush(self) -> bool: ...
    @property
    def transcription_num(self) -> int | None: ...

@final
class EndAudio:
    @property
    def status(self) -> str | None: ...

@final
class HealthCheck:
    @property
    def healthy(self) -> bool | None: ...
    @property
    def partial_interval(self) -> float | None: ...

@final
class ServerError:
    @property
    def error_type(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def stream_id(self) -> str | None: ...
    @property
    def recoverable(self) -> bool: ...

@final
class UnknownMessage:
    @property
    def kind(self) -> str: ...

_ServerMessage = Transcription | EndAudio | HealthCheck | ServerError | UnknownMessage

def parse_message(
    text: str,
    time_offset: float = 0.0,
    origin: float = 0.0,
    audio_sent: float = ...,
    *,
    qwen3: bool = False,
) -> _ServerMessage:
    """Parses one text message of Baseten's Whisper server (with `qwen3`, of its Qwen3-ASR
    server: the same messages, whose language names become codes, and whose errors carry
    their fields at the top level); raises ValueError if malformed.

    A transcript's times count from the start of its connection's audio. They are clamped to
    `audio_sent` (default: infinity), the seconds of audio that connection was sent, when they
    reach past it by more than Whisper's slack (1 s), then moved onto the caller's timeline:
    plus `origin` (where the connection's audio began in the stream's input) plus
    `time_offset` (the caller's offset, which each word also carries as its
    `start_time_offset`)."""
