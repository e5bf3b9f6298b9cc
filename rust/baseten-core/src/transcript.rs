// SPDX-License-Identifier: Apache-2.0

//! Parsing of the JSON text messages Baseten's streaming Whisper server sends.
//!
//! One message in, one [`ServerMessage`] out, with strings borrowed from the input wherever
//! JSON escapes allow. Baseten's Qwen3-ASR server sends the same transcription messages, and
//! errors with their fields at the top level instead of in a body (see [`crate::qwen3`]).
//! Unknown fields are skipped. Malformed JSON, a message, segment or word
//! that is not a JSON object, and a transcript field of the wrong type, are a [`ParseError`];
//! the body of a control message is read leniently instead, so that a server error is never
//! lost to a badly typed field. Times are cleaned up so that consumers can trust them: negative
//! times become 0 and an end before its start is moved to the start.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A message from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage<'a> {
    /// A partial or final transcript (`"type": "transcription"`, or no `type`, as older
    /// servers send).
    Transcription(Transcription<'a>),
    /// A reply to the client's `end_audio`: `status` is `"acknowledged"`, then `"finished"`.
    EndAudio {
        /// The `body.status` field.
        status: Option<Cow<'a, str>>,
    },
    /// A reply to the client's `health_check`.
    HealthCheck {
        /// The `body.healthy` field.
        healthy: Option<bool>,
        /// The `body.partial_interval` field, in seconds.
        partial_interval: Option<f64>,
    },
    /// An error report.
    Error(ServerError<'a>),
    /// A message of a type this parser does not know, with that type.
    Other(Cow<'a, str>),
}

/// A transcript of the current utterance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcription<'a> {
    /// Whether the utterance is closed (partials are replaced by later ones).
    pub is_final: bool,
    /// The segment texts joined by single spaces, whitespace runs collapsed, trimmed
    /// (a non-blank top-level `transcript` takes precedence).
    pub text: String,
    /// The language code: the message's, or else the first segment's; `None` when neither
    /// is a non-empty string.
    pub language: Option<Cow<'a, str>>,
    /// Start of the first segment, in seconds from the start of the connection's audio.
    pub start: f64,
    /// End of the last segment, in seconds.
    pub end: f64,
    /// Timed words: each segment's word timestamps, or the segment itself when it has none.
    pub words: Vec<Word<'a>>,
    /// Seconds of audio this result covers, as the server reports it.
    pub audio_length_sec: Option<f64>,
    /// Set on the final produced by an `end_audio` flush.
    pub is_end_of_audio_flush: bool,
    /// The utterance counter; partials share it with the final that closes them.
    pub transcription_num: Option<i64>,
}

/// How far past the audio it was sent a transcript may reach and still be believed: Whisper's
/// timestamps can overshoot the end of the audio a little.
pub const TIME_SLACK_S: f64 = 1.0;

impl Transcription<'_> {
    /// Keeps the times within the `audio_sent` seconds of audio the server was sent: a
    /// transcript ending more than [`TIME_SLACK_S`] later comes from a broken server, and all
    /// its times are clamped to `audio_sent`. Returns whether they were.
    pub fn clamp_to_audio(&mut self, audio_sent: f64) -> bool {
        // A NaN limit clamps nothing.
        let past = self.end.partial_cmp(&(audio_sent + TIME_SLACK_S));
        if past != Some(std::cmp::Ordering::Greater) {
            return false;
        }
        self.start = self.start.min(audio_sent);
        self.end = audio_sent;
        for w in &mut self.words {
            w.start = w.start.min(audio_sent);
            w.end = w.end.min(audio_sent);
        }
        true
    }

    /// Adds `offset` seconds to every time: Baseten's times count from the start of the
    /// connection's audio, and a stream that reconnects keeps one timeline across connections.
    pub fn shifted(mut self, offset: f64) -> Self {
        self.start += offset;
        self.end += offset;
        for w in &mut self.words {
            w.start += offset;
            w.end += offset;
        }
        self
    }

    /// The mean probability of the words that carry one, if any do: in 0..=1, as they are.
    pub fn confidence(&self) -> Option<f64> {
        let (sum, n) = self
            .words
            .iter()
            .filter_map(|w| w.probability)
            .fold((0.0, 0usize), |(s, n), p| (s + p, n + 1));
        (n > 0).then(|| sum / n as f64)
    }
}

/// One timed word (or a whole segment, when the server sent no word timestamps).
#[derive(Clone, Debug, PartialEq)]
pub struct Word<'a> {
    /// The text, trimmed.
    pub text: Cow<'a, str>,
    /// Start, in seconds from the start of the connection's audio.
    pub start: f64,
    /// End, in seconds, never before `start`.
    pub end: f64,
    /// The recogniser's probability for the word, in 0..=1 (clamped); `None` for a whole
    /// segment.
    pub probability: Option<f64>,
}

/// The body of an `error` message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerError<'a> {
    /// E.g. `AUDIO_PROCESSING_ERROR`.
    pub error_type: Option<Cow<'a, str>>,
    /// The human-readable message.
    pub message: Option<Cow<'a, str>>,
    /// The server's id for the stream.
    pub stream_id: Option<Cow<'a, str>>,
    /// Whether the session goes on; a missing flag, or a body that cannot be read, counts as
    /// not recoverable.
    pub recoverable: bool,
}

/// A message that is not valid JSON, or has a field of the wrong type.
#[derive(Debug)]
pub struct ParseError(serde_json::Error);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed server message: {}", self.0)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Parses one text message from the server.
pub fn parse(json: &str) -> Result<ServerMessage<'_>, ParseError> {
    let Object(raw): Object<RawMessage<'_>> = serde_json::from_str(json).map_err(ParseError)?;
    // Control bodies are read leniently: a body of the wrong shape gives empty fields.
    let body = || -> Option<RawBody<'_>> {
        match raw.body {
            None => Some(RawBody::default()),
            Some(b) => serde_json::from_str(b.get()).ok().map(|Object(body)| body),
        }
    };
    Ok(match raw.kind.as_ref().map(|k| k.0.as_ref()) {
        None | Some("transcription") => ServerMessage::Transcription(Transcription::from_raw(raw)),
        Some("end_audio") => ServerMessage::EndAudio { status: body().and_then(|b| cow(b.status)) },
        Some("health_check") => {
            let body = body().unwrap_or_default();
            ServerMessage::HealthCheck {
                healthy: body.healthy,
                partial_interval: body.partial_interval,
            }
        }
        // Whisper puts an error's fields in its body; Qwen3-ASR at the top level.
        Some("error") => {
            ServerMessage::Error(match raw.body.map_or_else(|| top_level(json), |_| body()) {
                Some(body) => ServerError {
                    error_type: cow(body.error_type),
                    message: cow(body.message),
                    stream_id: cow(body.stream_id),
                    recoverable: body.recoverable.unwrap_or(false),
                },
                None => ServerError {
                    message: Some(Cow::Borrowed("error message with an unreadable body")),
                    ..ServerError::default()
                },
            })
        }
        Some(_) => ServerMessage::Other(cow(raw.kind).unwrap_or_default()),
    })
}

/// The fields of a control message written at its top level rather than in a body, read
/// as leniently as a body.
fn top_level(json: &str) -> Option<RawBody<'_>> {
    serde_json::from_str(json).ok().map(|Object(fields)| fields)
}

impl<'a> Transcription<'a> {
    fn from_raw(raw: RawMessage<'a>) -> Self {
        let segments = raw.segments.unwrap_or_default();
        let mut text = String::new();
        let mut words = Vec::new();
        for seg in &segments {
            if let Some(t) = &seg.text {
                push_words_normalised(&mut text, &t.0);
            }
        }
        if let Some(t) =
            raw.transcript.as_ref().map(|t| t.0.as_ref()).filter(|t| !t.trim().is_empty())
        {
            text.clear();
            push_words_normalised(&mut text, t);
        }
        let language = cow(raw.language_code).filter(|l| !l.is_empty()).or_else(|| {
            segments.iter().find_map(|s| {
                s.language_code.as_ref().map(|l| l.0.clone()).filter(|l| !l.is_empty())
            })
        });
        let start = segments.first().map_or(0.0, RawSegment::start);
        let end = segments.last().map_or(start, RawSegment::end).max(start);
        for seg in segments {
            let (seg_start, seg_end) = (seg.start(), seg.end());
            let timed = seg.word_timestamps.unwrap_or_default();
            if timed.is_empty() {
                let Some(t) = cow(seg.text) else { continue };
                let t = trimmed(t);
                if !t.is_empty() {
                    words.push(Word { text: t, start: seg_start, end: seg_end, probability: None });
                }
                continue;
            }
            for w in timed {
                let Some(t) = cow(w.word).map(trimmed).filter(|t| !t.is_empty()) else { continue };
                let start = clean_time(w.start_time.or(w.start));
                let end = clean_time(w.end_time.or(w.end)).max(start);
                words.push(Word { text: t, start, end, probability: w.prob.map(clean_prob) });
            }
        }
        // Older servers said `message_type: partial_transcript | final_transcript`.
        let legacy_final = raw.message_type.map(|m| m.0 != "partial_transcript");
        Transcription {
            is_final: raw.is_final.or(legacy_final).unwrap_or(true),
            text,
            language,
            start,
            end,
            words,
            audio_length_sec: raw.audio_length_sec,
            is_end_of_audio_flush: raw.is_end_of_audio_flush.unwrap_or(false),
            transcription_num: raw.transcription_num,
        }
    }
}

/// Appends the whitespace-separated words of `s` to `out`, single-space separated.
fn push_words_normalised(out: &mut String, s: &str) {
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
}

fn trimmed(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}

/// A missing or negative time is 0. (JSON has no NaN or infinity, and serde_json refuses
/// numbers that overflow f64, so every parsed time is finite.)
fn clean_time(t: Option<f64>) -> f64 {
    t.unwrap_or(0.0).max(0.0)
}

/// A probability, whatever the server sent: clamped here once, so every word's and the
/// transcript's mean are in 0..=1 by construction. (JSON has no NaN, so none arrives.)
fn clean_prob(p: f64) -> f64 {
    p.clamp(0.0, 1.0)
}

/// A JSON string, borrowed from the input when it has no escapes. serde only borrows a `Cow`
/// that is a field of its own, not one inside an `Option`, hence this newtype.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

fn cow(s: Option<Str<'_>>) -> Option<Cow<'_, str>> {
    s.map(|s| s.0)
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    message_type: Option<Str<'a>>,
    is_final: Option<bool>,
    #[serde(borrow)]
    transcript: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "objects")]
    segments: Option<Vec<RawSegment<'a>>>,
    #[serde(borrow)]
    language_code: Option<Str<'a>>,
    audio_length_sec: Option<f64>,
    is_end_of_audio_flush: Option<bool>,
    #[serde(default, deserialize_with = "lenient_count")]
    transcription_num: Option<i64>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

/// A segment; older servers name its times `start`/`end`.
#[derive(Deserialize)]
struct RawSegment<'a> {
    start_time: Option<f64>,
    start: Option<f64>,
    end_time: Option<f64>,
    end: Option<f64>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "objects")]
    word_timestamps: Option<Vec<RawWord<'a>>>,
    #[serde(borrow)]
    language_code: Option<Str<'a>>,
}

impl RawSegment<'_> {
    fn start(&self) -> f64 {
        clean_time(self.start_time.or(self.start))
    }

    fn end(&self) -> f64 {
        clean_time(self.end_time.or(self.end)).max(self.start())
    }
}

#[derive(Deserialize)]
struct RawWord<'a> {
    #[serde(borrow)]
    word: Option<Str<'a>>,
    start_time: Option<f64>,
    start: Option<f64>,
    end_time: Option<f64>,
    end: Option<f64>,
    prob: Option<f64>,
}

/// A JSON object and nothing else. serde's derived structs also accept an array of their
/// fields in declaration order, which would read `[null, null, null, "hi", …]` as a final
/// transcript; every struct here is read through this instead.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            // The entries are read from the input's own deserializer, so strings still borrow.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// An optional array of JSON objects (see [`Object`]).
fn objects<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let objects = Option::<Vec<Object<T>>>::deserialize(d)?;
    // In-place: `Object<T>` has `T`'s layout, so the collect reuses the allocation.
    Ok(objects.map(|v| v.into_iter().map(|Object(t)| t).collect()))
}

/// A counter that should be an integer: a whole float is taken, anything else is `None`
/// (the counter is informational, not worth losing a transcript over).
fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| {
        v.as_i64().or_else(|| {
            v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)
        })
    }))
}

#[derive(Deserialize, Default)]
struct RawBody<'a> {
    #[serde(borrow)]
    status: Option<Str<'a>>,
    healthy: Option<bool>,
    partial_interval: Option<f64>,
    #[serde(borrow)]
    error_type: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
    #[serde(borrow)]
    stream_id: Option<Str<'a>>,
    recoverable: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FINAL: &str = r#"{"type":"transcription","is_final":true,"transcription_num":3,
        "segments":[{"start_time":1.5,"end_time":2.75,"text":" Hello  world.","log_prob":-0.2,
          "word_timestamps":[{"word":" Hello","start_time":1.5,"end_time":1.9,"prob":0.9,"speaker":null},
                             {"word":" world.","start_time":2.0,"end_time":2.75,"prob":0.7,"speaker":null}],
          "speaker":null,"possible_hallucination":false,"language_code":"en","language_prob":null},
          {"start_time":3.0,"end_time":4.0,"text":" Bye","word_timestamps":[]}],
        "language_code":null,"language_prob":null,"diarization":[],"timing_info":null,
        "audio_length_sec":4.2,"next_partial":{"start_time":0,"end_time":1,"text":"x"},
        "pipeline_latency":null,"is_end_of_audio_flush":true}"#;

    fn transcription(json: &str) -> Transcription<'_> {
        match parse(json).unwrap() {
            ServerMessage::Transcription(t) => t,
            other => panic!("not a transcription: {other:?}"),
        }
    }

    #[test]
    fn parses_a_final_with_words_and_a_wordless_segment() {
        let t = transcription(FINAL);
        assert!(t.is_final);
        assert_eq!(t.text, "Hello world. Bye");
        assert_eq!(t.language.as_deref(), Some("en"), "from the first segment");
        assert_eq!((t.start, t.end), (1.5, 4.0));
        assert_eq!(t.audio_length_sec, Some(4.2));
        assert!(t.is_end_of_audio_flush);
        assert_eq!(t.transcription_num, Some(3));
        let words: Vec<_> =
            t.words.iter().map(|w| (w.text.as_ref(), w.start, w.end, w.probability)).collect();
        assert_eq!(
            words,
            [
                ("Hello", 1.5, 1.9, Some(0.9)),
                ("world.", 2.0, 2.75, Some(0.7)),
                ("Bye", 3.0, 4.0, None)
            ]
        );
        assert!((t.confidence().unwrap() - 0.8).abs() < 1e-12);
    }

    #[test]
    fn borrows_unescaped_strings() {
        let t = transcription(FINAL);
        assert!(matches!(t.words[0].text, Cow::Borrowed("Hello")));
        assert!(matches!(t.language, Some(Cow::Borrowed("en"))));
        let t = transcription(r#"{"segments":[{"text":"a\u00e9","start_time":0,"end_time":1}]}"#);
        assert_eq!(t.words[0].text, "aé");
        assert!(matches!(t.words[0].text, Cow::Owned(_)));
        let ServerMessage::Error(e) = parse(r#"{"type":"error","body":{"message":"m"}}"#).unwrap()
        else {
            panic!()
        };
        assert!(matches!(e.message, Some(Cow::Borrowed("m"))));
    }

    #[test]
    fn partial_defaults_and_language() {
        let t = transcription(
            r#"{"type":"transcription","is_final":false,"segments":[],"language_code":"de"}"#,
        );
        assert!(!t.is_final);
        assert_eq!(t.text, "");
        assert_eq!(t.language.as_deref(), Some("de"));
        assert_eq!((t.start, t.end), (0.0, 0.0));
        assert_eq!(t.confidence(), None);
        // Older servers: no type, a top-level transcript, `start`/`end`, is_final defaults true.
        let t = transcription(
            r#"{"transcript":" hi  there ","segments":[{"start":1,"end":2,"text":"x"}]}"#,
        );
        assert!(t.is_final);
        assert_eq!(t.text, "hi there");
        assert_eq!((t.start, t.end), (1.0, 2.0));
    }

    #[test]
    fn tolerates_the_variants_servers_send() {
        let t = transcription(
            r#"{"transcription_num":4.0,"segments":[{"start":1,"start_time":2,"end":3,"end_time":4,
                "text":"a","language_code":"fr","word_timestamps":[{"word":null,"start":1,"end":2},
                {"word":"b","start":1,"end":2,"prob":0.5}]}],"language_code":null}"#,
        );
        assert_eq!(t.transcription_num, Some(4));
        assert_eq!((t.start, t.end), (2.0, 4.0), "start_time wins over start");
        assert_eq!(t.language.as_deref(), Some("fr"), "the segment's language fills in");
        assert_eq!(t.words.len(), 1, "a word without text is skipped");
        assert_eq!((t.words[0].start, t.words[0].end), (1.0, 2.0));
        assert_eq!(transcription(r#"{"transcription_num":"x"}"#).transcription_num, None);
        let partial = transcription(r#"{"message_type":"partial_transcript","transcript":"hi"}"#);
        assert!(!partial.is_final);
        assert!(transcription(r#"{"message_type":"final_transcript"}"#).is_final);
    }

    #[test]
    fn shifts_every_time() {
        let t = transcription(FINAL).shifted(10.0);
        assert_eq!((t.start, t.end), (11.5, 14.0));
        assert_eq!((t.words[0].start, t.words[2].end), (11.5, 14.0));
    }

    #[test]
    fn times_past_the_audio_sent_are_clamped_to_it() {
        let mut t = transcription(FINAL); // ends at 4.0
        assert!(!t.clamp_to_audio(3.0), "within the slack");
        assert!(!t.clamp_to_audio(f64::NAN));
        assert!(!t.clamp_to_audio(f64::INFINITY));
        assert_eq!(t, transcription(FINAL));
        assert!(t.clamp_to_audio(2.5));
        assert_eq!((t.start, t.end), (1.5, 2.5));
        let times: Vec<_> = t.words.iter().map(|w| (w.start, w.end)).collect();
        assert_eq!(times, [(1.5, 1.9), (2.0, 2.5), (2.5, 2.5)]);
    }

    #[test]
    fn cleans_up_times() {
        let t = transcription(
            r#"{"segments":[{"start_time":-3,"end_time":-1,"text":"a",
                "word_timestamps":[{"word":"a","start_time":5,"end_time":2,"prob":1}]}]}"#,
        );
        assert_eq!((t.start, t.end), (0.0, 0.0));
        assert_eq!((t.words[0].start, t.words[0].end), (5.0, 5.0));
    }

    #[test]
    fn probabilities_are_clamped_into_0_to_1() {
        let t = transcription(
            r#"{"segments":[{"start_time":0,"end_time":1,"text":"a b c","word_timestamps":[
                {"word":"a","start_time":0,"end_time":0.3,"prob":7},
                {"word":"b","start_time":0.3,"end_time":0.6,"prob":-2},
                {"word":"c","start_time":0.6,"end_time":1,"prob":0.5}]}]}"#,
        );
        let probabilities: Vec<_> = t.words.iter().map(|w| w.probability).collect();
        assert_eq!(probabilities, [Some(1.0), Some(0.0), Some(0.5)]);
        assert_eq!(t.confidence(), Some(0.5));
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            parse(r#"{"type":"end_audio","trace_id":null,"body":{"status":"finished"}}"#).unwrap(),
            ServerMessage::EndAudio { status: Some(Cow::Borrowed("finished")) }
        );
        assert_eq!(
            parse(r#"{"type":"health_check","timestamp":1.0,"body":{"healthy":true,"partial_interval":0.5}}"#)
                .unwrap(),
            ServerMessage::HealthCheck { healthy: Some(true), partial_interval: Some(0.5) }
        );
        let err = r#"{"type":"error","trace_id":null,"timestamp":null,"body":{"error_type":"AUDIO_PROCESSING_ERROR",
            "message":"Provided number of samples is 128","stream_id":"s1","recoverable":false,"timestamp":1.0}}"#;
        let ServerMessage::Error(e) = parse(err).unwrap() else { panic!() };
        assert_eq!(e.error_type.as_deref(), Some("AUDIO_PROCESSING_ERROR"));
        assert_eq!(e.message.as_deref(), Some("Provided number of samples is 128"));
        assert_eq!(e.stream_id.as_deref(), Some("s1"));
        assert!(!e.recoverable);
        assert_eq!(parse(r#"{"type":"x","body":1}"#).unwrap(), ServerMessage::Other("x".into()));
        // A badly typed error body still reports an (unrecoverable) error.
        let ServerMessage::Error(e) =
            parse(r#"{"type":"error","body":{"recoverable":"no"}}"#).unwrap()
        else {
            panic!()
        };
        assert!(!e.recoverable);
        assert!(e.message.is_some());
        assert_eq!(
            parse(r#"{"type":"end_audio","body":[]}"#).unwrap(),
            ServerMessage::EndAudio { status: None }
        );
    }

    #[test]
    fn an_error_without_a_body_is_read_from_its_top_level() {
        let ServerMessage::Error(e) =
            parse(r#"{"type":"error","message":"bad audio","recoverable":true}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.message.as_deref(), Some("bad audio"));
        assert!(e.recoverable);
        let ServerMessage::Error(e) = parse(r#"{"type":"error","message":7}"#).unwrap() else {
            panic!()
        };
        assert_eq!(e.message.as_deref(), Some("error message with an unreadable body"));
        assert!(!e.recoverable);
        // A body, even an empty one, is where the fields are.
        let ServerMessage::Error(e) =
            parse(r#"{"type":"error","message":"top","body":{}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.message, None);
    }

    /// Caught by the `transcript` fuzz target's check that only JSON objects parse (the inputs
    /// are also its seeds, fuzz/seeds/transcript/regression-array-*.json): serde's derived
    /// structs also read an array of their fields in order.
    #[test]
    fn arrays_are_not_objects() {
        for bad in [
            r#"[null,null,null,"hi there",null,null,null,null,null,null]"#,
            r#"{"segments":[[1,null,2,null,"hi",null,null]]}"#,
            r#"{"segments":[{"word_timestamps":[["w",0,null,1,null,0.5]]}]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(r#"{"type":"end_audio","body":["finished",null,null,null,null,null,null]}"#)
                .unwrap(),
            ServerMessage::EndAudio { status: None }
        );
        let ServerMessage::Error(e) =
            parse(r#"{"type":"error","body":[null,null,null,null,"m",null,true]}"#).unwrap()
        else {
            panic!()
        };
        assert!(!e.recoverable, "an array body is unreadable");
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in ["", "{", "[]", "null", r#"{"is_final":"yes"}"#, r#"{"segments":{}}"#, "1e999"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse(r#"{"segments":[{"start_time":"x"}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("malformed server message:"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_mutated_messages(cut in 0usize..900, byte: u8) {
            let mut bytes = FINAL.as_bytes().to_vec();
            let i = cut.min(bytes.len() - 1);
            bytes[i] = byte;
            if let Ok(s) = std::str::from_utf8(&bytes) {
                if let Ok(ServerMessage::Transcription(t)) = parse(s) {
                    for w in &t.words {
                        prop_assert!(w.start >= 0.0 && w.end >= w.start);
                    }
                }
            }
        }
    }
}
