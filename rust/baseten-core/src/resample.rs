// SPDX-License-Identifier: Apache-2.0

//! Streaming sample-rate conversion of mono int16 audio: a polyphase FIR resampler.
//!
//! The ratio `out_rate / in_rate` is reduced by the rates' gcd to `L / M`. Output sample `k`
//! sits at input time `k * M / L` (`q` whole input samples plus phase `p / L`) and is one dot
//! product of phase `p`'s taps with the input around it: the filter is symmetric about the
//! output's own time, so there is no delay to trim, and `n` input samples make
//! `round(n * out_rate / in_rate)` outputs once [`StreamResampler::flush`] has zero-padded the
//! tail.
//!
//! * **Filters.** One immutable table per rate pair, shared by every stream of that pair
//!   (built at first use). The common pairs (48, 24, 16, 32 and 96 kHz to 16 and 8 kHz) use
//!   filters designed offline with scipy by `tools/design_filters.py` (the generated
//!   `resample/designed.rs`); other pairs get a Kaiser-windowed sinc designed at construction.
//!   Both are held to the same bar: within 0.1 dB to 7 kHz (16 kHz out) or 3.4 kHz (8 kHz
//!   out), at least 65 dB down from 8.5 kHz (4.25 kHz) to the input's Nyquist.
//! * **Arithmetic.** Coefficients are int16, each phase summing to exactly `2^shift` (unity
//!   gain at DC); products are summed exactly (int32 lanes that cannot overflow, a property of
//!   each table that the tests check, then int64), and the sum is rounded half up
//!   (`(acc + 2^(shift-1)) >> shift`, an arithmetic shift) and saturated to int16. So the
//!   AVX2, SSE2, NEON and scalar kernels give bit-identical output.
//! * **State.** Per stream only the input not yet fully used (fewer samples than a phase has
//!   taps) and the position of the next output.

mod designed;
mod kernels;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::pcm::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use crate::AudioError;

pub(crate) use kernels::Kernel;

/// The longest resampling block accepted, in seconds of input: `in_rate / gcd(in_rate,
/// out_rate)` samples, the input that spans one cycle of output phases. Every standard rate
/// keeps it at 40 ms or less; a rate like 44 099 Hz would need a whole second (16 000 phases),
/// and is refused.
pub const MAX_BLOCK_S: f64 = 0.05;

/// Rates whose filters stay cached for the life of the process once built; see
/// [`filter_for`] for the others.
const STANDARD_RATES: [u32; 10] =
    [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000];

/// Stopband attenuation the run-time Kaiser designs aim for before int16 quantization: the
/// bar is 65 dB, and quantization costs a few. With several phases, the spurs beside a tone
/// are the prototype's response at the tone's images, far into the stopband, where a Kaiser
/// window's sidelobes fall: 80 dB there keeps a 1 kHz tone's spurs below -85 dB.
const KAISER_ATTENUATION_DB: [f64; 2] = [72.0, 80.0];

/// Taps per phase are a multiple of this: the widest kernel reads 16 int16 at a time.
const LANES: usize = 16;

/// A filter as `tools/design_filters.py` writes it: `phases` rows of `taps` coefficients,
/// tap `j` of phase `p` multiplying input `q + first + j` for an output at `q + p / L`.
#[derive(Debug)]
pub(crate) struct Designed {
    in_rate: u32,
    out_rate: u32,
    phases: usize,
    taps: usize,
    first: isize,
    shift: u32,
    coefs: &'static [i16],
}

/// One rate pair's filter as the kernels read it, shared by every stream of the pair.
#[derive(Debug)]
pub(crate) struct Filter {
    in_rate: u32,
    out_rate: u32,
    /// `L`: the output phases (the reduced output rate).
    phases: usize,
    /// `M`: the reduced input rate; each output is `M / L` input samples after the last.
    step: usize,
    /// Taps per phase: a multiple of [`LANES`], zeros at the start of a phase when padded.
    taps: usize,
    /// Input offset of tap 0 from the output's whole input position `q` (never positive).
    first: isize,
    /// The coefficients' fixed-point scale: each phase sums to `2^shift`.
    shift: u32,
    /// `phases` rows of `taps`.
    coefs: Box<[i16]>,
}

impl Filter {
    /// Pads each of the `phases` rows of `width` coefficients at its start to whole lanes.
    fn new(
        (in_rate, out_rate): (u32, u32),
        phases: usize,
        width: usize,
        first: isize,
        shift: u32,
        rows: &[i16],
    ) -> Self {
        let taps = width.div_ceil(LANES) * LANES;
        let pad = taps - width;
        let mut coefs = vec![0i16; phases * taps];
        for (dst, src) in coefs.chunks_exact_mut(taps).zip(rows.chunks_exact(width)) {
            dst[pad..].copy_from_slice(src);
        }
        let (_, step) = ratio(in_rate, out_rate);
        Self {
            in_rate,
            out_rate,
            phases,
            step: step as usize,
            taps,
            first: first - pad as isize,
            shift,
            coefs: coefs.into_boxed_slice(),
        }
    }

    /// Phase `p`'s taps.
    #[inline]
    fn phase(&self, p: usize) -> &[i16] {
        &self.coefs[p * self.taps..(p + 1) * self.taps]
    }

    /// Input samples after an output's own time that it needs: its look-ahead.
    fn lookahead(&self) -> usize {
        (self.first + self.taps as isize - 1).max(0) as usize
    }

    /// Input samples before the first output's first tap (silence, at the start).
    fn lead(&self) -> usize {
        self.first.unsigned_abs()
    }
}

/// `(L, M)`: the output and input rates divided by their gcd.
fn ratio(in_rate: u32, out_rate: u32) -> (u32, u32) {
    let (mut a, mut b) = (in_rate, out_rate);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let g = a.max(1);
    (out_rate / g, in_rate / g)
}

/// `(pass edge, stop edge)` in Hz: 7 kHz and 8.5 kHz for 16 kHz output, 3.4 kHz and
/// 4.25 kHz for 8 kHz; relative to the lower of the two rates, so an upsampler keeps the
/// input's band and rejects its images. The same as `band_edges` in the design script.
fn band_edges(in_rate: u32, out_rate: u32) -> (f64, f64) {
    let low = f64::from(in_rate.min(out_rate));
    let pass = if low <= 8_000.0 { 0.425 } else { 0.4375 };
    (low * pass, low * 17.0 / 32.0)
}

/// The zeroth-order modified Bessel function of the first kind, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    let half = x / 2.0;
    while term > sum * 1e-16 {
        term *= (half / k) * (half / k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// A Kaiser-windowed sinc for `in_rate -> out_rate`, at `L * in_rate`, as phase rows:
/// `(rows, width, first)`.
fn kaiser_rows(in_rate: u32, out_rate: u32) -> (Vec<f64>, usize, isize) {
    let (phases, _) = ratio(in_rate, out_rate);
    let l = phases as isize;
    let fs = f64::from(phases) * f64::from(in_rate);
    let (pass, stop) = band_edges(in_rate, out_rate);
    let cutoff = (pass + stop) / 2.0 / fs;
    let width = (stop - pass) / fs;
    let a = KAISER_ATTENUATION_DB[usize::from(phases > 1)];
    let beta = 0.1102 * (a - 8.7);
    // Kaiser's estimate of the length for attenuation `a` over transition `width`.
    let taps = (a - 7.95) / (2.285 * 2.0 * std::f64::consts::PI * width);
    let half = (taps / 2.0).ceil() as isize;
    let norm = bessel_i0(beta);
    // The prototype is symmetric: its taps at 0..=half, mirrored below.
    let taps: Vec<f64> = (0..=half)
        .map(|i| {
            let x = i as f64;
            let sinc = if i == 0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
            };
            let r = x / half as f64;
            sinc * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm
        })
        .collect();
    let first = -(half / l);
    let last = (l - 1 + half) / l;
    let cols = (last - first + 1) as usize;
    let mut rows = vec![0.0; phases as usize * cols];
    for p in 0..l {
        for col in 0..cols {
            let i = (first + col as isize) * l - p;
            if let Some(&tap) = taps.get(i.unsigned_abs()) {
                rows[p as usize * cols + col] = tap;
            }
        }
    }
    (rows, cols, first)
}

/// Each row scaled to sum to `2^shift` and rounded, the remainder given to the taps whose
/// rounding moved them furthest the other way.
///
/// With several phases (`shaped`), the phases' rounding errors differ, and their differences
/// are spurs beside every tone; so each phase's rounding error is pushed away from the low
/// frequencies where speech has its energy (first-order error feedback along its taps).
fn quantize(rows: &[f64], width: usize, shift: u32, shaped: bool) -> Vec<i64> {
    let total = 1i64 << shift;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.chunks_exact(width) {
        let sum: f64 = row.iter().sum();
        let exact: Vec<f64> = row.iter().map(|&c| c / sum * total as f64).collect();
        let mut q: Vec<i64> = Vec::with_capacity(width);
        let mut carried = 0.0;
        for &x in &exact {
            let v = x + if shaped { carried } else { 0.0 };
            let r = v.round();
            carried = v - r;
            q.push(r as i64);
        }
        let short = total - q.iter().sum::<i64>();
        if short != 0 {
            let sign = short.signum();
            let mut order: Vec<usize> = (0..width).collect();
            let err = |i: usize| (exact[i] - q[i] as f64) * sign as f64;
            order.sort_by(|&a, &b| err(b).total_cmp(&err(a)));
            for &i in order.iter().cycle().take(short.unsigned_abs() as usize) {
                q[i] += sign;
            }
        }
        out.extend(q);
    }
    out
}

/// Whether no int32 lane of any kernel can overflow with these coefficients, padded at the
/// start of each row to whole [`LANES`]: a lane sums the taps whose padded index mod 16 is
/// `2l` or `2l + 1` (NEON's lanes one index each, a subset), so `32768` times their sum of
/// `|c|` must fit in an int32. The lanes are added up in int64.
fn lanes_fit(q: &[i64], width: usize) -> bool {
    let pad = width.div_ceil(LANES) * LANES - width;
    q.chunks_exact(width).all(|row| {
        let mut lanes = [0i64; LANES / 2];
        for (j, c) in row.iter().enumerate() {
            lanes[(j + pad) % LANES / 2] += c.abs();
        }
        lanes.iter().all(|&s| 32_768 * s <= i64::from(i32::MAX))
    })
}

/// The run-time design for a pair without a designed table.
fn kaiser_filter(in_rate: u32, out_rate: u32) -> Filter {
    let (phases, _) = ratio(in_rate, out_rate);
    let (rows, width, first) = kaiser_rows(in_rate, out_rate);
    // The finest scale that keeps every coefficient an int16 and every lane in an int32;
    // 12 always does (a lowpass' taps and their absolute sum are a few times its DC gain).
    let (q, shift) = (12..=17)
        .rev()
        .map(|shift| (quantize(&rows, width, shift, phases > 1), shift))
        .find(|(q, _)| q.iter().all(|c| c.abs() <= 32_767) && lanes_fit(q, width))
        .unwrap_or_else(|| (quantize(&rows, width, 12, phases > 1), 12));
    let q: Vec<i16> = q.iter().map(|&c| c.clamp(-32_768, 32_767) as i16).collect();
    Filter::new((in_rate, out_rate), phases as usize, width, first, shift, &q)
}

/// The filter for a pair: its designed table, or a Kaiser design. Equal rates get a one-tap
/// identity.
fn build_filter(in_rate: u32, out_rate: u32) -> Filter {
    if in_rate == out_rate {
        return Filter::new((in_rate, out_rate), 1, 1, 0, 14, &[1 << 14]);
    }
    match designed::DESIGNED.iter().find(|d| (d.in_rate, d.out_rate) == (in_rate, out_rate)) {
        Some(d) => Filter::new((in_rate, out_rate), d.phases, d.taps, d.first, d.shift, d.coefs),
        None => kaiser_filter(in_rate, out_rate),
    }
}

/// Designs for rates outside the standard ones kept once no stream uses them: the latest few,
/// so that streams reconnecting at an odd rate do not design its filter each time.
const KEPT_ODD_DESIGNS: usize = 4;

/// The filters built so far.
#[derive(Default)]
struct Cache {
    filters: HashMap<(u32, u32), Arc<Filter>>,
    /// Non-standard pairs, the most recently built last.
    odd: VecDeque<(u32, u32)>,
}

/// The shared filter for a pair, built at first use. A non-standard pair's design is dropped
/// once no stream uses it and [`KEPT_ODD_DESIGNS`] newer ones have been built, so odd rates
/// cannot pile up tables (the largest, for rates near 192 kHz, are about 1 MB).
fn filter_for(in_rate: u32, out_rate: u32) -> Arc<Filter> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let mut cache =
        CACHE.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    let key = (in_rate, out_rate);
    if let Some(f) = cache.filters.get(&key) {
        return Arc::clone(f);
    }
    let f = Arc::new(build_filter(in_rate, out_rate));
    cache.filters.insert(key, Arc::clone(&f));
    if !(STANDARD_RATES.contains(&in_rate) && STANDARD_RATES.contains(&out_rate)) {
        cache.odd.push_back(key);
        let Cache { filters, odd } = &mut *cache;
        let older = odd.len().saturating_sub(KEPT_ODD_DESIGNS);
        let mut index = 0;
        odd.retain(|k| {
            index += 1;
            let keep = index > older || filters.get(k).is_some_and(|f| Arc::strong_count(f) > 1);
            if !keep {
                filters.remove(k);
            }
            keep
        });
    }
    f
}

thread_local! {
    /// Where a push lays the stream's kept input and the new samples end to end: one buffer
    /// per thread, warm in the cache whichever of hundreds of streams pushes.
    static SCRATCH: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

/// A mono resampler for a stream that arrives in pieces of any size.
pub struct StreamResampler {
    filter: Arc<Filter>,
    kernel: Kernel,
    /// Input from the next output's first tap on: fewer samples than a phase has taps.
    kept: Vec<i16>,
    /// The next output's phase, `0..L`.
    phase: usize,
    /// Input samples to pass over before the next output's first tap (when `M / L` exceeds
    /// a phase's taps; `kept` is empty then).
    skip: usize,
    taken_in: u64,
    emitted_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("in_rate", &self.filter.in_rate)
            .field("out_rate", &self.filter.out_rate)
            .field("phases", &self.filter.phases)
            .field("taps", &self.filter.taps)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A resampler from `in_rate` to `out_rate` Hz.
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, AudioError> {
        Self::with_kernel(in_rate, out_rate, Kernel::best())
    }

    /// A resampler whose dot products use `kernel` (the tests compare them).
    pub(crate) fn with_kernel(
        in_rate: u32,
        out_rate: u32,
        kernel: Kernel,
    ) -> Result<Self, AudioError> {
        for rate in [in_rate, out_rate] {
            if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
                return Err(AudioError::SampleRate(rate));
            }
        }
        let (_, block) = ratio(in_rate, out_rate);
        if f64::from(block) > MAX_BLOCK_S * f64::from(in_rate) {
            return Err(AudioError::OddSampleRate { input: in_rate, output: out_rate });
        }
        let filter = filter_for(in_rate, out_rate);
        let mut kept = Vec::with_capacity(filter.taps);
        kept.resize(filter.lead(), 0);
        Ok(Self { filter, kernel, kept, phase: 0, skip: 0, taken_in: 0, emitted_out: 0 })
    }

    /// The input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.filter.in_rate
    }

    /// The output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.filter.out_rate
    }

    /// The latency this stage adds to a live stream, in seconds: an output comes out once the
    /// input its last tap reads has been pushed, the filter's look-ahead after its own time.
    pub fn added_latency_s(&self) -> f64 {
        self.filter.lookahead() as f64 / f64::from(self.filter.in_rate)
    }

    /// Resamples `samples` and appends every output sample they complete.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<i16>) {
        self.push_with(samples.len(), |dst| dst.copy_from_slice(samples), out);
    }

    /// Resamples `n` input samples that `fill` writes (into a slice of exactly `n`), and
    /// appends every output sample they complete: the caller decodes its input straight into
    /// the resampler's buffer.
    pub fn push_with(&mut self, n: usize, fill: impl FnOnce(&mut [i16]), out: &mut Vec<i16>) {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => self.run(&mut buf, n, fill, out),
            // Only if `fill` itself pushed into a resampler on this thread.
            Err(_) => self.run(&mut Vec::new(), n, fill, out),
        });
    }

    fn run(
        &mut self,
        buf: &mut Vec<i16>,
        n: usize,
        fill: impl FnOnce(&mut [i16]),
        out: &mut Vec<i16>,
    ) {
        self.taken_in += n as u64;
        if self.skip >= n {
            self.skip -= n;
            return;
        }
        let f = &*self.filter;
        buf.clear();
        buf.extend_from_slice(&self.kept);
        let kept = buf.len();
        buf.resize(kept + n, 0);
        fill(&mut buf[kept..]);
        let start = std::mem::take(&mut self.skip);
        // Output j of this push reads buf[start_j..start_j + taps], where
        // start_j = start + (phase + j * M) / L; it can be made while that fits.
        let count = match buf.len().checked_sub(start + f.taps) {
            Some(room) => ((room + 1) * f.phases - self.phase - 1) / f.step + 1,
            None => 0,
        };
        let at = out.len();
        out.resize(at + count, 0);
        kernels::run(self.kernel, f, buf, start, self.phase, &mut out[at..]);
        self.emitted_out += count as u64;
        let advance = self.phase + count * f.step;
        let next = start + advance / f.phases;
        self.phase = advance % f.phases;
        self.kept.clear();
        match buf.get(next..) {
            Some(rest) => self.kept.extend_from_slice(rest),
            None => self.skip = next - buf.len(),
        }
    }

    /// Ends the current stretch of audio: the outputs still owed come out, computed with
    /// zeros after the last input, exactly `round(n_in * out_rate / in_rate)` in all for the
    /// stretch's `n_in` inputs; then the resampler starts afresh.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let (in_rate, out_rate) = (u64::from(self.filter.in_rate), u64::from(self.filter.out_rate));
        let expected = (self.taken_in * out_rate + in_rate / 2) / in_rate;
        // Each round of zeros is long enough to complete at least one more output.
        let zeros = self.filter.taps + self.filter.step / self.filter.phases + 1;
        let start = out.len() as u64;
        let emitted = self.emitted_out;
        while self.emitted_out < expected {
            self.push_with(zeros, |z| z.fill(0), out);
        }
        // The filter's look-ahead keeps pushes from running ahead of the rounded count, so
        // this only trims what the last round of zeros made past it.
        let keep = start + expected.saturating_sub(emitted);
        out.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.kept.clear();
        self.kept.resize(self.filter.lead(), 0);
        self.phase = 0;
        self.skip = 0;
        self.taken_in = 0;
        self.emitted_out = 0;
    }
}

#[cfg(test)]
mod tests;
