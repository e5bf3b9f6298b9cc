// SPDX-License-Identifier: Apache-2.0

//! `qwen3::AppendPipeline` with an arbitrary input format and arbitrary pushes and flushes.
//!
//! Every message must be a valid masked WebSocket text message holding exactly
//! `{"type":"input_audio_buffer.append","audio":"<base64 of 100 ms>"}`, and the audio of all
//! of them, in order, must be what `SendPipeline` cut into 100 ms chunks gives for the same
//! input. A committing flush must end with exactly one commit message when audio went out
//! since the last commit, and none otherwise.

#![no_main]

use arbitrary::Arbitrary;
use baseten_core::pipeline::{SendPipeline, WireEncoding};
use baseten_core::qwen3::{AppendPipeline, CHUNK_BYTES, CHUNK_SAMPLES, COMMIT};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

#[derive(Arbitrary, Debug)]
enum Op {
    Push(Vec<u8>),
    Flush { commit: bool },
}

#[derive(Arbitrary, Debug)]
struct Input {
    rate: u8,
    channels: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let rate = RATES[usize::from(input.rate) % RATES.len()];
    let channels = 1 + u32::from(input.channels % 3);
    let mut pipeline = AppendPipeline::new(rate, channels, true).expect("a standard format");
    let mut oracle =
        SendPipeline::with_frame_samples(rate, channels, WireEncoding::PcmS16le, CHUNK_SAMPLES)
            .expect("the same format");
    let mut uncommitted = false;
    for op in &input.ops {
        let (mut out, mut expected) = (Vec::new(), Vec::new());
        let (n, commit) = match op {
            Op::Push(bytes) => {
                oracle.push(bytes, &mut expected).expect("the resampler never fails");
                (pipeline.push(bytes, &mut out).expect("as the oracle"), false)
            }
            Op::Flush { commit } => {
                oracle.flush(true, &mut expected).expect("the resampler never fails");
                if *commit && expected.is_empty() && uncommitted {
                    expected.resize(CHUNK_BYTES, 0); // a commit rides on 100 ms of silence
                }
                (pipeline.flush(*commit, &mut out).expect("as the oracle"), *commit)
            }
        };
        assert_eq!(n * CHUNK_BYTES, expected.len(), "one message per 100 ms chunk");
        let mut at = 0;
        for chunk in expected.chunks(CHUNK_BYTES) {
            let (payload, len) = unmask(&out[at..]);
            assert_eq!(len, pipeline.message_len(), "every message has the same size");
            assert_eq!(audio_of(&payload), chunk, "audio differs from the oracle's");
            at += len;
        }
        uncommitted |= n > 0;
        if commit && uncommitted {
            let (payload, len) = unmask(&out[at..]);
            assert_eq!(payload, COMMIT.as_bytes());
            assert_eq!(len, pipeline.commit_len());
            at += len;
            uncommitted = false;
        }
        assert_eq!(at, out.len(), "bytes after the last message");
        assert!(pipeline.pending_samples() < CHUNK_SAMPLES);
    }
});

/// The audio of an append message, checking its JSON on the way.
fn audio_of(payload: &[u8]) -> Vec<u8> {
    let value: Value = serde_json::from_slice(payload).expect("JSON");
    let object = value.as_object().expect("an object");
    assert_eq!(object.len(), 2, "type and audio only");
    assert_eq!(object["type"], "input_audio_buffer.append");
    let text = object["audio"].as_str().expect("a string").as_bytes();
    assert_eq!(text.len() % 4, 0, "padded base64");
    let value = |c: u8| match c {
        b'A'..=b'Z' => u32::from(c - b'A'),
        b'a'..=b'z' => u32::from(c - b'a') + 26,
        b'0'..=b'9' => u32::from(c - b'0') + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for quad in text.chunks(4) {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        let n =
            quad[..4 - pad].iter().enumerate().fold(0, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

/// Reads one masked client text message from the start of `frame` (RFC 6455, section 5.2):
/// its unmasked payload and its length.
fn unmask(frame: &[u8]) -> (Vec<u8>, usize) {
    assert_eq!(frame[0], 0x81, "FIN + text");
    assert_eq!(frame[1] & 0x80, 0x80, "masked");
    let (len, header) = match frame[1] & 0x7F {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => panic!("a message is never that long"),
        n => (usize::from(n), 2),
    };
    let mask = &frame[header..header + 4];
    let body = &frame[header + 4..header + 4 + len];
    (body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect(), header + 4 + len)
}
