// SPDX-License-Identifier: Apache-2.0

//! Streaming sample-rate conversion of mono audio, on rubato's synchronous FFT resampler.
//!
//! The wrapper makes rubato's chunked API fit a stream of arbitrary pushes:
//! * input is gathered into the resampler's fixed chunk (about 10 ms);
//! * the resampler's startup delay is trimmed, so output sample `k` lines up with input time
//!   `k / out_rate` (Baseten reports word times relative to the audio it received);
//! * [`StreamResampler::flush`] pushes the tail out with zeros and trims it, so that after a
//!   flush exactly `round(n_in * out_rate / in_rate)` samples have come out for `n_in` in.

use audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::pcm::{f32_to_i16, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use crate::AudioError;

/// The longest resampling block accepted, in seconds of input. rubato's blocks are whole
/// multiples of `in_rate / gcd(in_rate, out_rate)` samples, which every standard rate keeps at
/// 40 ms or less, but which is a whole second for a rate like 44 099 Hz.
pub const MAX_BLOCK_S: f64 = 0.05;

/// A mono resampler for a stream that arrives in pieces of any size.
pub struct StreamResampler {
    fft: Fft<f32>,
    in_rate: u32,
    out_rate: u32,
    chunk_in: usize,
    /// Input not yet resampled; always shorter than `chunk_in` between calls.
    pending: Vec<f32>,
    scratch_out: Vec<f32>,
    /// Leading output samples still to drop (the resampler's delay).
    to_skip: usize,
    taken_in: u64,
    emitted_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("chunk_in", &self.chunk_in)
            .finish_non_exhaustive()
    }
}

/// The fewest input samples that map to a whole number of output samples.
fn smallest_block(in_rate: u32, out_rate: u32) -> u32 {
    let (mut a, mut b) = (in_rate, out_rate);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    in_rate / a.max(1)
}

impl StreamResampler {
    /// A resampler from `in_rate` to `out_rate` Hz.
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, AudioError> {
        for rate in [in_rate, out_rate] {
            if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
                return Err(AudioError::SampleRate(rate));
            }
        }
        // Refused before rubato plans its FFT, which for such rates takes tens of ms: a caller
        // sending odd rates must not stall the event loop.
        if smallest_block(in_rate, out_rate) as f64 > MAX_BLOCK_S * f64::from(in_rate) {
            return Err(AudioError::OddSampleRate { input: in_rate, output: out_rate });
        }
        // About 10 ms per FFT block: short enough for real-time latency, long enough for a
        // >= 60 dB stopband. rubato rounds it to a multiple of the rates' smallest block.
        let chunk_hint = (in_rate as usize / 100).max(1);
        let fft =
            Fft::<f32>::new(in_rate as usize, out_rate as usize, chunk_hint, 1, FixedSync::Both)
                .map_err(|_| AudioError::SampleRate(in_rate))?;
        let chunk_in = fft.input_frames_next();
        if chunk_in as f64 > MAX_BLOCK_S * f64::from(in_rate) {
            return Err(AudioError::OddSampleRate { input: in_rate, output: out_rate });
        }
        let to_skip = fft.output_delay();
        Ok(Self {
            scratch_out: vec![0.0; fft.output_frames_max()],
            pending: Vec::with_capacity(chunk_in),
            fft,
            in_rate,
            out_rate,
            chunk_in,
            to_skip,
            taken_in: 0,
            emitted_out: 0,
        })
    }

    /// The input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// The output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Worst-case latency this stage adds to a live stream, in seconds: a sample may wait for
    /// its chunk to fill, then for the resampler's delay to pass.
    pub fn added_latency_s(&self) -> f64 {
        let chunk = (self.chunk_in - 1) as f64 / f64::from(self.in_rate);
        let delay = self.fft.output_delay() as f64 / f64::from(self.out_rate);
        chunk + delay
    }

    /// Resamples `samples` (int16-scaled floats) and appends every completed output sample.
    pub fn push(
        &mut self,
        samples: impl IntoIterator<Item = f32>,
        out: &mut Vec<i16>,
    ) -> Result<(), AudioError> {
        self.pending.extend(samples);
        let chunks = self.pending.len() / self.chunk_in;
        for i in 0..chunks {
            self.run_chunk(i * self.chunk_in, out, u64::MAX)?;
        }
        self.taken_in += (chunks * self.chunk_in) as u64;
        self.pending.drain(..chunks * self.chunk_in);
        Ok(())
    }

    /// Ends the current stretch of audio: the buffered input and the resampler's tail come
    /// out, zero-padded, trimmed to the exact output length; the resampler starts afresh.
    pub fn flush(&mut self, out: &mut Vec<i16>) -> Result<(), AudioError> {
        self.taken_in += self.pending.len() as u64;
        let rates = (u64::from(self.in_rate), u64::from(self.out_rate));
        let expected = (self.taken_in * rates.1 + rates.0 / 2) / rates.0;
        while self.emitted_out < expected {
            self.pending.resize(self.chunk_in, 0.0);
            self.run_chunk(0, out, expected)?;
            self.pending.clear();
        }
        self.pending.clear();
        self.fft.reset();
        self.to_skip = self.fft.output_delay();
        self.taken_in = 0;
        self.emitted_out = 0;
        Ok(())
    }

    /// Resamples the chunk of `pending` at `offset`, appending output samples until `limit`
    /// have been emitted in all.
    fn run_chunk(
        &mut self,
        offset: usize,
        out: &mut Vec<i16>,
        limit: u64,
    ) -> Result<(), AudioError> {
        let frames_in = self.chunk_in;
        let frames_out = self.scratch_out.len();
        let failed = |e: &dyn std::fmt::Display| AudioError::Resampler(e.to_string());
        let input =
            SequentialSlice::new(&self.pending[offset..], 1, frames_in).map_err(|e| failed(&e))?;
        let mut output = SequentialSlice::new_mut(&mut self.scratch_out, 1, frames_out)
            .map_err(|e| failed(&e))?;
        let (_, written) =
            self.fft.process_into_buffer(&input, &mut output, None).map_err(|e| failed(&e))?;
        let skip = self.to_skip.min(written);
        self.to_skip -= skip;
        let room = usize::try_from(limit.saturating_sub(self.emitted_out)).unwrap_or(usize::MAX);
        let produced = &self.scratch_out[skip..written];
        let produced = &produced[..produced.len().min(room)];
        out.extend(produced.iter().map(|&x| f32_to_i16(x)));
        self.emitted_out += produced.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn tone(rate: u32, freq: f64, secs: f64, amp: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Resamples `input` in pushes of `piece` samples, then flushes.
    fn run(r: &mut StreamResampler, input: &[f32], piece: usize) -> Vec<i16> {
        let mut out = Vec::new();
        for p in input.chunks(piece) {
            r.push(p.iter().copied(), &mut out).unwrap();
        }
        r.flush(&mut out).unwrap();
        out
    }

    /// Least-squares fit of a sinusoid at `freq`; returns (signal power, residual power).
    fn fit(samples: &[f64], rate: u32, freq: f64) -> (f64, f64) {
        let w = 2.0 * PI * freq / f64::from(rate);
        let (mut ss, mut cc, mut sc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &y) in samples.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            ss += s * s;
            cc += c * c;
            sc += s * c;
            ys += y * s;
            yc += y * c;
        }
        let det = ss * cc - sc * sc;
        let a = (ys * cc - yc * sc) / det;
        let b = (yc * ss - ys * sc) / det;
        let mut sig = 0.0;
        let mut res = 0.0;
        for (i, &y) in samples.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            let fitted = a * s + b * c;
            sig += fitted * fitted;
            res += (y - fitted) * (y - fitted);
        }
        (sig, res)
    }

    fn power(samples: &[f64]) -> f64 {
        samples.iter().map(|x| x * x).sum()
    }

    #[test]
    fn output_length_is_exact_after_flush() {
        for (inr, outr) in [(48_000, 16_000), (24_000, 16_000), (44_100, 16_000), (8_000, 16_000)] {
            for n in [0usize, 1, 479, 480, 961, 12_345] {
                let mut r = StreamResampler::new(inr, outr).unwrap();
                let out = run(&mut r, &vec![0.0; n], 317);
                let expected = (n as u64 * u64::from(outr) + u64::from(inr) / 2) / u64::from(inr);
                assert_eq!(out.len() as u64, expected, "{inr}->{outr} n={n}");
            }
        }
    }

    #[test]
    fn tone_keeps_60_db_snr() {
        for (inr, outr) in [(48_000, 16_000), (24_000, 16_000), (44_100, 16_000), (48_000, 8_000)] {
            let mut r = StreamResampler::new(inr, outr).unwrap();
            let out = run(&mut r, &tone(inr, 1000.0, 1.0, 16_000.0), 960);
            // Skip the edges, where the flush's zero padding and the filter's start show.
            let mid: Vec<f64> = out[800..out.len() - 800].iter().map(|&x| f64::from(x)).collect();
            let (sig, res) = fit(&mid, outr, 1000.0);
            let snr = 10.0 * (sig / res).log10();
            assert!(snr >= 60.0, "{inr}->{outr}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn tone_is_aligned_in_time() {
        // A click at input sample 4800 (100 ms) lands at output sample 1600 at 16 kHz.
        let mut input = vec![0.0f32; 9600];
        input[4800] = 30_000.0;
        let mut r = StreamResampler::new(48_000, 16_000).unwrap();
        let out = run(&mut r, &input, 480);
        let peak = out.iter().enumerate().max_by_key(|(_, &x)| x.abs()).map(|(i, _)| i).unwrap();
        assert_eq!(peak, 1600);
    }

    #[test]
    fn tones_above_the_new_nyquist_are_attenuated_60_db() {
        for (inr, outr, freq) in [
            (48_000, 16_000, 8_500.0),
            (24_000, 16_000, 8_500.0),
            (44_100, 16_000, 12_000.0),
            (48_000, 8_000, 4_500.0),
        ] {
            let input = tone(inr, freq, 1.0, 16_000.0);
            let in_power = power(&input.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                * f64::from(outr)
                / f64::from(inr);
            let mut r = StreamResampler::new(inr, outr).unwrap();
            let out = run(&mut r, &input, 960);
            // Steady state only: the tone's abrupt start and stop are broadband clicks.
            let mid = &out[800..out.len() - 800];
            let out_power = power(&mid.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                * out.len() as f64
                / mid.len() as f64;
            let attenuation = 10.0 * (in_power / out_power.max(1e-9)).log10();
            assert!(attenuation >= 60.0, "{inr}->{outr} {freq} Hz: {attenuation:.1} dB");
        }
    }

    #[test]
    fn latency_is_reported() {
        let r = StreamResampler::new(48_000, 16_000).unwrap();
        let latency = r.added_latency_s();
        assert!(latency > 0.005 && latency < 0.03, "{latency}");
    }

    #[test]
    fn rejects_absurd_rates() {
        assert_eq!(StreamResampler::new(0, 16_000).unwrap_err(), AudioError::SampleRate(0));
        assert!(StreamResampler::new(1_000_000, 16_000).is_err());
        assert_eq!(
            StreamResampler::new(44_099, 16_000).unwrap_err(),
            AudioError::OddSampleRate { input: 44_099, output: 16_000 }
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn a_rate_is_refused_exactly_when_its_block_is_too_long(
            input in MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE
        ) {
            let too_long = f64::from(smallest_block(input, 16_000)) > MAX_BLOCK_S * f64::from(input);
            let result = StreamResampler::new(input, 16_000);
            let accepted = result.as_ref().is_ok_and(|r| {
                !too_long && r.chunk_in as f64 <= MAX_BLOCK_S * f64::from(input)
            });
            let refused = result.as_ref().is_err_and(|e| {
                too_long && *e == AudioError::OddSampleRate { input, output: 16_000 }
            });
            proptest::prop_assert!(accepted || refused);
        }
    }

    #[test]
    fn every_standard_rate_is_accepted() {
        let rates = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000];
        for input in rates {
            for output in [8_000, 16_000] {
                if input != output {
                    assert!(StreamResampler::new(input, output).is_ok(), "{input}->{output}");
                }
            }
        }
    }

    #[test]
    fn upsampling_keeps_60_db_snr() {
        for (inr, outr) in [(8_000, 16_000), (11_025, 16_000)] {
            let mut r = StreamResampler::new(inr, outr).unwrap();
            let out = run(&mut r, &tone(inr, 1000.0, 1.0, 16_000.0), 160);
            let mid: Vec<f64> = out[800..out.len() - 800].iter().map(|&x| f64::from(x)).collect();
            let (sig, res) = fit(&mid, outr, 1000.0);
            let snr = 10.0 * (sig / res).log10();
            assert!(snr >= 60.0, "{inr}->{outr}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn can_continue_after_flush() {
        let mut r = StreamResampler::new(48_000, 16_000).unwrap();
        let first = run(&mut r, &vec![100.0; 1000], 100);
        let second = run(&mut r, &vec![100.0; 1000], 100);
        assert_eq!(first.len(), second.len());
        assert_eq!(first, second);
    }
}
