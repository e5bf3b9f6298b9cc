// SPDX-License-Identifier: Apache-2.0

//! The per-stream hot paths of the LiveKit Baseten plugin, in plain Rust.
//!
//! * [`pipeline::SendPipeline`]: int16 PCM in any rate and channel count -> Baseten's wire frames
//!   (downmix, resample, rebuffer into exact 512-sample frames, encode).
//! * [`mulaw::MuLaw`]: G.711 mu-law (bit-exact with CPython's `audioop`) and the continuous
//!   mu-law Baseten's Whisper server decodes.
//! * [`rebuffer::Rebuffer`]: byte rebuffering into fixed-size frames.
//! * [`transcript`]: one Whisper server message (JSON) -> a compact, borrowed struct.
//! * [`qwen3`]: Qwen3-ASR's send path (PCM -> base64 JSON append messages) and its messages.
//! * [`websocket`]: masked client WebSocket frames for the audio, written without Python.
//!
//! The crate has no Python dependency; `baseten-py` wraps it for Python.

pub mod mulaw;
pub mod pcm;
pub mod pipeline;
pub mod qwen3;
pub mod rebuffer;
pub mod resample;
pub mod transcript;
pub mod websocket;

use std::fmt;

/// Errors from the audio functions: all are caller input errors, never internal failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioError {
    /// A PCM buffer whose byte length is not a whole number of int16 samples.
    OddByteCount(usize),
    /// An output buffer of the wrong size.
    OutputLength {
        /// The size the output needed.
        expected: usize,
        /// The size it had.
        got: usize,
    },
    /// A sample rate outside [`pcm::MIN_SAMPLE_RATE`]..=[`pcm::MAX_SAMPLE_RATE`].
    SampleRate(u32),
    /// A sample rate so unusual against the output rate that resampling it would need blocks
    /// longer than [`resample::MAX_BLOCK_S`] (e.g. 44 099 Hz: one-second blocks).
    OddSampleRate {
        /// The input rate.
        input: u32,
        /// The output rate.
        output: u32,
    },
    /// A channel count of zero, or more than [`pcm::MAX_CHANNELS`].
    Channels(u32),
    /// Input whose sample rate or channel count differs from the stream's first frames.
    FormatChanged {
        /// The stream's (sample rate, channels).
        expected: (u32, u32),
        /// The new input's (sample rate, channels).
        got: (u32, u32),
    },
    /// A frame size that is zero, too large, or not a whole number of samples.
    FrameSize {
        /// The frame size asked for, in bytes.
        frame_bytes: usize,
        /// The sample size, in bytes.
        sample_bytes: usize,
    },
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::OddByteCount(n) => {
                write!(f, "not a whole number of int16 samples: {n} bytes")
            }
            AudioError::OutputLength { expected, got } => {
                write!(f, "output buffer has {got} bytes, expected {expected}")
            }
            AudioError::SampleRate(r) => write!(
                f,
                "unsupported sample rate {r} Hz (expected {} to {} Hz)",
                pcm::MIN_SAMPLE_RATE,
                pcm::MAX_SAMPLE_RATE
            ),
            AudioError::Channels(c) => {
                write!(f, "unsupported channel count {c} (expected 1 to {})", pcm::MAX_CHANNELS)
            }
            AudioError::OddSampleRate { input, output } => write!(
                f,
                "cannot resample {input} Hz to {output} Hz with low latency: use a standard rate \
                 such as 8000, 16000, 24000, 44100 or 48000 Hz"
            ),
            AudioError::FormatChanged { expected, got } => write!(
                f,
                "the sample rate and channel count of the input frames must be consistent: \
                 {} Hz x {} then {} Hz x {}",
                expected.0, expected.1, got.0, got.1
            ),
            AudioError::FrameSize { frame_bytes, sample_bytes } => write!(
                f,
                "frame size must be a positive whole number of {sample_bytes}-byte samples, \
                 at most {} bytes, got {frame_bytes}",
                rebuffer::MAX_FRAME_BYTES
            ),
        }
    }
}

impl std::error::Error for AudioError {}
