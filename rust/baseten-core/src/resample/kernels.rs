// SPDX-License-Identifier: Apache-2.0

//! The resampler's inner loop: one int16 dot product per output sample, in AVX2 or SSE2
//! (x86-64), NEON (aarch64) or portable Rust, chosen at run time. All compute the same exact
//! sum (the tables rule out int32 overflow in every lane, see `lanes_fit`) and round it the
//! same way, so their outputs are identical bit for bit.

use super::Filter;

/// Which instruction set the dot products use. Only [`Kernel::best`] and
/// [`Kernel::available`] make one, so a kernel is never used on a CPU without its features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kernel(Isa);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// Portable Rust: the kernel on other architectures, and the tests' reference.
    #[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), allow(dead_code))]
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Sse2,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel(Isa::Avx2);
            }
            // SSE2 is part of the x86-64 baseline.
            Kernel(Isa::Sse2)
        }
        #[cfg(target_arch = "aarch64")]
        {
            // NEON is part of the aarch64 baseline.
            Kernel(Isa::Neon)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Kernel(Isa::Scalar)
        }
    }

    /// Every kernel this CPU runs, the portable one first.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let mut all = vec![Kernel(Isa::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Kernel(Isa::Sse2));
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel(Isa::Avx2));
            }
        }
        #[cfg(target_arch = "aarch64")]
        all.push(Kernel(Isa::Neon));
        all
    }

    /// The portable kernel.
    #[cfg(test)]
    pub(crate) fn scalar() -> Self {
        Kernel(Isa::Scalar)
    }
}

/// Computes `out.len()` outputs: the first at phase `phase` with its taps on
/// `x[start..start + taps]`, each next one `M / L` input samples on. The caller has checked
/// that the last one's taps lie inside `x`.
pub(super) fn run(
    kernel: Kernel,
    f: &Filter,
    x: &[i16],
    start: usize,
    phase: usize,
    out: &mut [i16],
) {
    debug_assert!(f.taps.is_multiple_of(super::LANES) && phase < f.phases);
    match kernel.0 {
        Isa::Scalar => run_scalar(f, x, start, phase, out),
        // SAFETY: `Kernel(Isa::Avx2)` is only made after `is_x86_feature_detected!("avx2")`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::run_avx2(f, x, start, phase, out) },
        // SAFETY: SSE2 is in the x86-64 baseline: every x86-64 CPU has it.
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => unsafe { x86::run_sse2(f, x, start, phase, out) },
        // SAFETY: NEON is in the aarch64 baseline: every aarch64 CPU has it.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { arm::run_neon(f, x, start, phase, out) },
    }
}

/// The output loop around a dot product `$dot(window, taps) -> i64`, expanded inside each
/// kernel's function so that the dot product is compiled with that kernel's features.
macro_rules! output_loop {
    ($f:expr, $x:expr, $start:expr, $phase:expr, $out:expr, $dot:ident) => {{
        let (f, x, out): (&Filter, &[i16], &mut [i16]) = ($f, $x, $out);
        let (mut start, mut phase) = ($start, $phase);
        let (whole, frac) = (f.step / f.phases, f.step % f.phases);
        for o in out.iter_mut() {
            let window = &x[start..start + f.taps];
            *o = finish($dot(window, f.phase(phase)), f.shift);
            start += whole;
            phase += frac;
            if phase >= f.phases {
                phase -= f.phases;
                start += 1;
            }
        }
    }};
}

/// Rounds an exact sum of products to the output: half up, then saturated to int16.
#[inline(always)]
fn finish(acc: i64, shift: u32) -> i16 {
    let rounded = (acc + (1i64 << (shift - 1))) >> shift;
    rounded.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

#[inline(always)]
fn dot_scalar(x: &[i16], h: &[i16]) -> i64 {
    x.iter().zip(h).map(|(&a, &b)| i64::from(i32::from(a) * i32::from(b))).sum()
}

fn run_scalar(f: &Filter, x: &[i16], start: usize, phase: usize, out: &mut [i16]) {
    output_loop!(f, x, start, phase, out, dot_scalar);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{finish, Filter};

    /// Four outputs at a time, their sums reduced and rounded together; the rest one by one.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run_avx2(
        f: &Filter,
        x: &[i16],
        mut start: usize,
        mut phase: usize,
        out: &mut [i16],
    ) {
        let (whole, frac) = (f.step / f.phases, f.step % f.phases);
        let mut quads = out.chunks_exact_mut(4);
        for quad in &mut quads {
            let mut windows: [&[i16]; 4] = [&[]; 4];
            let mut taps: [&[i16]; 4] = [&[]; 4];
            for k in 0..4 {
                windows[k] = &x[start..start + f.taps];
                taps[k] = f.phase(phase);
                start += whole;
                phase += frac;
                if phase >= f.phases {
                    phase -= f.phases;
                    start += 1;
                }
            }
            let mut acc = [_mm256_setzero_si256(); 4];
            for c in (0..f.taps).step_by(16) {
                for k in 0..4 {
                    // SAFETY: `c + 16 <= taps`, the length of every window and phase; loadu
                    // takes any alignment.
                    let (a, b) = unsafe {
                        (
                            _mm256_loadu_si256(windows[k].as_ptr().add(c).cast()),
                            _mm256_loadu_si256(taps[k].as_ptr().add(c).cast()),
                        )
                    };
                    acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(a, b));
                }
            }
            // Each output's 8 int32 lanes, widened to int64 and added in pairs: 4 per output.
            let mut wide = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                wide[k] = _mm256_add_epi64(
                    _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc[k])),
                    _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(acc[k])),
                );
            }
            let t0 = _mm256_add_epi64(
                _mm256_unpacklo_epi64(wide[0], wide[1]),
                _mm256_unpackhi_epi64(wide[0], wide[1]),
            );
            let t1 = _mm256_add_epi64(
                _mm256_unpacklo_epi64(wide[2], wide[3]),
                _mm256_unpackhi_epi64(wide[2], wide[3]),
            );
            // The four outputs' exact sums, in order.
            let sums = _mm256_add_epi64(
                _mm256_permute2x128_si256::<0x20>(t0, t1),
                _mm256_permute2x128_si256::<0x31>(t0, t1),
            );
            // Rounded half up, then shifted: a logical shift, but the quotient fits in an
            // int32 (|sum| <= 32768 * the phase's absolute sum), so its low 32 bits are the
            // arithmetic shift's. Narrowed with signed saturation, as `finish` clamps.
            let half = _mm256_set1_epi64x(1i64 << (f.shift - 1));
            let shifted =
                _mm256_srl_epi64(_mm256_add_epi64(sums, half), _mm_cvtsi32_si128(f.shift as i32));
            let low =
                _mm256_permutevar8x32_epi32(shifted, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
            let low = _mm256_castsi256_si128(low);
            // SAFETY: `quad` is 4 writable int16 (8 bytes), the low half of the pack.
            unsafe { _mm_storel_epi64(quad.as_mut_ptr().cast(), _mm_packs_epi32(low, low)) };
        }
        let rest = quads.into_remainder();
        output_loop!(f, x, start, phase, rest, dot_avx2);
    }

    /// # Safety
    /// The CPU must have AVX2; `x` and `h` have the same length, a multiple of 16.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(x: &[i16], h: &[i16]) -> i64 {
        debug_assert!(x.len() == h.len() && x.len().is_multiple_of(16));
        let mut acc = _mm256_setzero_si256();
        for (a, b) in x.chunks_exact(16).zip(h.chunks_exact(16)) {
            // SAFETY: each chunk is 16 int16 (32 bytes) of a live slice; loadu takes any
            // alignment.
            let (a, b) = unsafe {
                (_mm256_loadu_si256(a.as_ptr().cast()), _mm256_loadu_si256(b.as_ptr().cast()))
            };
            // Lane l: taps 2l and 2l + 1 of every 16, in int32 (the tables keep it in range).
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
        }
        let lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc));
        let hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(acc));
        let sum = _mm256_add_epi64(lo, hi);
        let sum = _mm_add_epi64(_mm256_castsi256_si128(sum), _mm256_extracti128_si256::<1>(sum));
        _mm_cvtsi128_si64(sum) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(sum, sum))
    }

    /// # Safety
    /// The CPU must have SSE2 (every x86-64 CPU does).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn run_sse2(
        f: &Filter,
        x: &[i16],
        start: usize,
        phase: usize,
        out: &mut [i16],
    ) {
        output_loop!(f, x, start, phase, out, dot_sse2);
    }

    /// Sign-extends the four int32 lanes of `v` and adds them to the two int64 lanes of `acc`.
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn add_widened(acc: __m128i, v: __m128i) -> __m128i {
        let sign = _mm_srai_epi32::<31>(v);
        let acc = _mm_add_epi64(acc, _mm_unpacklo_epi32(v, sign));
        _mm_add_epi64(acc, _mm_unpackhi_epi32(v, sign))
    }

    /// # Safety
    /// The CPU must have SSE2; `x` and `h` have the same length, a multiple of 16.
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn dot_sse2(x: &[i16], h: &[i16]) -> i64 {
        debug_assert!(x.len() == h.len() && x.len().is_multiple_of(16));
        // The same lanes as AVX2's: taps 0-7 of every 16 in `lo`, 8-15 in `hi`.
        let (mut lo, mut hi) = (_mm_setzero_si128(), _mm_setzero_si128());
        for (a, b) in x.chunks_exact(16).zip(h.chunks_exact(16)) {
            // SAFETY: each chunk is 16 int16 (32 bytes) of a live slice, read as two 16-byte
            // halves; loadu takes any alignment.
            let (a0, a1, b0, b1) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().cast()),
                    _mm_loadu_si128(a.as_ptr().add(8).cast()),
                    _mm_loadu_si128(b.as_ptr().cast()),
                    _mm_loadu_si128(b.as_ptr().add(8).cast()),
                )
            };
            lo = _mm_add_epi32(lo, _mm_madd_epi16(a0, b0));
            hi = _mm_add_epi32(hi, _mm_madd_epi16(a1, b1));
        }
        let sum = add_widened(add_widened(_mm_setzero_si128(), lo), hi);
        _mm_cvtsi128_si64(sum) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(sum, sum))
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{finish, Filter};

    /// # Safety
    /// The CPU must have NEON (every aarch64 CPU does).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn run_neon(
        f: &Filter,
        x: &[i16],
        start: usize,
        phase: usize,
        out: &mut [i16],
    ) {
        output_loop!(f, x, start, phase, out, dot_neon);
    }

    /// # Safety
    /// The CPU must have NEON; `x` and `h` have the same length, a multiple of 16.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn dot_neon(x: &[i16], h: &[i16]) -> i64 {
        debug_assert!(x.len() == h.len() && x.len().is_multiple_of(16));
        // Lane i of acc[k]: tap 4k + i of every 16, a subset of an AVX2 lane.
        let mut acc = [vdupq_n_s32(0); 4];
        for (a, b) in x.chunks_exact(16).zip(h.chunks_exact(16)) {
            // SAFETY: each chunk is 16 int16 (32 bytes) of a live slice, read as two 8-lane
            // halves; vld1q takes any alignment of its element type, which the slices have.
            let (a0, a1, b0, b1) = unsafe {
                (
                    vld1q_s16(a.as_ptr()),
                    vld1q_s16(a.as_ptr().add(8)),
                    vld1q_s16(b.as_ptr()),
                    vld1q_s16(b.as_ptr().add(8)),
                )
            };
            acc[0] = vmlal_s16(acc[0], vget_low_s16(a0), vget_low_s16(b0));
            acc[1] = vmlal_high_s16(acc[1], a0, b0);
            acc[2] = vmlal_s16(acc[2], vget_low_s16(a1), vget_low_s16(b1));
            acc[3] = vmlal_high_s16(acc[3], a1, b1);
        }
        let wide = vaddq_s64(
            vaddq_s64(vpaddlq_s32(acc[0]), vpaddlq_s32(acc[1])),
            vaddq_s64(vpaddlq_s32(acc[2]), vpaddlq_s32(acc[3])),
        );
        vaddvq_s64(wide)
    }
}
