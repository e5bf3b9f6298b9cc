// SPDX-License-Identifier: Apache-2.0

//! Little-endian int16 PCM helpers shared by the audio modules.

use crate::AudioError;

/// Lowest input sample rate the pipeline accepts, in Hz.
pub const MIN_SAMPLE_RATE: u32 = 4_000;
/// Highest input sample rate the pipeline accepts, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 192_000;
/// Most channels an input frame may have.
pub const MAX_CHANNELS: u32 = 32;

/// Number of int16 samples in `pcm`, or an error if its length is odd.
#[inline]
pub fn sample_count(pcm: &[u8]) -> Result<usize, AudioError> {
    if !pcm.len().is_multiple_of(2) {
        return Err(AudioError::OddByteCount(pcm.len()));
    }
    Ok(pcm.len() / 2)
}

/// The int16 samples of little-endian bytes; a trailing odd byte is ignored.
#[inline]
pub fn samples_le(pcm: &[u8]) -> impl Iterator<Item = i16> + '_ {
    pcm.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]]))
}

/// Appends the little-endian bytes of `samples` to `out`.
#[inline]
pub fn extend_le(out: &mut Vec<u8>, samples: &[i16]) {
    let start = out.len();
    out.resize(start + samples.len() * 2, 0);
    for (o, s) in out[start..].chunks_exact_mut(2).zip(samples) {
        o.copy_from_slice(&s.to_le_bytes());
    }
}

/// Converts a float sample in int16 units to int16, rounding half away from zero and
/// saturating.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // Not `f32::round`: without SSE4.1 in the baseline x86-64 target it is a libm call, several
    // times the cost of this add and truncating cast. `as` saturates and maps NaN to 0.
    (x + 0.5f32.copysign(x)) as i16
}
