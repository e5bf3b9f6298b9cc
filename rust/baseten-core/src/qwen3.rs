// SPDX-License-Identifier: Apache-2.0

//! The client side of Baseten's Qwen3-ASR streaming protocol: the audio goes out as JSON text
//! messages, and the server's language names come back as codes.
//!
//! The server takes 16 kHz mono int16 audio, base64-encoded inside
//! `{"type":"input_audio_buffer.append","audio":"<base64>"}` text messages (100 ms each, as
//! Qwen's reference client sends), and `{"type":"input_audio_buffer.commit"}` to transcribe
//! what it holds at once. [`AppendPipeline`] turns PCM at any rate and channel count into those
//! messages in one call per input frame: downmix, resample and cut into 100 ms chunks
//! ([`SendPipeline`]), wrap in the JSON, and optionally frame each message as one masked
//! client WebSocket text message, ready for the socket.
//!
//! Every message carries exactly 100 ms: a flush zero-pads the last chunk, so that the n-th
//! message always holds seconds `[n / 10, (n + 1) / 10)` of the input and the client can keep
//! its audio on one timeline across reconnections. A flush that commits puts the commit
//! message right after the last append, in the same output entry, so that the two are always
//! written, kept and resent together.

use std::borrow::Cow;

use crate::pipeline::{SendPipeline, WireEncoding};
use crate::transcript::{self, ParseError, ServerMessage};
use crate::websocket::{self, Opcode};
use crate::AudioError;

/// The server's sample rate, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one append message: 100 ms.
pub const CHUNK_SAMPLES: usize = 1_600;
/// Audio bytes in one append message (int16).
pub const CHUNK_BYTES: usize = CHUNK_SAMPLES * 2;
/// Seconds of audio in one append message.
pub const CHUNK_SECONDS: f64 = 0.1;
/// The message that asks the server to transcribe what it holds.
pub const COMMIT: &str = r#"{"type":"input_audio_buffer.commit"}"#;

const APPEND_HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
const APPEND_TAIL: &str = r#""}"#;
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The length of `n` bytes in padded base64.
pub const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends `data` to `out` in standard, padded base64 (RFC 4648, section 4).
pub fn base64_encode_into(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(base64_len(data.len()));
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend_from_slice(&[
            BASE64[(n >> 18) as usize & 63],
            BASE64[(n >> 12) as usize & 63],
            BASE64[(n >> 6) as usize & 63],
            BASE64[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                BASE64[(n >> 18) as usize & 63],
                BASE64[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend_from_slice(&[
                BASE64[(n >> 18) as usize & 63],
                BASE64[(n >> 12) as usize & 63],
                BASE64[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

/// Appends the append message carrying `audio` (int16 little-endian bytes) to `out`.
pub fn append_message_into(audio: &[u8], out: &mut Vec<u8>) {
    out.reserve(APPEND_HEAD.len() + base64_len(audio.len()) + APPEND_TAIL.len());
    out.extend_from_slice(APPEND_HEAD.as_bytes());
    base64_encode_into(audio, out);
    out.extend_from_slice(APPEND_TAIL.as_bytes());
}

/// One stream's send path for Qwen3-ASR. See the module docs.
#[derive(Debug)]
pub struct AppendPipeline {
    /// Downmix, resample and cut into 100 ms chunks of 16 kHz int16 (unframed).
    audio: SendPipeline,
    /// Whether each message is framed as a masked WebSocket text message.
    websocket: bool,
    /// Chunks between the two steps, reused.
    chunks: Vec<u8>,
    /// Whether audio was emitted since the last commit.
    uncommitted: bool,
}

impl AppendPipeline {
    /// A pipeline for input at `input_rate` Hz with `channels` interleaved channels; with
    /// `websocket`, each message comes out as one masked client WebSocket text message.
    pub fn new(input_rate: u32, channels: u32, websocket: bool) -> Result<Self, AudioError> {
        let audio = SendPipeline::with_frame_samples(
            input_rate,
            channels,
            WireEncoding::PcmS16le,
            CHUNK_SAMPLES,
        )?;
        Ok(Self {
            audio,
            websocket,
            chunks: Vec::with_capacity(CHUNK_BYTES * 2),
            uncommitted: false,
        })
    }

    /// The input sample rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.audio.input_rate()
    }

    /// The number of input channels.
    pub fn channels(&self) -> u32 {
        self.audio.channels()
    }

    /// Checks that input of `sample_rate` Hz and `channels` channels is what this pipeline
    /// converts: a stream's format cannot change midway.
    pub fn check_format(&self, sample_rate: u32, channels: u32) -> Result<(), AudioError> {
        self.audio.check_format(sample_rate, channels)
    }

    /// Whether messages are framed as WebSocket messages.
    pub fn websocket(&self) -> bool {
        self.websocket
    }

    /// The latency the resampler adds, in seconds (0 when the input is at 16 kHz).
    pub fn added_latency_s(&self) -> f64 {
        self.audio.added_latency_s()
    }

    /// 16 kHz samples buffered towards the next message.
    pub fn pending_samples(&self) -> usize {
        self.audio.pending_samples()
    }

    /// The size of every append message, in bytes (with its WebSocket framing, if any).
    pub fn message_len(&self) -> usize {
        self.framed_len(APPEND_HEAD.len() + base64_len(CHUNK_BYTES) + APPEND_TAIL.len())
    }

    /// The size of the commit that follows the last message of a committing flush, in bytes.
    pub fn commit_len(&self) -> usize {
        self.framed_len(COMMIT.len())
    }

    fn framed_len(&self, payload: usize) -> usize {
        if self.websocket {
            websocket::client_frame_len(payload)
        } else {
            payload
        }
    }

    /// Adds input bytes (any size; a sample may be split across pushes) and appends a message
    /// for every 100 ms chunk they complete to `out`, each [`Self::message_len`] bytes long.
    /// Returns how many.
    pub fn push(&mut self, pcm: &[u8], out: &mut Vec<u8>) -> Result<usize, AudioError> {
        self.chunks.clear();
        self.audio.push(pcm, &mut self.chunks)?;
        Ok(self.emit(out))
    }

    /// Ends a stretch of audio: the samples still buffered go out as one last message,
    /// zero-padded to 100 ms. With `commit`, the commit message follows it in `out`
    /// ([`Self::commit_len`] bytes, after the messages counted): when nothing is buffered
    /// but audio went out since the last commit, a message of silence carries it (so that a
    /// commit is always written with audio, and every message holds 100 ms); when nothing at
    /// all went out since the last commit, there is nothing to commit and nothing is
    /// appended. Returns how many append messages were appended.
    pub fn flush(&mut self, commit: bool, out: &mut Vec<u8>) -> Result<usize, AudioError> {
        self.chunks.clear();
        self.audio.flush(true, &mut self.chunks)?;
        if commit && self.chunks.is_empty() && self.uncommitted {
            self.chunks.resize(CHUNK_BYTES, 0);
        }
        let messages = self.emit(out);
        if commit && self.uncommitted {
            self.write(COMMIT.len(), out, |o| o.extend_from_slice(COMMIT.as_bytes()));
            self.uncommitted = false;
        }
        Ok(messages)
    }

    /// Writes one append message per chunk in `chunks`.
    fn emit(&mut self, out: &mut Vec<u8>) -> usize {
        let chunks = std::mem::take(&mut self.chunks);
        let mut n = 0;
        for chunk in chunks.chunks_exact(CHUNK_BYTES) {
            self.write(0, out, |o| append_message_into(chunk, o));
            n += 1;
        }
        self.chunks = chunks;
        if n > 0 {
            self.uncommitted = true;
        }
        n
    }

    /// Appends what `write` writes to `out`, framed when this pipeline frames. `hint` is the
    /// payload's size when known (to reserve), or 0.
    fn write(&self, hint: usize, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        if self.websocket {
            websocket::append_masked_frame(out, Opcode::Text, websocket::random_mask(), write);
        } else {
            out.reserve(hint);
            write(out);
        }
    }
}

/// Parses one text message of the Qwen3-ASR server. Its transcription messages are Whisper's
/// (see [`transcript::parse`]) but name the language (`"English"`): a name Qwen3-ASR lists is
/// replaced by its code (`"en"`), anything else is kept as sent.
pub fn parse(json: &str) -> Result<ServerMessage<'_>, ParseError> {
    let mut message = transcript::parse(json)?;
    if let ServerMessage::Transcription(t) = &mut message {
        if let Some(code) = t.language.as_deref().and_then(language_code) {
            t.language = Some(Cow::Borrowed(code));
        }
    }
    Ok(message)
}

/// The ISO 639 code of a language as Qwen3-ASR names it (`"English"`, `"Cantonese"`), in any
/// case; `None` for a name it does not list. The list is Qwen3-ASR's 30 languages.
pub fn language_code(name: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.trim())).map(|&(_, code)| code)
}

/// The name Qwen3-ASR (and Qwen3-TTS) use for the language with ISO 639 code `code` (a bare
/// code, any case, or a BCP 47 tag whose primary subtag is one), or `None`.
pub fn language_name(code: &str) -> Option<&'static str> {
    let primary = code.trim().split(['-', '_']).next().unwrap_or_default();
    LANGUAGES.iter().find(|(_, c)| c.eq_ignore_ascii_case(primary)).map(|&(name, _)| name)
}

/// Qwen3-ASR's languages: its names, and their ISO 639-1 codes (ISO 639-3 where there is no
/// 639-1 code: Cantonese, Filipino).
const LANGUAGES: [(&str, &str); 30] = [
    ("Chinese", "zh"),
    ("English", "en"),
    ("Cantonese", "yue"),
    ("Arabic", "ar"),
    ("German", "de"),
    ("French", "fr"),
    ("Spanish", "es"),
    ("Portuguese", "pt"),
    ("Indonesian", "id"),
    ("Italian", "it"),
    ("Korean", "ko"),
    ("Russian", "ru"),
    ("Thai", "th"),
    ("Vietnamese", "vi"),
    ("Japanese", "ja"),
    ("Turkish", "tr"),
    ("Hindi", "hi"),
    ("Malay", "ms"),
    ("Dutch", "nl"),
    ("Swedish", "sv"),
    ("Danish", "da"),
    ("Finnish", "fi"),
    ("Polish", "pl"),
    ("Czech", "cs"),
    ("Filipino", "fil"),
    ("Persian", "fa"),
    ("Greek", "el"),
    ("Romanian", "ro"),
    ("Hungarian", "hu"),
    ("Macedonian", "mk"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// RFC 4648's decoder, for the tests: standard alphabet, padding required.
    fn base64_decode(text: &[u8]) -> Vec<u8> {
        assert_eq!(text.len() % 4, 0, "padded base64 comes in fours");
        let value = |c: u8| BASE64.iter().position(|&b| b == c).expect("base64 alphabet") as u32;
        let mut out = Vec::new();
        for quad in text.chunks(4) {
            let pad = quad.iter().filter(|&&c| c == b'=').count();
            let n = quad
                .iter()
                .take(4 - pad)
                .enumerate()
                .fold(0, |n, (i, &c)| n | value(c) << (18 - 6 * i));
            out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
        }
        out
    }

    /// Reads one message (framed when `websocket`) from the start of `bytes`: its payload, and
    /// its length.
    fn read_message(bytes: &[u8], websocket: bool, raw_len: usize) -> (Vec<u8>, usize) {
        if !websocket {
            return (bytes[..raw_len].to_vec(), raw_len);
        }
        assert_eq!(bytes[0], 0x81, "FIN + text");
        assert_eq!(bytes[1] & 0x80, 0x80, "masked");
        let (len, header) = match bytes[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => panic!("a message is never that long"),
            n => (usize::from(n), 2),
        };
        let mask = &bytes[header..header + 4];
        let body = &bytes[header + 4..header + 4 + len];
        (body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect(), header + 4 + len)
    }

    /// The audio of an append message, checking its JSON on the way.
    fn audio_of(payload: &[u8]) -> Vec<u8> {
        let value: serde_json::Value = serde_json::from_slice(payload).expect("JSON");
        let object = value.as_object().expect("an object");
        assert_eq!(object.len(), 2, "type and audio only");
        assert_eq!(object["type"], "input_audio_buffer.append");
        base64_decode(object["audio"].as_str().expect("a string").as_bytes())
    }

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64_encode_into(plain.as_bytes(), &mut out);
            assert_eq!(out, encoded.as_bytes(), "{plain:?}");
            assert_eq!(base64_len(plain.len()), encoded.len());
        }
        let mut out = Vec::new();
        base64_encode_into(&[0xfb, 0xff, 0xbf], &mut out);
        assert_eq!(out, b"+/+/", "the last two letters of the standard alphabet");
    }

    #[test]
    fn each_100_ms_is_one_append_message() {
        let mut p = AppendPipeline::new(16_000, 1, false).unwrap();
        let input: Vec<i16> = (0..4000).map(|i| (i * 7) as i16).collect();
        let mut out = Vec::new();
        assert_eq!(p.push(&le(&input), &mut out).unwrap(), 2);
        assert_eq!(out.len(), 2 * p.message_len());
        assert_eq!(p.pending_samples(), 800);
        assert_eq!(audio_of(&out[..p.message_len()]), le(&input[..1600]));
        assert_eq!(audio_of(&out[p.message_len()..]), le(&input[1600..3200]));
        let text = std::str::from_utf8(&out[..p.message_len()]).unwrap();
        assert!(text.starts_with(r#"{"type":"input_audio_buffer.append","audio":""#), "{text}");
    }

    #[test]
    fn a_committing_flush_pads_the_last_chunk_and_commits_after_it() {
        let mut p = AppendPipeline::new(16_000, 1, false).unwrap();
        let mut out = Vec::new();
        p.push(&le(&[5; 1700]), &mut out).unwrap();
        out.clear();
        assert_eq!(p.flush(true, &mut out).unwrap(), 1);
        assert_eq!(out.len(), p.message_len() + p.commit_len());
        let mut expected = le(&[5; 100]);
        expected.resize(CHUNK_BYTES, 0);
        assert_eq!(audio_of(&out[..p.message_len()]), expected);
        assert_eq!(&out[p.message_len()..], COMMIT.as_bytes());
        out.clear();
        assert_eq!(p.flush(true, &mut out).unwrap(), 0, "nothing since the commit");
        assert!(out.is_empty());
    }

    #[test]
    fn a_commit_on_a_chunk_boundary_rides_on_a_silent_chunk() {
        let mut p = AppendPipeline::new(16_000, 1, false).unwrap();
        let mut out = Vec::new();
        assert_eq!(p.push(&le(&[5; 1600]), &mut out).unwrap(), 1);
        out.clear();
        assert_eq!(p.flush(true, &mut out).unwrap(), 1);
        assert_eq!(audio_of(&out[..p.message_len()]), vec![0; CHUNK_BYTES]);
        assert_eq!(&out[p.message_len()..], COMMIT.as_bytes());
        // Without a commit, nothing pending means nothing to send.
        p.push(&le(&[5; 1600]), &mut out).unwrap();
        out.clear();
        assert_eq!(p.flush(false, &mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn no_audio_no_commit() {
        let mut p = AppendPipeline::new(48_000, 2, true).unwrap();
        let mut out = Vec::new();
        assert_eq!(p.flush(true, &mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn websocket_framing_masks_each_text_message() {
        let mut raw = AppendPipeline::new(16_000, 1, false).unwrap();
        let mut framed = AppendPipeline::new(16_000, 1, true).unwrap();
        assert_eq!(framed.message_len(), raw.message_len() + 8, "16-bit length and mask");
        let pcm = le(&(0..3300).map(|i| i as i16).collect::<Vec<_>>());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(raw.push(&pcm, &mut a).unwrap(), framed.push(&pcm, &mut b).unwrap());
        assert_eq!(raw.flush(true, &mut a).unwrap(), framed.flush(true, &mut b).unwrap());
        let mut at = 0;
        let mut payloads = Vec::new();
        while at < b.len() {
            let (payload, len) = read_message(&b[at..], true, 0);
            payloads.extend(payload);
            at += len;
        }
        assert_eq!(payloads, a);
    }

    #[test]
    fn resamples_and_downmixes_like_the_whisper_path() {
        let mut p = AppendPipeline::new(48_000, 2, false).unwrap();
        let mut out = Vec::new();
        let mut n = 0;
        for _ in 0..50 {
            n += p.push(&le(&[1000; 1920]), &mut out).unwrap(); // 20 ms of 48 kHz stereo
        }
        n += p.flush(false, &mut out).unwrap();
        assert_eq!(n, 10, "one second: ten messages");
        assert_eq!(p.pending_samples(), 0);
    }

    #[test]
    fn refuses_what_the_pipeline_refuses() {
        assert_eq!(AppendPipeline::new(100, 1, true).unwrap_err(), AudioError::SampleRate(100));
        assert_eq!(AppendPipeline::new(16_000, 0, true).unwrap_err(), AudioError::Channels(0));
    }

    #[test]
    fn parse_gives_codes_for_names() {
        fn t(json: &str) -> transcript::Transcription<'_> {
            match parse(json).unwrap() {
                ServerMessage::Transcription(t) => t,
                other => panic!("{other:?}"),
            }
        }
        let final_ = t(r#"{"type":"transcription","is_final":true,"language_code":"Cantonese",
            "is_end_of_audio_flush":true,"segments":[{"text":"hi","start_time":0.1,"end_time":0.5,
            "word_timestamps":[{"word":"hi","start_time":0.1,"end_time":0.5,"prob":0.5}]}]}"#);
        assert_eq!(final_.language.as_deref(), Some("yue"));
        assert!(final_.is_final && final_.is_end_of_audio_flush);
        assert_eq!((final_.text.as_str(), final_.start, final_.end), ("hi", 0.1, 0.5));
        assert_eq!(final_.confidence(), Some(0.5));
        assert_eq!(t(r#"{"language_code":"Klingon"}"#).language.as_deref(), Some("Klingon"));
        assert_eq!(t(r#"{"language_code":"en"}"#).language.as_deref(), Some("en"));
        assert_eq!(t(r#"{"language_code":null}"#).language, None);
        assert!(matches!(
            parse(r#"{"type":"error","message":"x"}"#).unwrap(),
            ServerMessage::Error(e) if e.message.as_deref() == Some("x")
        ));
        assert!(parse("{").is_err());
    }

    #[test]
    fn language_names_and_codes() {
        assert_eq!(language_code("English"), Some("en"));
        assert_eq!(language_code(" cantonese "), Some("yue"));
        assert_eq!(language_code("FILIPINO"), Some("fil"));
        assert_eq!(language_code("Klingon"), None);
        assert_eq!(language_code("en"), None, "a code is not a name");
        assert_eq!(language_name("en"), Some("English"));
        assert_eq!(language_name("en-US"), Some("English"));
        assert_eq!(language_name("zh_TW"), Some("Chinese"));
        assert_eq!(language_name("YUE"), Some("Cantonese"));
        assert_eq!(language_name("xx"), None);
        assert_eq!(language_name(""), None);
        for (name, code) in LANGUAGES {
            assert_eq!((language_code(name), language_name(code)), (Some(code), Some(name)));
        }
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            base64_encode_into(&data, &mut out);
            prop_assert_eq!(out.len(), base64_len(data.len()));
            prop_assert_eq!(base64_decode(&out), data);
        }

        /// The messages carry the input, 100 ms each, in order, padded at each flush; a
        /// commit follows a committing flush's last message, never two in a row.
        #[test]
        fn messages_carry_the_input_in_order(
            ops in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..5000).prop_map(Ok),
                    any::<bool>().prop_map(Err),
                ],
                0..12,
            ),
            websocket: bool,
        ) {
            let mut p = AppendPipeline::new(16_000, 1, websocket).unwrap();
            let raw_len = AppendPipeline::new(16_000, 1, false).unwrap().message_len();
            let (mut out, mut stretch) = (Vec::new(), Vec::new());
            let mut pending_byte = None;
            let mut committed = true; // nothing to commit yet
            for op in &ops {
                let (n, commit) = match op {
                    Ok(bytes) => {
                        let mut all: Vec<u8> = pending_byte.take().into_iter().collect();
                        all.extend_from_slice(bytes);
                        if all.len() % 2 == 1 {
                            pending_byte = all.pop();
                        }
                        stretch.extend_from_slice(&all);
                        (p.push(bytes, &mut out).unwrap(), false)
                    }
                    Err(commit) => {
                        let before = stretch.len();
                        if before % CHUNK_BYTES != 0 {
                            stretch.resize(before.div_ceil(CHUNK_BYTES) * CHUNK_BYTES, 0);
                        } else if *commit && !committed && before == 0 {
                            stretch.resize(CHUNK_BYTES, 0);
                        }
                        (p.flush(*commit, &mut out).unwrap(), *commit)
                    }
                };
                let whole = stretch.len() - stretch.len() % CHUNK_BYTES;
                prop_assert_eq!(n, whole / CHUNK_BYTES);
                if n > 0 {
                    committed = false;
                }
                let mut at = 0;
                for chunk in stretch[..whole].chunks(CHUNK_BYTES) {
                    let (payload, len) = read_message(&out[at..], websocket, raw_len);
                    prop_assert_eq!(audio_of(&payload), chunk.to_vec());
                    at += len;
                }
                if commit && !committed {
                    let (payload, len) = read_message(&out[at..], websocket, COMMIT.len());
                    prop_assert_eq!(payload, COMMIT.as_bytes().to_vec());
                    at += len;
                    committed = true;
                }
                prop_assert_eq!(at, out.len(), "bytes after the last message");
                stretch.drain(..whole);
                out.clear();
            }
        }
    }
}
