# SPDX-License-Identifier: Apache-2.0

import gc
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.agents.types import NOT_GIVEN, TimedString
from livekit.plugins.baseten import _native

FINAL = {
    "type": "transcription",
    "is_final": True,
    "transcription_num": 3,
    "segments": [
        {
            "start_time": 1.5,
            "end_time": 2.75,
            "text": " Hello  world.",
            "log_prob": -0.2,
            "word_timestamps": [
                {
                    "word": " Hello",
                    "start_time": 1.5,
                    "end_time": 1.9,
                    "prob": 0.9,
                    "speaker": None,
                },
                {
                    "word": " world.",
                    "start_time": 2.0,
                    "end_time": 2.75,
                    "prob": 0.7,
                    "speaker": None,
                },
            ],
            "speaker": None,
            "language_code": "en",
        },
        {"start_time": 3.0, "end_time": 4.0, "text": " Bye", "word_timestamps": []},
    ],
    "language_code": None,
    "language_prob": None,
    "diarization": [],
    "audio_length_sec": 4.2,
    "next_partial": None,
    "is_end_of_audio_flush": True,
}


def parse_transcription(msg: object, offset: float = 0.0) -> _native.Transcription:
    parsed = _native.parse_message(json.dumps(msg), offset)
    assert isinstance(parsed, _native.Transcription)
    return parsed


def test_final_with_words_and_a_wordless_segment() -> None:
    t = parse_transcription(FINAL, 10.0)
    # The top-level language is null: the first segment's fills in.
    assert (t.is_final, t.text, t.language) == (True, "Hello world. Bye", "en")
    assert (t.start, t.end) == (11.5, 14.0)
    assert (t.audio_length_sec, t.is_end_of_audio_flush, t.transcription_num) == (4.2, True, 3)
    assert t.confidence == pytest.approx(0.8)
    expected = [
        TimedString(
            "Hello", start_time=11.5, end_time=11.9, confidence=0.9, start_time_offset=10.0
        ),
        TimedString(
            "world.", start_time=12.0, end_time=12.75, confidence=0.7, start_time_offset=10.0
        ),
        TimedString("Bye", start_time=13.0, end_time=14.0, start_time_offset=10.0),
    ]
    for ours, theirs in zip(t.words, expected, strict=True):
        assert type(ours) is TimedString
        assert str(ours) == str(theirs)
        assert vars(ours) == vars(theirs)
    assert t.words[2].confidence is NOT_GIVEN


def test_words_are_left_to_reference_counting() -> None:
    # Hundreds of streams' words in flight were most of what each garbage collection walked;
    # a word cannot be part of a reference cycle, so the collector never needs to see one.
    words = parse_transcription(FINAL, 10.0).words
    assert len(words) == 3 and not any(gc.is_tracked(w) for w in words)
    # Nor anything in a word's stead, such as its __dict__: with every word carrying a
    # probability (no NOT_GIVEN to refer to), a message's list of words is all the collector
    # sees of it. (Before: a word and its __dict__, 7 tracked objects for this message.)
    segment = {"start_time": 0.0, "end_time": 1.0, "text": "a b c", "word_timestamps": []}
    segment["word_timestamps"] = [
        {"word": w, "start_time": 0.0, "end_time": 1.0, "prob": 0.9} for w in "abc"
    ]
    msg = {"type": "transcription", "is_final": True, "segments": [segment]}
    parse_transcription(msg)  # anything made once, at first use, is made now
    gc.collect()
    before = len(gc.get_objects())
    kept = [parse_transcription(msg).words for _ in range(100)]
    tracked = len(gc.get_objects()) - before
    assert 100 <= tracked <= 100 + 5, tracked  # the lists (and a few of this frame's own)
    assert all(gc.is_tracked(words) for words in kept)


def test_partial_with_language_and_no_segments() -> None:
    msg = {"type": "transcription", "is_final": False, "segments": [], "language_code": "de"}
    t = parse_transcription(msg)
    assert (t.is_final, t.text, t.language, t.words, t.confidence) == (False, "", "de", [], None)


def test_control_and_error_messages() -> None:
    end = _native.parse_message('{"type":"end_audio","body":{"status":"finished"}}')
    assert isinstance(end, _native.EndAudio) and end.status == "finished"
    health = _native.parse_message(
        '{"type":"health_check","body":{"healthy":true,"partial_interval":0.5}}'
    )
    assert isinstance(health, _native.HealthCheck)
    assert (health.healthy, health.partial_interval) == (True, 0.5)
    err = _native.parse_message(
        '{"type":"error","body":{"error_type":"AUDIO_PROCESSING_ERROR","message":"bad frame",'
        '"stream_id":"s","recoverable":false}}'
    )
    assert isinstance(err, _native.ServerError)
    assert (err.error_type, err.message, err.stream_id, err.recoverable) == (
        "AUDIO_PROCESSING_ERROR",
        "bad frame",
        "s",
        False,
    )
    other = _native.parse_message('{"type":"session.created","body":[1,2]}')
    assert isinstance(other, _native.UnknownMessage) and other.kind == "session.created"


def test_an_error_with_a_badly_typed_body_is_still_an_error() -> None:
    err = _native.parse_message('{"type":"error","body":{"recoverable":"no","message":5}}')
    assert isinstance(err, _native.ServerError)
    assert err.recoverable is False
    assert err.message


@pytest.mark.parametrize(
    "bad", ["", "{", "[]", "null", '{"is_final":"yes"}', '{"segments":[{"start_time":"x"}]}']
)
def test_malformed_messages_are_value_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="malformed server message"):
        _native.parse_message(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from([*list(FINAL), "transcript", "body"]), json_values))
def test_any_json_object_parses_or_is_a_value_error(msg: dict[str, object]) -> None:
    try:
        parsed = _native.parse_message(json.dumps(msg))
    except ValueError:
        return
    if isinstance(parsed, _native.Transcription):
        assert all(0.0 <= w.start_time <= w.end_time for w in parsed.words)  # type: ignore[operator]


@given(st.text())
def test_any_text_parses_or_is_a_value_error(text: str) -> None:
    try:
        _native.parse_message(text)
    except ValueError:
        pass
