//! Parsing of the JSON text messages Baseten's streaming Whisper server sends.
//!
//! One message in, one [`ServerMessage`] out, with strings borrowed from the input wherever
//! JSON escapes allow. Unknown fields are skipped; malformed JSON and fields of the wrong type
//! are a [`ParseError`]. Times are cleaned up so that consumers can trust them: negative times
//! become 0 and an end before its start is moved to the start.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
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
    /// The language code, when the server sent a non-empty one.
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

impl Transcription<'_> {
    /// The mean probability of the words that carry one, if any do.
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
    /// The recogniser's probability for the word; `None` for a whole segment.
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
    /// Whether the session goes on; a missing flag counts as not recoverable.
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
    let raw: RawMessage<'_> = serde_json::from_str(json).map_err(ParseError)?;
    // Only the known control messages have a body of a known shape.
    let body = || -> Result<RawBody<'_>, ParseError> {
        raw.body
            .map_or(Ok(RawBody::default()), |b| serde_json::from_str(b.get()).map_err(ParseError))
    };
    Ok(match raw.kind.as_deref() {
        None | Some("transcription") => ServerMessage::Transcription(Transcription::from_raw(
            raw.is_final,
            raw.transcript,
            raw.segments.unwrap_or_default(),
            raw.language_code,
            raw.audio_length_sec,
            raw.is_end_of_audio_flush,
            raw.transcription_num,
        )),
        Some("end_audio") => ServerMessage::EndAudio { status: body()?.status },
        Some("health_check") => {
            let body = body()?;
            ServerMessage::HealthCheck {
                healthy: body.healthy,
                partial_interval: body.partial_interval,
            }
        }
        Some("error") => {
            let body = body()?;
            ServerMessage::Error(ServerError {
                error_type: body.error_type,
                message: body.message,
                stream_id: body.stream_id,
                recoverable: body.recoverable.unwrap_or(false),
            })
        }
        Some(_) => ServerMessage::Other(raw.kind.unwrap_or_default()),
    })
}

impl<'a> Transcription<'a> {
    fn from_raw(
        is_final: Option<bool>,
        transcript: Option<Cow<'a, str>>,
        segments: Vec<RawSegment<'a>>,
        language: Option<Cow<'a, str>>,
        audio_length_sec: Option<f64>,
        is_end_of_audio_flush: Option<bool>,
        transcription_num: Option<i64>,
    ) -> Self {
        let mut text = String::new();
        let mut words = Vec::new();
        for seg in &segments {
            if let Some(t) = &seg.text {
                push_words_normalised(&mut text, t);
            }
        }
        if let Some(t) = transcript.as_deref().filter(|t| !t.trim().is_empty()) {
            text.clear();
            push_words_normalised(&mut text, t);
        }
        let start = segments.first().map_or(0.0, |s| clean_time(s.start_time));
        let end = segments.last().map_or(start, |s| clean_time(s.end_time)).max(start);
        for seg in segments {
            let seg_start = clean_time(seg.start_time);
            let seg_end = clean_time(seg.end_time).max(seg_start);
            let timed = seg.word_timestamps.unwrap_or_default();
            if timed.is_empty() {
                let Some(t) = seg.text else { continue };
                let t = trimmed(t);
                if !t.is_empty() {
                    words.push(Word { text: t, start: seg_start, end: seg_end, probability: None });
                }
                continue;
            }
            for w in timed {
                let t = trimmed(w.word);
                if t.is_empty() {
                    continue;
                }
                let start = clean_time(w.start_time);
                let end = clean_time(w.end_time).max(start);
                words.push(Word { text: t, start, end, probability: w.prob });
            }
        }
        Transcription {
            is_final: is_final.unwrap_or(true),
            text,
            language: language.filter(|l| !l.is_empty()),
            start,
            end,
            words,
            audio_length_sec,
            is_end_of_audio_flush: is_end_of_audio_flush.unwrap_or(false),
            transcription_num,
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

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    is_final: Option<bool>,
    #[serde(borrow)]
    transcript: Option<Cow<'a, str>>,
    #[serde(borrow)]
    segments: Option<Vec<RawSegment<'a>>>,
    #[serde(borrow)]
    language_code: Option<Cow<'a, str>>,
    audio_length_sec: Option<f64>,
    is_end_of_audio_flush: Option<bool>,
    transcription_num: Option<i64>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawSegment<'a> {
    #[serde(alias = "start")]
    start_time: Option<f64>,
    #[serde(alias = "end")]
    end_time: Option<f64>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    word_timestamps: Option<Vec<RawWord<'a>>>,
}

#[derive(Deserialize)]
struct RawWord<'a> {
    #[serde(borrow)]
    word: Cow<'a, str>,
    #[serde(alias = "start")]
    start_time: Option<f64>,
    #[serde(alias = "end")]
    end_time: Option<f64>,
    prob: Option<f64>,
}

#[derive(Deserialize, Default)]
struct RawBody<'a> {
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    healthy: Option<bool>,
    partial_interval: Option<f64>,
    #[serde(borrow)]
    error_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream_id: Option<Cow<'a, str>>,
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
        assert_eq!(t.language, None);
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
        let t = transcription(r#"{"segments":[{"text":"a\u00e9","start_time":0,"end_time":1}]}"#);
        assert_eq!(t.words[0].text, "aé");
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
    fn cleans_up_times() {
        let t = transcription(
            r#"{"segments":[{"start_time":-3,"end_time":-1,"text":"a",
                "word_timestamps":[{"word":"a","start_time":5,"end_time":2,"prob":1}]}]}"#,
        );
        assert_eq!((t.start, t.end), (0.0, 0.0));
        assert_eq!((t.words[0].start, t.words[0].end), (5.0, 5.0));
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
        assert!(parse(r#"{"type":"error","body":{"recoverable":"no"}}"#).is_err());
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
