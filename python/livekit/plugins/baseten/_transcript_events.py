# SPDX-License-Identifier: Apache-2.0

"""The server's transcripts as LiveKit speech events."""

from __future__ import annotations

import functools
from collections.abc import Callable

from livekit.agents import stt
from livekit.agents.language import LanguageCode

from . import _native

E = stt.SpeechEventType


class TranscriptEvents:
    """Turns one stream's transcripts into LiveKit events, an utterance at a time:
    START_OF_SPEECH before its first words (with `onset(seconds)`: when the transcript's first
    audio was spoken, on the wall clock), INTERIM_TRANSCRIPT and FINAL_TRANSCRIPT, and
    END_OF_SPEECH right after the final, carrying its alternative (whose `end_time` tells
    LiveKit when the speech ended)."""

    __slots__ = ("_onset", "_speaking")

    def __init__(self, onset: Callable[[float], float | None]) -> None:
        self._onset = onset
        self._speaking = False

    def of(self, t: _native.Transcription, request_id: str, language: str) -> list[stt.SpeechEvent]:
        """The events for transcript `t`; `language` names it when the server does not."""
        events = []
        said: list[stt.SpeechData] = []
        if t.text:
            if not self._speaking:
                self._speaking = True
                onset = self._onset(t.audio_start)
                events.append(
                    stt.SpeechEvent(E.START_OF_SPEECH, request_id, speech_start_time=onset)
                )
            data = stt.SpeechData(
                language=language_code(t.language or language),
                text=t.text,
                start_time=t.start,
                end_time=t.end,
                confidence=t.confidence if t.confidence is not None else 0.0,
                words=t.words,
            )
            kind = E.FINAL_TRANSCRIPT if t.is_final else E.INTERIM_TRANSCRIPT
            events.append(stt.SpeechEvent(kind, request_id=request_id, alternatives=[data]))
            said = [data]
        if t.is_final and self._speaking:
            self._speaking = False
            events.append(stt.SpeechEvent(E.END_OF_SPEECH, request_id, alternatives=said))
        return events


@functools.lru_cache(maxsize=128)
def language_code(code: str) -> LanguageCode:
    """One LanguageCode per code, shared by every event: a stream names the same language in
    each of its transcripts, and a fresh one per event is one more object for the garbage
    collector to walk (and a normalisation) per transcript, hundreds of times a second."""
    return LanguageCode(code)


def joined(finals: list[stt.SpeechData], language: str) -> stt.SpeechData:
    """One alternative for a recognition made of several finals (`recognize()`)."""
    if not finals:
        return stt.SpeechData(language=LanguageCode(language), text="")
    words = [w for f in finals for w in f.words or []]
    return stt.SpeechData(
        language=finals[0].language,
        text=" ".join(f.text for f in finals),
        start_time=finals[0].start_time,
        end_time=finals[-1].end_time,
        confidence=sum(f.confidence for f in finals) / len(finals),
        words=words,
    )
