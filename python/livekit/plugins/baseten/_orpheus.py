# SPDX-License-Identifier: Apache-2.0

"""The client side of Baseten's Orpheus TTS protocols: what is sent, and how what comes back
is read. The protocols are described in docs/protocols.md."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from livekit.agents import tokenize

SAMPLE_RATE = 24000
NUM_CHANNELS = 1
END_OF_INPUT = "__END__"
# The predict server refused prompts over 6144 characters (HTTP 400); longer text is split at
# sentence boundaries into requests below this.
MAX_PROMPT_CHARS = 6000
# Orpheus spends about 85 audio tokens on a second of speech, and speech runs at about 15
# characters a second: a request's speech must fit its max_tokens, or an older server (one
# that does not split prompts itself) cuts it short. With a fifth kept in reserve, 2000 tokens
# are good for about 280 characters, the chunk newer servers split at themselves.
CHARS_PER_TOKEN = 15 / 85 * 0.8
# A generous budget for generating speech, per character of prompt, on top of the connect
# timeout: Orpheus speaks about 15 characters a second and generates faster than real time.
SECONDS_PER_CHAR = 0.1


@dataclass
class OrpheusOptions:
    voice: str
    temperature: float
    max_tokens: int
    buffer_size: int

    def websocket_metadata(self) -> str:
        """The first message on the WebSocket: only what the server reads."""
        return json.dumps(
            {
                "voice": self.voice,
                "max_tokens": self.max_tokens,
                "buffer_size": self.buffer_size,
                "temperature": self.temperature,
            }
        )

    def predict_body(self, prompt: str, request_id: str) -> dict[str, object]:
        """The JSON body of one predict request: only what the server reads."""
        return {
            "prompt": prompt,
            "voice": self.voice,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "request_id": request_id,
        }


class WordChunker:
    """Re-chunks LLM tokens ("Hel", "lo wor", "ld") into whole words: the WebSocket server
    splits every message on whitespace and counts each piece as a word, so fragments would
    be spoken apart. A partial last word is held until whitespace, a flush or the end."""

    def __init__(self) -> None:
        self._held = ""

    def push(self, token: str) -> str:
        """The whole words `token` completes, space-separated ("" when none)."""
        text = self._held + token
        words = text.split()
        if words and not text[-1].isspace():
            self._held = words.pop()  # the last word may go on in the next token
        else:
            self._held = ""
        return " ".join(words)

    def flush_pending(self) -> bool:
        """Whether a partial word is held."""
        return bool(self._held.strip())

    def flush(self) -> str:
        """The held partial word, if any."""
        held, self._held = self._held.strip(), ""
        return held


class WavHeaderStripper:
    """Removes the RIFF/WAVE header older predict servers put before the PCM (size fields 0,
    since they stream), even when it arrives split across chunks. Newer servers send bare
    PCM, which passes through untouched."""

    def __init__(self) -> None:
        self._head = b""
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return chunk
        self._head += chunk
        if len(self._head) < 12 and b"RIFF".startswith(self._head[:4]):
            return b""  # could still be a header
        if not (self._head.startswith(b"RIFF") and self._head[8:12] == b"WAVE"):
            return self._release(self._head)
        # Walk the chunks after "WAVE" up to "data": the PCM starts right after its header.
        offset = 12
        while offset + 8 <= len(self._head):
            chunk_id = self._head[offset : offset + 4]
            (size,) = struct.unpack_from("<I", self._head, offset + 4)
            if chunk_id == b"data":
                return self._release(self._head[offset + 8 :])
            offset += 8 + size + (size & 1)
            if offset > 4096:  # not a header we understand: keep the bytes
                return self._release(self._head)
        return b""

    def _release(self, data: bytes) -> bytes:
        self._done = True
        self._head = b""
        return data


def prompt_limit(max_tokens: int) -> int:
    """The longest prompt whose speech fits `max_tokens`, and the server's limit."""
    return max(40, min(MAX_PROMPT_CHARS, int(max_tokens * CHARS_PER_TOKEN)))


def split_prompt(text: str, limit: int = MAX_PROMPT_CHARS) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut between sentences (or, for a
    sentence longer than the limit, between words)."""
    if len(text) <= limit:
        return [text]
    sentences = tokenize.basic.SentenceTokenizer().tokenize(text)
    return _pack((part for s in sentences for part in _split_long(s, limit)), limit)


def _split_long(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    # A "word" longer than the limit is cut.
    chunks = (w[i : i + limit] for w in sentence.split() for i in range(0, len(w), limit))
    return _pack(chunks, limit)


def _pack(parts: Iterable[str], limit: int) -> list[str]:
    """Joins `parts` with spaces into as few pieces of at most `limit` characters as the
    order allows (every part is at most `limit` long)."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces
