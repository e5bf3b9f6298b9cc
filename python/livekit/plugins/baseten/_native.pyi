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
    "websocket_binary_frame",
]

@final
class SendPipeline:
    """One stream's send path: little-endian int16 PCM at any rate and channel count in,
    Baseten wire frames out (mono, 16 kHz s16le in 1024-byte frames, or 8 kHz mu-law in
    256-byte frames)."""

    def __new__(
        cls,
        input_rate: int,
        channels: int,
        encoding: Literal["pcm_s16le", "pcm_mulaw"],
        mulaw_flavour: Literal["continuous", "g711"] = "continuous",
    ) -> SendPipeline: ...
    @property
    def input_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def wire_rate(self) -> int: ...
    @property
    def frame_bytes(self) -> int: ...
    @property
    def added_latency_s(self) -> float:
        """Worst-case latency the resampler adds (0.0 when the input is at the wire rate)."""
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

def mulaw_encode(pcm: Buffer, flavour: Literal["g711", "continuous"] = "g711") -> bytes:
    """int16 little-endian PCM -> mu-law; "g711" is bit-exact with `audioop.lin2ulaw(pcm, 2)`."""

def mulaw_decode(ulaw: Buffer, flavour: Literal["g711", "continuous"] = "g711") -> bytes:
    """mu-law -> int16 little-endian PCM; "g711" is bit-exact with `audioop.ulaw2lin(ulaw, 2)`."""

def websocket_binary_frame(payload: Buffer) -> bytes:
    """`payload` as one masked client-to-server binary WebSocket frame (RFC 6455), ready to be
    written to the connection's transport."""

@final
class Transcription:
    """A partial or final transcript; times already include the `time_offset` given."""

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

def parse_message(text: str, time_offset: float = 0.0) -> _ServerMessage:
    """Parses one text message of Baseten's Whisper server; raises ValueError if malformed."""
