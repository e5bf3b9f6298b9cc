//! The per-stream hot paths of the LiveKit Baseten plugin, in plain Rust.
//!
//! * [`pipeline::SendPipeline`]: int16 PCM in any rate and channel count -> Baseten's wire frames
//!   (downmix, resample, rebuffer into exact 512-sample frames, encode).
//! * [`mulaw::MuLaw`]: G.711 mu-law (bit-exact with CPython's `audioop`) and the continuous
//!   mu-law Baseten's Whisper server decodes.
//! * [`rebuffer::Rebuffer`]: byte rebuffering into fixed-size frames.
//! * [`transcript`]: one Whisper server message (JSON) -> a compact, borrowed struct.
//!
//! The crate has no Python dependency; `baseten-py` wraps it for Python.

pub mod mulaw;
pub mod pcm;
pub mod pipeline;
pub mod rebuffer;
pub mod resample;
pub mod transcript;

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
    /// A sample rate the pipeline cannot handle.
    SampleRate(u32),
    /// A channel count of zero, or more than [`pcm::MAX_CHANNELS`].
    Channels(u32),
    /// A frame size of zero.
    FrameSize(usize),
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
            AudioError::FrameSize(n) => write!(f, "frame size must be positive, got {n}"),
        }
    }
}

impl std::error::Error for AudioError {}
