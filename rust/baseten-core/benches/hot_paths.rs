// SPDX-License-Identifier: Apache-2.0

//! Criterion benches of every hot function of `baseten-core` (`cargo bench`).

use std::hint::black_box;

use baseten_core::mulaw::MuLaw;
use baseten_core::pipeline::{SendPipeline, WireEncoding};
use baseten_core::qwen3::{self, AppendPipeline};
use baseten_core::rebuffer::Rebuffer;
use baseten_core::transcript;
use criterion::{criterion_group, criterion_main, Criterion};

/// 20 ms of a 440 Hz tone at `rate`, mono little-endian int16.
fn frame_20ms(rate: u32) -> Vec<u8> {
    tone(rate, rate as usize / 50)
}

/// `n` samples of a 440 Hz tone at `rate`, mono little-endian int16.
fn tone(rate: u32, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let t = i as f64 / f64::from(rate);
            ((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_pipeline_20ms_frame");
    for (rate, encoding, label) in [
        (16_000, WireEncoding::PcmS16le, "16k_s16le"),
        (24_000, WireEncoding::PcmS16le, "24k_s16le"),
        (48_000, WireEncoding::PcmS16le, "48k_s16le"),
        (48_000, WireEncoding::PcmMulaw(MuLaw::Continuous), "48k_mulaw"),
    ] {
        let frame = frame_20ms(rate);
        let mut p = SendPipeline::new(rate, 1, encoding).expect("valid configuration");
        let mut out = Vec::with_capacity(4096);
        group.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                black_box(p.push(black_box(&frame), &mut out))
            })
        });
    }
    group.finish();
}

/// The same pushes, cache-cold: 500 streams pushed round-robin, as in a worker with hundreds of
/// calls, each push finding its stream's state out of the caches.
fn pipeline_cold(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_pipeline_20ms_frame_cold_500_streams");
    for (rate, encoding, label) in [
        (24_000, WireEncoding::PcmS16le, "24k_s16le"),
        (48_000, WireEncoding::PcmS16le, "48k_s16le"),
        (48_000, WireEncoding::PcmMulaw(MuLaw::Continuous), "48k_mulaw"),
    ] {
        let frame = frame_20ms(rate);
        let mut streams: Vec<SendPipeline> = (0..500)
            .map(|_| SendPipeline::new(rate, 1, encoding).expect("valid configuration"))
            .collect();
        let mut out = Vec::with_capacity(4096);
        let mut next = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                next = (next + 1) % streams.len();
                out.clear();
                black_box(streams[next].push(black_box(&frame), &mut out))
            })
        });
    }
    group.finish();
}

/// Qwen3-ASR's send path: per 20 ms frame, one 100 ms append message every fifth (base64 JSON,
/// masked WebSocket text frame).
fn qwen3_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("qwen3_append_20ms_frame");
    for (rate, label) in [(16_000, "16k"), (48_000, "48k")] {
        let frame = frame_20ms(rate);
        let mut p = AppendPipeline::new(rate, 1, true).expect("valid configuration");
        let mut out = Vec::with_capacity(16384);
        group.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                black_box(p.push(black_box(&frame), &mut out))
            })
        });
    }
    group.finish();
    let message = format!(
        r#"{{"type":"transcription","is_final":true,"language_code":"English","segments":[{}]}}"#,
        r#"{"text":"please send the report","start_time":0.1,"end_time":1.9}"#
    );
    c.bench_function("parse_qwen3_final", |b| {
        b.iter(|| black_box(qwen3::parse(black_box(&message)).is_ok()))
    });
}

fn rebuffer(c: &mut Criterion) {
    let frame = frame_20ms(16_000);
    let mut r = Rebuffer::new(1024, 2).expect("valid sizes");
    let mut out = Vec::with_capacity(4096);
    c.bench_function("rebuffer_20ms_into_512", |b| {
        b.iter(|| {
            out.clear();
            black_box(r.push(black_box(&frame), &mut out))
        })
    });
}

fn mulaw(c: &mut Criterion) {
    let pcm = tone(16_000, 512);
    let mut out = vec![0u8; 512];
    let mut back = vec![0u8; 1024];
    for (law, label) in [(MuLaw::G711, "g711"), (MuLaw::Continuous, "continuous")] {
        c.bench_function(&format!("mulaw_encode_512_{label}"), |b| {
            b.iter(|| law.encode_s16le_into(black_box(&pcm), &mut out))
        });
        c.bench_function(&format!("mulaw_decode_512_{label}"), |b| {
            b.iter(|| law.decode_to_s16le_into(black_box(&out), &mut back))
        });
    }
}

/// A Baseten Whisper transcription message with `words` timed words.
fn message(words: usize, is_final: bool) -> String {
    let vocab = ["please", "send", "the", "report", "to", "office", "before", "noon"];
    let mut t = 0.32;
    let mut ws = Vec::new();
    let mut text = String::new();
    for i in 0..words {
        let w = vocab[i % vocab.len()];
        text.push(' ');
        text.push_str(w);
        ws.push(format!(
            r#"{{"word":" {w}","start_time":{:.2},"end_time":{:.2},"prob":0.91,"speaker":null}}"#,
            t,
            t + 0.28
        ));
        t += 0.34;
    }
    format!(
        r#"{{"type":"transcription","is_final":{is_final},"transcription_num":7,"segments":[{{"start_time":0.32,"end_time":{t:.2},"text":"{text}","log_prob":-0.21,"word_timestamps":[{}],"speaker":null,"speaker_confidence":null,"possible_hallucination":false,"beam_results":null,"language_code":"en","language_prob":null}}],"language_code":"en","language_prob":null,"diarization":[],"timing_info":null,"enable_chunk_level_language_detection":false,"audio_length_sec":{:.2},"next_partial":null,"pipeline_latency":null}}"#,
        ws.join(","),
        t + 0.3
    )
}

fn parser(c: &mut Criterion) {
    for (words, is_final, label) in [(12, false, "12_word_partial"), (40, true, "40_word_final")] {
        let msg = message(words, is_final);
        assert!(transcript::parse(&msg).is_ok(), "bench message must parse");
        c.bench_function(&format!("parse_{label}"), |b| {
            b.iter(|| transcript::parse(black_box(&msg)))
        });
    }
}

criterion_group!(benches, pipeline, pipeline_cold, qwen3_append, rebuffer, mulaw, parser);
criterion_main!(benches);
