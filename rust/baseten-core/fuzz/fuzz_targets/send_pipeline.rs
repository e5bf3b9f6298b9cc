// SPDX-License-Identifier: Apache-2.0

//! `SendPipeline` with an arbitrary configuration and arbitrary pushes and flushes.
//!
//! A bad configuration must be the matching typed error. A good one must emit only whole wire
//! frames from pushes, and after each flush exactly the number of samples the docs give:
//! the whole input sample frames of the stretch, resampled to `round(n * wire / rate)`, padded
//! to whole frames when asked. Without resampling the content is checked too (the channels'
//! mean, rounded half away from zero, then encoded), and a silent stretch must stay silent.
//! The same pipeline framing its output as WebSocket messages must give the same frames, each
//! one valid masked binary message.

#![no_main]

use arbitrary::Arbitrary;
use baseten_core::mulaw::MuLaw;
use baseten_core::pcm::{MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use baseten_core::pipeline::{Framing, SendPipeline, WireEncoding};
use baseten_core::AudioError;
use libfuzzer_sys::fuzz_target;

/// Rates the resampler must accept for either wire rate (see `resample.rs`).
const STANDARD_RATES: [u32; 10] =
    [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000];

/// An input rate: `kind` picks how `value` is read.
#[derive(Arbitrary, Debug)]
struct Rate {
    kind: u8,
    value: u32,
}

impl Rate {
    fn hz(&self) -> u32 {
        let in_range = |r: u32| MIN_SAMPLE_RATE + r % (MAX_SAMPLE_RATE - MIN_SAMPLE_RATE + 1);
        match self.kind {
            0..=191 => STANDARD_RATES[self.value as usize % STANDARD_RATES.len()],
            // Multiples of 20 Hz: unusual rates that are still accepted (their resampling
            // block is at most 50 ms), with filters of every shape (1 to 800 phases), designed
            // at run time.
            192..=239 => in_range(self.value) / 20 * 20,
            // Any rate in range: mostly odd ones, which must be refused with a typed error
            // (at once, from the rates' gcd). Rarer than the rest because an accepted one has
            // its filter designed at first use, which for the largest tables takes
            // milliseconds.
            240..=249 => in_range(self.value),
            _ => self.value,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Channels {
    Few(u8),
    Any(u32),
}

impl Channels {
    fn count(&self) -> u32 {
        match *self {
            Channels::Few(c) => 1 + u32::from(c % 4),
            Channels::Any(c) => c,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Encoding {
    S16le,
    G711,
    Continuous,
}

impl Encoding {
    fn wire(self) -> WireEncoding {
        match self {
            Encoding::S16le => WireEncoding::PcmS16le,
            Encoding::G711 => WireEncoding::PcmMulaw(MuLaw::G711),
            Encoding::Continuous => WireEncoding::PcmMulaw(MuLaw::Continuous),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Push(Vec<u8>),
    Flush { pad: bool },
}

#[derive(Arbitrary, Debug)]
struct Input {
    rate: Rate,
    channels: Channels,
    encoding: Encoding,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let (rate, channels, encoding) = (input.rate.hz(), input.channels.count(), input.encoding);
    let wire = encoding.wire();
    let pipeline = match SendPipeline::new(rate, channels, wire) {
        Ok(p) => p,
        Err(e) => return check_config_error(rate, channels, wire, e),
    };
    assert!((MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate), "accepted {rate} Hz");
    assert!((1..=MAX_CHANNELS).contains(&channels), "accepted {channels} channels");
    assert_eq!(
        (pipeline.input_rate(), pipeline.channels(), pipeline.encoding()),
        (rate, channels, wire)
    );
    // The filter's look-ahead: at most 3 ms (16 kHz out) or 6 ms (8 kHz) from the standard
    // rates, and 6 ms from any rate (the longest filters are the upsamplers from 4 kHz).
    let latency = pipeline.added_latency_s();
    assert!(latency.is_finite() && (0.0..=0.006).contains(&latency), "latency {latency}");
    assert!(rate != wire.sample_rate() || latency == 0.0, "latency without resampling");

    let framed = SendPipeline::new(rate, channels, wire)
        .expect("the same configuration")
        .with_framing(Framing::WebSocket);
    let mut run = Run::new(pipeline, framed, channels as usize);
    for op in &input.ops {
        match op {
            Op::Push(bytes) => run.push(bytes),
            Op::Flush { pad } => run.flush(*pad),
        }
    }
    run.flush(true);
});

fn check_config_error(rate: u32, channels: u32, wire: WireEncoding, e: AudioError) {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        assert_eq!(e, AudioError::SampleRate(rate));
    } else if channels == 0 || channels > MAX_CHANNELS {
        assert_eq!(e, AudioError::Channels(channels));
    } else {
        let output = wire.sample_rate();
        assert!(
            !STANDARD_RATES.contains(&rate) && rate != output,
            "refused a standard rate {rate} Hz: {e}"
        );
        assert!(
            e == AudioError::OddSampleRate { input: rate, output }
                || e == AudioError::SampleRate(rate),
            "{rate} Hz -> {output} Hz: unexpected error {e:?}"
        );
    }
    assert!(!e.to_string().is_empty());
}

/// A pipeline being driven, with what is needed to predict its output.
struct Run {
    pipeline: SendPipeline,
    wire: WireEncoding,
    /// Bytes per input sample frame (all channels).
    stride: usize,
    /// Every byte pushed so far.
    input: Vec<u8>,
    /// Input sample frames completed before the current stretch began.
    stretch_first_frame: usize,
    /// Where the current stretch's output starts in `out`.
    stretch_out_start: usize,
    /// Frames the current stretch's pushes returned.
    stretch_frames: usize,
    out: Vec<u8>,
    /// The same pipeline, framing its frames as WebSocket messages, and its output.
    framed: SendPipeline,
    framed_out: Vec<u8>,
}

impl Run {
    fn new(pipeline: SendPipeline, framed: SendPipeline, channels: usize) -> Self {
        let wire = pipeline.encoding();
        Self {
            pipeline,
            wire,
            stride: channels * 2,
            input: Vec::new(),
            stretch_first_frame: 0,
            stretch_out_start: 0,
            stretch_frames: 0,
            out: Vec::new(),
            framed,
            framed_out: Vec::new(),
        }
    }

    /// Checks that the framed pipeline's new messages carry the raw pipeline's new frames.
    fn check_framed(&mut self, raw_from: usize, frames: usize, framed: usize) {
        assert_eq!(framed, frames, "framing changed the frame count");
        let mut payloads = Vec::new();
        let mut at = 0;
        for _ in 0..frames {
            at += unmask(&self.framed_out[at..], &mut payloads);
        }
        assert_eq!(at, self.framed_out.len(), "bytes after the last message");
        assert!(payloads == self.out[raw_from..], "framed payloads differ from the frames");
        self.framed_out.clear();
    }

    fn push(&mut self, bytes: &[u8]) {
        let before = self.out.len();
        let frames = self.pipeline.push(bytes, &mut self.out).expect("the resampler never fails");
        assert_eq!(self.out.len() - before, frames * self.wire.frame_bytes(), "partial frame");
        let framed = self.framed.push(bytes, &mut self.framed_out).expect("as the raw one");
        self.check_framed(before, frames, framed);
        self.input.extend_from_slice(bytes);
        self.stretch_frames += frames;
        assert!(self.pipeline.pending_samples() < self.wire.frame_samples());
    }

    fn flush(&mut self, pad: bool) {
        let before = self.out.len();
        let flushed = self.pipeline.flush(pad, &mut self.out).expect("the resampler never fails");
        let framed = self.framed.flush(pad, &mut self.framed_out).expect("as the raw one");
        self.check_framed(before, flushed, framed);
        let frames = self.stretch_frames + flushed;
        assert_eq!(self.pipeline.pending_samples(), 0, "samples left after a flush");
        let (frame_samples, frame_bytes) = (self.wire.frame_samples(), self.wire.frame_bytes());
        let sample_bytes = frame_bytes / frame_samples;

        let last_frame = self.input.len() / self.stride;
        let n_in = (last_frame - self.stretch_first_frame) as u64;
        let (rate, wire_rate) =
            (u64::from(self.pipeline.input_rate()), u64::from(self.wire.sample_rate()));
        let n_out = if rate == wire_rate { n_in } else { (n_in * wire_rate + rate / 2) / rate };
        let n_out = usize::try_from(n_out).unwrap_or(usize::MAX);
        assert_eq!(frames, n_out.div_ceil(frame_samples), "{n_in} samples in, {n_out} out");
        let got = &self.out[self.stretch_out_start..];
        let expected_len = if pad { frames * frame_bytes } else { n_out * sample_bytes };
        assert_eq!(got.len(), expected_len, "pad {pad}: {n_in} samples in, {n_out} out");

        let stretch = &self.input[self.stretch_first_frame * self.stride..last_frame * self.stride];
        let silence = encode(&[0], self.wire);
        if rate == wire_rate {
            let mut expected: Vec<u8> = stretch
                .chunks_exact(self.stride)
                .flat_map(|frame| encode(&[mean(frame)], self.wire))
                .collect();
            while expected.len() < got.len() {
                expected.extend_from_slice(&silence);
            }
            assert!(got == expected.as_slice(), "output differs from the channels' mean");
        } else if stretch.chunks_exact(2).all(|s| s == [0, 0]) {
            assert!(
                got.chunks_exact(sample_bytes).all(|s| s == silence.as_slice()),
                "silence in, sound out"
            );
        }

        self.stretch_first_frame = last_frame;
        self.stretch_out_start = self.out.len();
        self.stretch_frames = 0;
    }
}

/// The mean of one input sample frame's channels, rounded half away from zero.
fn mean(frame: &[u8]) -> i16 {
    let n = (frame.len() / 2) as i32;
    let sum: i32 = frame.chunks_exact(2).map(|s| i32::from(i16::from_le_bytes([s[0], s[1]]))).sum();
    let magnitude = (2 * sum.abs() + n) / (2 * n);
    // The mean of int16 values is an int16 value.
    (magnitude * sum.signum()) as i16
}

fn encode(samples: &[i16], wire: WireEncoding) -> Vec<u8> {
    match wire {
        WireEncoding::PcmS16le => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        WireEncoding::PcmMulaw(law) => samples.iter().map(|&s| law.encode_sample(s)).collect(),
    }
}

/// Reads one masked client binary message from the start of `frame` (RFC 6455, section 5.2):
/// appends its unmasked payload to `payload` and returns the message's length.
fn unmask(frame: &[u8], payload: &mut Vec<u8>) -> usize {
    assert_eq!(frame[0], 0x82, "FIN + binary");
    assert_eq!(frame[1] & 0x80, 0x80, "masked");
    let (len, header) = match frame[1] & 0x7F {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => panic!("an audio frame is never that long"),
        n => (usize::from(n), 2),
    };
    let mask = &frame[header..header + 4];
    let body = &frame[header + 4..header + 4 + len];
    payload.extend(body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    header + 4 + len
}
