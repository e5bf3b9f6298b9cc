// SPDX-License-Identifier: Apache-2.0

//! `transcript::parse` on arbitrary text.
//!
//! A message that parses is held to what the module documents (clean times, normalised text,
//! strings borrowed from the input), and a transcription is compared field by field with an
//! independent reading of the same JSON through `serde_json::Value`.

#![no_main]

use std::borrow::Cow;

use baseten_core::transcript::{parse, ServerMessage, Transcription, Word};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    let Ok(message) = parse(json) else { return };
    let value: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        // serde_json skips unknown fields (and keeps `body` raw) without converting them, so
        // their numbers, escapes and depth go unchecked: only a `Value` trips on those.
        Err(e) if SKIPPED_CONTENT_ERRORS.iter().any(|m| e.to_string().starts_with(m)) => return,
        Err(e) => panic!("accepted text that is not JSON ({e}): {message:?}"),
    };
    let Some(object) = value.as_object() else {
        panic!("accepted a message that is not a JSON object: {message:?}")
    };
    check_message(json, object, &message);
});

/// What serde_json reports only when it converts a value, not when it skips one.
const SKIPPED_CONTENT_ERRORS: [&str; 5] = [
    "number out of range",
    "invalid unicode code point",
    "lone leading surrogate in hex escape",
    "unexpected end of hex escape",
    "recursion limit exceeded",
];

/// The message `parse` gives an `error` whose body cannot be read (a `'static` string).
const UNREADABLE_BODY: &str = "error message with an unreadable body";

fn check_message(json: &str, object: &Map<String, Value>, message: &ServerMessage<'_>) {
    let kind = object.get("type").and_then(Value::as_str);
    match message {
        ServerMessage::Transcription(t) => {
            assert!(matches!(kind, None | Some("transcription")), "type {kind:?} as a transcript");
            check_transcription(json, t);
            assert_eq!(*t, expected_transcription(object), "differs from the Value reading");
        }
        ServerMessage::EndAudio { status } => {
            assert_eq!(kind, Some("end_audio"));
            if let Some(status) = status {
                assert_borrowed_from(json, status);
                assert_eq!(Some(status.as_ref()), body_str(object, "status"));
            }
        }
        ServerMessage::HealthCheck { healthy, partial_interval } => {
            assert_eq!(kind, Some("health_check"));
            if healthy.is_some() {
                assert_eq!(*healthy, body(object).and_then(|b| b.get("healthy")?.as_bool()));
            }
            if let Some(p) = partial_interval {
                assert!(p.is_finite(), "partial_interval {p}");
                let expected = body(object).and_then(|b| b.get("partial_interval")?.as_f64());
                assert_eq!(Some(*p), expected);
            }
        }
        ServerMessage::Error(e) => {
            assert_eq!(kind, Some("error"));
            for (field, got) in [
                ("error_type", &e.error_type),
                ("message", &e.message),
                ("stream_id", &e.stream_id),
            ] {
                let Some(got) = got else { continue };
                if got == UNREADABLE_BODY {
                    continue;
                }
                assert_borrowed_from(json, got);
                let expected = error_fields(object).and_then(|f| f.get(field)?.as_str());
                assert_eq!(Some(got.as_ref()), expected, "{field}");
            }
            // Only an explicit `true` keeps a session going.
            let explicit = error_fields(object).and_then(|f| f.get("recoverable")?.as_bool());
            assert!(!e.recoverable || explicit == Some(true), "recoverable without a true flag");
        }
        ServerMessage::Other(other) => {
            assert_borrowed_from(json, other);
            assert_eq!(kind, Some(other.as_ref()));
            assert!(
                !matches!(other.as_ref(), "transcription" | "end_audio" | "health_check" | "error"),
                "a known type reported as unknown: {other}"
            );
        }
    }
}

/// What the module docs promise of any transcription, whatever its input.
fn check_transcription(json: &str, t: &Transcription<'_>) {
    assert_time(t.start, "start");
    assert_time(t.end, "end");
    assert!(t.start <= t.end, "start {} after end {}", t.start, t.end);
    assert_normalised(&t.text);
    if let Some(language) = &t.language {
        assert!(!language.is_empty(), "an empty language is None");
        assert_borrowed_from(json, language);
    }
    if let Some(len) = t.audio_length_sec {
        assert!(len.is_finite(), "audio_length_sec {len}");
    }
    for w in &t.words {
        check_word(json, w);
    }
    check_confidence(t);
    // Shifting moves every time by the offset and keeps every order.
    let shifted = t.clone().shifted(2.5);
    assert_eq!(shifted.start, t.start + 2.5);
    assert_eq!(shifted.end, t.end + 2.5);
    for (s, w) in shifted.words.iter().zip(&t.words) {
        assert!(s.start <= s.end);
        assert_eq!((s.start, s.end), (w.start + 2.5, w.end + 2.5));
    }
}

/// The mean of the words' probabilities: present exactly when one is, a probability, and
/// between the smallest and the largest.
fn check_confidence(t: &Transcription<'_>) {
    let probabilities: Vec<f64> = t.words.iter().filter_map(|w| w.probability).collect();
    let Some(c) = t.confidence() else {
        assert!(probabilities.is_empty(), "no confidence from {probabilities:?}");
        return;
    };
    let lo = probabilities.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = probabilities.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // The division rounds, so allow a few ulps beyond the extremes.
    let slack = 1e-12 * lo.abs().max(hi.abs());
    assert!(
        (0.0..=1.0).contains(&c) && lo - slack <= c && c <= hi + slack,
        "confidence {c} outside [{lo}, {hi}]"
    );
}

fn check_word(json: &str, w: &Word<'_>) {
    assert!(!w.text.is_empty(), "an empty word");
    assert_eq!(w.text.trim(), w.text.as_ref(), "an untrimmed word");
    assert_borrowed_from(json, &w.text);
    assert_time(w.start, "word start");
    assert_time(w.end, "word end");
    assert!(w.start <= w.end, "word start {} after its end {}", w.start, w.end);
    if let Some(p) = w.probability {
        assert!((0.0..=1.0).contains(&p), "probability {p}");
    }
}

fn assert_time(t: f64, what: &str) {
    assert!(t.is_finite() && t >= 0.0, "{what} {t}");
}

/// Single spaces between words, none at either end, no other whitespace.
fn assert_normalised(text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(text, words.join(" "), "text not normalised: {text:?}");
}

/// A borrowed string must point into the message, not at some copy.
// A `&Cow`, not the `&str` clippy suggests: which variant it is, is the point.
#[allow(clippy::ptr_arg)]
fn assert_borrowed_from(json: &str, s: &Cow<'_, str>) {
    if let Cow::Borrowed(b) = s {
        let input = json.as_bytes().as_ptr_range();
        let (start, end) = (b.as_ptr(), b.as_ptr().wrapping_add(b.len()));
        assert!(
            input.start <= start && end <= input.end,
            "borrowed {b:?} from outside the message"
        );
    }
}

fn body(object: &Map<String, Value>) -> Option<&Map<String, Value>> {
    object.get("body")?.as_object()
}

/// Where an error's fields are: in its body (Whisper), or at its top level when it has none
/// (Qwen3-ASR).
fn error_fields(object: &Map<String, Value>) -> Option<&Map<String, Value>> {
    match object.get("body") {
        None | Some(Value::Null) => Some(object),
        Some(body) => body.as_object(),
    }
}

fn body_str<'v>(object: &'v Map<String, Value>, field: &str) -> Option<&'v str> {
    body(object)?.get(field)?.as_str()
}

/// The transcription the module docs describe, read from a `Value` instead of serde structs.
fn expected_transcription(object: &Map<String, Value>) -> Transcription<'static> {
    let segments: Vec<&Map<String, Value>> = match object.get("segments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(|s| as_object(s, "segment")).collect(),
        Some(other) => panic!("accepted segments that are not an array: {other}"),
    };
    let normalise = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = match object.get("transcript").and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() => normalise(t),
        _ => normalise(
            &segments.iter().filter_map(|s| s.get("text")?.as_str()).collect::<Vec<_>>().join(" "),
        ),
    };
    let language = non_empty_str(object, "language_code")
        .or_else(|| segments.iter().find_map(|s| non_empty_str(s, "language_code")))
        .map(|l| Cow::Owned(l.to_owned()));
    let start = segments.first().map_or(0.0, |s| times(s).0);
    let end = segments.last().map_or(start, |s| times(s).1).max(start);
    let mut words = Vec::new();
    for seg in &segments {
        let (seg_start, seg_end) = times(seg);
        let timed: Vec<&Map<String, Value>> = match seg.get("word_timestamps") {
            Some(Value::Array(items)) => items.iter().map(|w| as_object(w, "word")).collect(),
            _ => Vec::new(),
        };
        if timed.is_empty() {
            if let Some(t) = seg.get("text").and_then(Value::as_str).map(str::trim) {
                if !t.is_empty() {
                    let text = Cow::Owned(t.to_owned());
                    words.push(Word { text, start: seg_start, end: seg_end, probability: None });
                }
            }
            continue;
        }
        for w in timed {
            let Some(t) = w.get("word").and_then(Value::as_str).map(str::trim) else { continue };
            if t.is_empty() {
                continue;
            }
            let (start, end) = times(w);
            let probability = w.get("prob").and_then(Value::as_f64).map(|p| p.clamp(0.0, 1.0));
            words.push(Word { text: Cow::Owned(t.to_owned()), start, end, probability });
        }
    }
    let legacy_final =
        object.get("message_type").and_then(Value::as_str).map(|m| m != "partial_transcript");
    Transcription {
        is_final: object.get("is_final").and_then(Value::as_bool).or(legacy_final).unwrap_or(true),
        text,
        language,
        start,
        end,
        words,
        audio_length_sec: object.get("audio_length_sec").and_then(Value::as_f64),
        is_end_of_audio_flush: object
            .get("is_end_of_audio_flush")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        transcription_num: object.get("transcription_num").and_then(|v| {
            v.as_i64().or_else(|| {
                v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)
            })
        }),
    }
}

fn non_empty_str<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    m.get(key)?.as_str().filter(|s| !s.is_empty())
}

fn as_object<'v>(v: &'v Value, what: &str) -> &'v Map<String, Value> {
    match v.as_object() {
        Some(m) => m,
        None => panic!("accepted a {what} that is not a JSON object: {v}"),
    }
}

/// (start, end) of a segment or word: `*_time` wins over the old names, a missing or negative
/// time is 0, and an end before the start moves to the start.
fn times(m: &Map<String, Value>) -> (f64, f64) {
    let time = |new: &str, old: &str| {
        let t = m.get(new).and_then(Value::as_f64).or_else(|| m.get(old).and_then(Value::as_f64));
        t.unwrap_or(0.0).max(0.0)
    };
    let start = time("start_time", "start");
    (start, time("end_time", "end").max(start))
}
