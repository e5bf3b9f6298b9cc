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

/// Writes the mean of each sample frame of `channels` interleaved little-endian int16 samples
/// in `pcm` to `out`, one per frame, rounded half away from zero (mono is a plain copy).
/// `out` holds `pcm.len() / (2 * channels)` samples.
pub fn downmix_le(pcm: &[u8], channels: usize, out: &mut [i16]) {
    debug_assert_eq!(out.len(), pcm.len() / (2 * channels.max(1)));
    match channels {
        1 => {
            for (o, s) in out.iter_mut().zip(pcm.chunks_exact(2)) {
                *o = i16::from_le_bytes([s[0], s[1]]);
            }
        }
        2 => downmix_stereo(pcm, out),
        _ => {
            let n = channels as f32;
            for (o, frame) in out.iter_mut().zip(pcm.chunks_exact(channels * 2)) {
                let sum: i32 = samples_le(frame).map(i32::from).sum();
                // Exact: |sum| <= 32 * 32768 fits f32's 24-bit mantissa, and the quotient is
                // never within f32's error of a half unless it is exactly one.
                *o = f32_to_i16(sum as f32 / n);
            }
        }
    }
}

/// Half of `sum` (two int16 samples), rounded half away from zero.
#[inline]
fn half_away(sum: i32) -> i16 {
    // Adds 1 to non-negative sums before halving, so x.5 goes up; a negative sum's
    // arithmetic shift already rounds its x.5 down.
    ((sum + 1 + (sum >> 31)) >> 1) as i16
}

fn downmix_stereo(pcm: &[u8], out: &mut [i16]) {
    let done = stereo_simd(pcm, out);
    for (o, f) in out[done..].iter_mut().zip(pcm[done * 4..].chunks_exact(4)) {
        let (l, r) = (i16::from_le_bytes([f[0], f[1]]), i16::from_le_bytes([f[2], f[3]]));
        *o = half_away(i32::from(l) + i32::from(r));
    }
}

/// The stereo mean of as many whole blocks of 8 frames as `pcm` holds; returns the frames done.
#[cfg(target_arch = "x86_64")]
fn stereo_simd(pcm: &[u8], out: &mut [i16]) -> usize {
    use std::arch::x86_64::*;
    let blocks = (pcm.len() / 32).min(out.len() / 8);
    for (src, dst) in pcm.chunks_exact(32).zip(out.chunks_exact_mut(8)).take(blocks) {
        // SAFETY: SSE2 is in the x86-64 baseline; `src` is 32 readable bytes (two unaligned
        // 16-byte loads) and `dst` 8 writable int16 (one unaligned 16-byte store); x86 is
        // little-endian, so the bytes are the int16 samples.
        unsafe {
            let ones = _mm_set1_epi16(1);
            let one = _mm_set1_epi32(1);
            let half = |v: __m128i| {
                let sum = _mm_madd_epi16(v, ones); // l + r per frame, in int32
                _mm_srai_epi32::<1>(_mm_add_epi32(
                    _mm_add_epi32(sum, one),
                    _mm_srai_epi32::<31>(sum),
                ))
            };
            let a = half(_mm_loadu_si128(src.as_ptr().cast()));
            let b = half(_mm_loadu_si128(src.as_ptr().add(16).cast()));
            // Each mean is an int16 already: the saturating pack only narrows.
            _mm_storeu_si128(dst.as_mut_ptr().cast(), _mm_packs_epi32(a, b));
        }
    }
    blocks * 8
}

/// The stereo mean of as many whole blocks of 8 frames as `pcm` holds; returns the frames done.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
fn stereo_simd(pcm: &[u8], out: &mut [i16]) -> usize {
    use std::arch::aarch64::*;
    let blocks = (pcm.len() / 32).min(out.len() / 8);
    for (src, dst) in pcm.chunks_exact(32).zip(out.chunks_exact_mut(8)).take(blocks) {
        // SAFETY: NEON is in the aarch64 baseline; `src` is 32 readable bytes (two byte loads,
        // which need no alignment, reinterpreted as int16 on this little-endian target) and
        // `dst` 8 writable int16.
        unsafe {
            let half = |v: int16x8_t| {
                let sum = vpaddlq_s16(v); // l + r per frame, in int32
                let up = vaddq_s32(vaddq_s32(sum, vdupq_n_s32(1)), vshrq_n_s32::<31>(sum));
                vmovn_s32(vshrq_n_s32::<1>(up))
            };
            let a = half(vreinterpretq_s16_u8(vld1q_u8(src.as_ptr())));
            let b = half(vreinterpretq_s16_u8(vld1q_u8(src.as_ptr().add(16))));
            vst1q_s16(dst.as_mut_ptr(), vcombine_s16(a, b));
        }
    }
    blocks * 8
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little"))))]
fn stereo_simd(_pcm: &[u8], _out: &mut [i16]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The mean of one frame's samples, rounded half away from zero, in exact arithmetic.
    fn mean(frame: &[i16]) -> i16 {
        let n = frame.len() as i64;
        let sum: i64 = frame.iter().map(|&s| i64::from(s)).sum();
        let magnitude = (2 * sum.abs() + n) / (2 * n);
        (magnitude * sum.signum()) as i16
    }

    #[test]
    fn stereo_extremes() {
        let cases = [
            ([i16::MIN, i16::MIN], i16::MIN),
            ([i16::MAX, i16::MAX], i16::MAX),
            ([i16::MAX, i16::MIN], -1),
            ([1, 0], 1),
            ([-1, 0], -1),
            ([3, 0], 2),
            ([-3, 0], -2),
            ([0, 0], 0),
        ];
        for n in [1, 8, 9, 17] {
            for (frame, expected) in cases {
                let pcm: Vec<u8> = frame.repeat(n).iter().flat_map(|s| s.to_le_bytes()).collect();
                let mut out = vec![0i16; n];
                downmix_le(&pcm, 2, &mut out);
                assert!(out.iter().all(|&x| x == expected), "{frame:?} x {n}: {out:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn downmix_is_the_mean_rounded_half_away_from_zero(
            channels in 1usize..6,
            samples in proptest::collection::vec(
                prop_oneof![any::<i16>(), Just(i16::MIN), Just(i16::MAX), -2i16..3], 0..400),
        ) {
            let frames = samples.len() / channels;
            let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            let mut out = vec![0i16; frames];
            downmix_le(&pcm[..frames * channels * 2], channels, &mut out);
            let expected: Vec<i16> = samples.chunks_exact(channels).map(mean).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
