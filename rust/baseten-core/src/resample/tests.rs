// SPDX-License-Identifier: Apache-2.0

//! The resampler against its quality bar, for every standard rate pair, and its streaming
//! behaviour: exact counts, alignment, kernels identical bit for bit.

use super::*;
use proptest::prelude::*;
use std::f64::consts::PI;

/// Every standard input rate paired with each wire rate it differs from.
fn standard_pairs() -> Vec<(u32, u32)> {
    let mut pairs = Vec::new();
    for out in [16_000, 8_000] {
        for input in STANDARD_RATES {
            if input != out {
                pairs.push((input, out));
            }
        }
    }
    pairs
}

/// Each phase's complex gain for an input tone at `freq` Hz, relative to the tone sampled
/// at the output's own time (what an ideal resampler gives): `(re, im)` per phase, computed
/// from the int16 table exactly as the kernels apply it.
fn phase_gains(f: &Filter, freq: f64) -> Vec<(f64, f64)> {
    let w = 2.0 * PI * freq / f64::from(f.in_rate);
    let scale = f64::from(1u32 << f.shift);
    (0..f.phases)
        .map(|p| {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &c) in f.phase(p).iter().enumerate() {
                let offset = (f.first + j as isize) as f64 - p as f64 / f.phases as f64;
                let (s, co) = (w * offset).sin_cos();
                re += f64::from(c) * co;
                im += f64::from(c) * s;
            }
            (re / scale, im / scale)
        })
        .collect()
}

/// A tone's gain in dB (the phases' mean: every phase occurs equally often), and the level of
/// the spurs the phases' differences make, in dB below the tone.
fn gain_and_spurs(f: &Filter, freq: f64) -> (f64, f64) {
    let g = phase_gains(f, freq);
    let n = g.len() as f64;
    let mean = (g.iter().map(|x| x.0).sum::<f64>() / n, g.iter().map(|x| x.1).sum::<f64>() / n);
    let spread = g.iter().map(|x| (x.0 - mean.0).powi(2) + (x.1 - mean.1).powi(2)).sum::<f64>() / n;
    let gain = (mean.0 * mean.0 + mean.1 * mean.1).sqrt();
    (20.0 * gain.log10(), -10.0 * spread.max(1e-30).log10())
}

/// The output power of a tone at `freq` Hz relative to its input power, in dB (negative).
fn power_db(f: &Filter, freq: f64) -> f64 {
    let g = phase_gains(f, freq);
    let power = g.iter().map(|x| x.0 * x.0 + x.1 * x.1).sum::<f64>() / g.len() as f64;
    10.0 * power.max(1e-30).log10()
}

/// Frequencies from `from` to `to` Hz in steps of `step`, both ends included.
fn sweep(from: f64, to: f64, step: f64) -> Vec<f64> {
    let mut out: Vec<f64> = (0..).map(|i| from + i as f64 * step).take_while(|&x| x < to).collect();
    out.push(to);
    out
}

/// (pass edge, stop edge, top): the passband to check, and the stopband from its edge to
/// `top` (the input's Nyquist; for an upsampler, which has no input above its Nyquist, the
/// images of the input's band: tones up to `in_rate - stop edge`, whose images lie above the
/// stop edge).
fn bands(input: u32, output: u32) -> (f64, f64, f64) {
    let (pass, stop) = band_edges(input, output);
    let top = if input > output { f64::from(input) / 2.0 } else { f64::from(input) - stop };
    (pass, stop, top)
}

fn tone(rate: u32, freq: f64, n: usize, amp: f64) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
        .collect()
}

/// Resamples `input` in pushes of `piece` samples, then flushes.
fn run(r: &mut StreamResampler, input: &[i16], piece: usize) -> Vec<i16> {
    let mut out = Vec::new();
    for p in input.chunks(piece.max(1)) {
        r.push(p, &mut out);
    }
    r.flush(&mut out);
    out
}

/// Least-squares fit of a sinusoid at `freq`: (amplitude, residual power per sample).
fn fit(samples: &[i16], rate: u32, freq: f64, first: usize) -> (f64, f64) {
    let w = 2.0 * PI * freq / f64::from(rate);
    let (mut ss, mut cc, mut sc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let at = |i: usize| ((w * (first + i) as f64).sin(), (w * (first + i) as f64).cos());
    for (i, &y) in samples.iter().enumerate() {
        let (s, c) = at(i);
        let y = f64::from(y);
        (ss, cc, sc, ys, yc) = (ss + s * s, cc + c * c, sc + s * c, ys + y * s, yc + y * c);
    }
    let det = ss * cc - sc * sc;
    let (a, b) = ((ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det);
    let res: f64 = samples
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let (s, c) = at(i);
            (f64::from(y) - a * s - b * c).powi(2)
        })
        .sum();
    ((a * a + b * b).sqrt(), res / samples.len() as f64)
}

/// A tone through the resampler: its gain in dB and its SNR, over the steady state.
fn measure(input: u32, output: u32, freq: f64, amp: f64, secs: f64) -> (f64, f64) {
    let mut r = StreamResampler::new(input, output).unwrap();
    let n = (f64::from(input) * secs) as usize;
    let out = run(&mut r, &tone(input, freq, n, amp), 960);
    let edge = r.filter.taps * r.filter.phases / r.filter.step + 8;
    let mid = &out[edge..out.len() - edge];
    let (a, res) = fit(mid, output, freq, edge);
    (20.0 * (a / amp).log10(), 10.0 * ((a * a / 2.0) / res).log10())
}

#[test]
fn every_table_rules_out_int32_overflow_in_every_lane() {
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        for p in 0..f.phases {
            let mut lanes = [0i64; LANES / 2];
            for (j, &c) in f.phase(p).iter().enumerate() {
                lanes[j % LANES / 2] += i64::from(c).abs();
            }
            for (l, &s) in lanes.iter().enumerate() {
                assert!(32_768 * s <= i64::from(i32::MAX), "{input}->{output} p{p} lane {l}: {s}");
            }
        }
    }
}

#[test]
fn every_phase_has_unity_gain_at_dc() {
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        assert_eq!(f.coefs.len(), f.phases * f.taps);
        assert_eq!(f.taps % LANES, 0);
        for p in 0..f.phases {
            let sum: i64 = f.phase(p).iter().map(|&c| i64::from(c)).sum();
            assert_eq!(sum, 1 << f.shift, "{input}->{output} phase {p}");
        }
    }
}

#[test]
fn the_designed_pairs_use_their_tables() {
    for d in designed::DESIGNED {
        let f = filter_for(d.in_rate, d.out_rate);
        assert_eq!((f.phases, f.shift), (d.phases, d.shift));
        assert_eq!(f.taps, d.taps.div_ceil(LANES) * LANES);
        let pad = f.taps - d.taps;
        for p in 0..f.phases {
            assert_eq!(&f.phase(p)[pad..], &d.coefs[p * d.taps..(p + 1) * d.taps]);
        }
        assert_eq!(ratio(d.in_rate, d.out_rate).0 as usize, d.phases);
    }
}

#[test]
fn passband_is_within_a_tenth_of_a_db() {
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        let (pass, _, _) = bands(input, output);
        for freq in sweep(0.0, pass, 100.0) {
            let (gain, _) = gain_and_spurs(&f, freq);
            assert!(gain.abs() <= 0.1, "{input}->{output} at {freq} Hz: {gain:.3} dB");
        }
    }
}

#[test]
fn stopband_is_at_least_65_db_down() {
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        let (_, stop, top) = bands(input, output);
        let stopband: Vec<f64> = if input > output { sweep(stop, top, 100.0) } else { Vec::new() };
        for freq in stopband {
            let db = power_db(&f, freq);
            assert!(db <= -65.0, "{input}->{output} at {freq} Hz: {db:.1} dB");
        }
        // The phases' differences are where aliases and images of in-band tones go.
        for freq in sweep(0.0, if input > output { top.min(stop) } else { top }, 100.0) {
            let (_, spurs) = gain_and_spurs(&f, freq);
            if input < output || freq <= band_edges(input, output).0 {
                assert!(spurs >= 65.0, "{input}->{output} at {freq} Hz: spurs {spurs:.1} dB");
            }
        }
    }
}

#[test]
fn tones_through_the_int16_path_match_the_tables() {
    // The measured gain of real tones agrees with the gain computed from the tables, in the
    // passband (every 100 Hz) and the stopband (every 500 Hz, where the output is tiny).
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        let (pass, stop, top) = bands(input, output);
        for freq in sweep(100.0, pass, 100.0) {
            let (measured, _) = measure(input, output, freq, 16_000.0, 0.1);
            let (expected, _) = gain_and_spurs(&f, freq);
            assert!(measured.abs() <= 0.1, "{input}->{output} at {freq} Hz: {measured:.3} dB");
            assert!((measured - expected).abs() < 0.01, "{input}->{output} at {freq} Hz");
        }
        if input > output {
            for freq in sweep(stop, top - 100.0, 500.0) {
                let mut r = StreamResampler::new(input, output).unwrap();
                let n = f64::from(input) as usize / 10;
                let out = run(&mut r, &tone(input, freq, n, 30_000.0), 960);
                let edge = f.taps * f.phases / f.step + 8;
                let mid = &out[edge..out.len() - edge];
                let power =
                    mid.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / mid.len() as f64;
                let db = 10.0 * (power.max(1e-9) / (30_000.0f64.powi(2) / 2.0)).log10();
                assert!(db <= -65.0, "{input}->{output} at {freq} Hz: {db:.1} dB");
            }
        }
    }
}

#[test]
fn a_1_khz_tone_keeps_85_db_snr() {
    for (input, output) in standard_pairs() {
        let (_, snr) = measure(input, output, 1000.0, 29_000.0, 0.5);
        assert!(snr >= 85.0, "{input}->{output}: SNR {snr:.1} dB");
    }
}

#[test]
fn latency_is_within_3_ms_at_16_khz_and_6_ms_at_8_khz() {
    for (input, output) in standard_pairs() {
        let r = StreamResampler::new(input, output).unwrap();
        let latency = r.added_latency_s();
        let bound = if output == 16_000 { 0.003 } else { 0.006 };
        assert!(latency > 0.0 && latency <= bound, "{input}->{output}: {latency}");
        assert_eq!(latency, r.filter.lookahead() as f64 / f64::from(input));
    }
}

#[test]
fn a_click_lands_at_its_own_time() {
    // Output k is input time k * in / out, for every pair: a click at input sample n (a
    // multiple of in / gcd) peaks at output n * out / in.
    for (input, output) in standard_pairs() {
        let (l, m) = ratio(input, output);
        let at = (m as usize) * (2_000 / m as usize + 1);
        let mut click = vec![0i16; at * 2 + 4_000];
        click[at] = 30_000;
        let out = run(&mut StreamResampler::new(input, output).unwrap(), &click, 333);
        let peak = (0..out.len()).max_by_key(|&i| out[i].unsigned_abs()).unwrap();
        assert_eq!(peak, at * l as usize / m as usize, "{input}->{output}");
    }
}

/// The exact output of `count` outputs from (`start`, `phase`) on `x`: the sum in 128 bits,
/// rounded half up, saturated.
fn exact_outputs(
    f: &Filter,
    x: &[i16],
    mut start: usize,
    mut phase: usize,
    count: usize,
) -> Vec<i16> {
    let mut out = Vec::new();
    for _ in 0..count {
        let sum: i128 = x[start..start + f.taps]
            .iter()
            .zip(f.phase(phase))
            .map(|(&a, &b)| i128::from(a) * i128::from(b))
            .sum();
        let rounded = (sum + (1 << (f.shift - 1))) >> f.shift;
        out.push(rounded.clamp(i128::from(i16::MIN), i128::from(i16::MAX)) as i16);
        let next = phase + f.step;
        start += next / f.phases;
        phase = next % f.phases;
    }
    out
}

#[test]
fn the_kernels_agree_with_exact_arithmetic_at_the_extremes() {
    // The input that drives a phase's sum to its largest magnitude, of either sign, placed
    // under each of a run of outputs in turn (so under every slot of a batched kernel): each
    // kernel equals the exact sum rounded half up, saturated.
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        let count = 9;
        for p in 0..f.phases {
            for slot in 0..count {
                for sign in [1i32, -1] {
                    // The first output's phase, such that output `slot` has phase `p`.
                    let first = (p + f.phases * count - (slot * f.step) % f.phases) % f.phases;
                    let (mut at, mut ph) = (0, first);
                    for _ in 0..slot {
                        at += (ph + f.step) / f.phases;
                        ph = (ph + f.step) % f.phases;
                    }
                    assert_eq!(ph, p);
                    let len = at + f.taps + (count - slot) * (f.step / f.phases + 1);
                    let mut x: Vec<i16> =
                        (0..len).map(|i| ((i * 7919) % 65_536) as u16 as i16).collect();
                    for (xi, &c) in x[at..].iter_mut().zip(f.phase(p)) {
                        *xi = if i32::from(c) * sign >= 0 { i16::MAX } else { i16::MIN };
                    }
                    let expected = exact_outputs(&f, &x, 0, first, count);
                    for kernel in Kernel::available() {
                        let mut out = vec![0i16; count];
                        kernels::run(kernel, &f, &x, 0, first, &mut out);
                        assert_eq!(out, expected, "{input}->{output} p{p} slot {slot} {kernel:?}");
                    }
                }
            }
            if f.phases > 8 && p >= 3 {
                break; // the first phases are enough where there are hundreds
            }
        }
    }
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

#[test]
fn every_standard_rate_is_accepted() {
    for (input, output) in standard_pairs() {
        assert!(StreamResampler::new(input, output).is_ok(), "{input}->{output}");
    }
}

#[test]
fn can_continue_after_flush() {
    let mut r = StreamResampler::new(48_000, 16_000).unwrap();
    let first = run(&mut r, &[100; 1000], 100);
    let second = run(&mut r, &[100; 1000], 100);
    assert_eq!(first.len(), 333);
    assert_eq!(first, second);
}

#[test]
fn equal_rates_pass_through() {
    let input: Vec<i16> = (0..1000).map(|i| (i * 37 % 65_536 - 32_768) as i16).collect();
    let mut r = StreamResampler::new(16_000, 16_000).unwrap();
    assert_eq!(run(&mut r, &input, 77), input);
    assert_eq!(r.added_latency_s(), 0.0);
}

/// Rates for the property tests: the standard ones and unusual ones still accepted.
fn any_pair() -> impl Strategy<Value = (u32, u32)> {
    let input = prop_oneof![
        3 => proptest::sample::select(STANDARD_RATES.to_vec()),
        1 => (200u32..=9_600).prop_map(|r| r * 20),
    ];
    (input, prop_oneof![Just(16_000u32), Just(8_000)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_rate_is_refused_exactly_when_its_block_is_too_long(
        input in MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE
    ) {
        let (_, block) = ratio(input, 16_000);
        let too_long = f64::from(block) > MAX_BLOCK_S * f64::from(input);
        match StreamResampler::new(input, 16_000) {
            Ok(_) => prop_assert!(!too_long),
            Err(e) => {
                prop_assert!(too_long);
                prop_assert_eq!(e, AudioError::OddSampleRate { input, output: 16_000 });
            }
        }
    }

    /// Pushes of any sizes give exactly round(n * out / in) samples after a flush, the same
    /// samples whatever the pushes, and a click at its own time.
    #[test]
    fn counts_and_alignment_hold_for_any_pushes(
        (input, output) in any_pair(),
        n in 0usize..6_000,
        pieces in proptest::collection::vec(1usize..1_500, 1..8),
        click in 0usize..6_000,
    ) {
        let mut signal = vec![0i16; n];
        let (l, m) = ratio(input, output);
        let click = click / m as usize * m as usize;
        if click < n {
            signal[click] = 30_000;
        }
        let mut r = StreamResampler::new(input, output).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        for piece in pieces.iter().cycle() {
            if at >= n {
                break;
            }
            let end = (at + piece).min(n);
            r.push(&signal[at..end], &mut out);
            at = end;
        }
        r.flush(&mut out);
        let expected = (n as u64 * u64::from(output) + u64::from(input) / 2) / u64::from(input);
        prop_assert_eq!(out.len() as u64, expected);
        let whole = run(&mut StreamResampler::new(input, output).unwrap(), &signal, n.max(1));
        prop_assert_eq!(&out, &whole);
        let k = click * l as usize / m as usize;
        if click < n && k < out.len() {
            let peak = (0..out.len()).max_by_key(|&i| out[i].unsigned_abs()).unwrap();
            prop_assert_eq!(peak, k);
        }
    }

    /// Every kernel gives the scalar kernel's output, bit for bit.
    #[test]
    fn simd_equals_scalar(
        (input, output) in any_pair(),
        samples in proptest::collection::vec(
            prop_oneof![any::<i16>(), Just(i16::MIN), Just(i16::MAX)], 0..5_000),
        piece in 1usize..2_000,
    ) {
        let scalar = run(&mut StreamResampler::with_kernel(input, output, Kernel::scalar()).unwrap(), &samples, piece);
        for kernel in Kernel::available() {
            let mut r = StreamResampler::with_kernel(input, output, kernel).unwrap();
            prop_assert_eq!(&run(&mut r, &samples, piece), &scalar, "{:?}", kernel);
        }
    }
}

/// The quality table in docs/rust-core.md:
/// `cargo test -p baseten-core --release --lib quality_table -- --ignored --nocapture`.
#[test]
#[ignore = "prints the docs' table"]
fn quality_table() {
    println!("| input -> output | filter | passband | stopband | spurs | 1 kHz SNR | latency |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (input, output) in standard_pairs() {
        let f = filter_for(input, output);
        let (pass, stop, top) = bands(input, output);
        let passband = sweep(0.0, pass, 100.0)
            .into_iter()
            .map(|x| gain_and_spurs(&f, x).0.abs())
            .fold(0.0, f64::max);
        let stopband = if input > output {
            let worst = sweep(stop, top, 100.0)
                .into_iter()
                .map(|x| power_db(&f, x))
                .fold(f64::MIN, f64::max);
            format!("{:.1} dB", -worst)
        } else {
            "n/a".to_string()
        };
        let spurs = if f.phases > 1 {
            let to = if input > output { pass } else { top };
            let worst = sweep(0.0, to, 100.0)
                .into_iter()
                .map(|x| gain_and_spurs(&f, x).1)
                .fold(f64::MAX, f64::min);
            format!("{worst:.1} dB")
        } else {
            "none".to_string()
        };
        let (_, snr) = measure(input, output, 1000.0, 29_000.0, 0.5);
        let design =
            if designed::DESIGNED.iter().any(|d| (d.in_rate, d.out_rate) == (input, output)) {
                "designed"
            } else {
                "Kaiser"
            };
        println!(
            "| {} -> {} kHz | {design}, {} x {} taps | {passband:.3} dB | {stopband} | {spurs} | {snr:.1} dB | {:.2} ms |",
            f64::from(input) / 1000.0,
            output / 1000,
            f.phases,
            f.taps,
            f.lookahead() as f64 / f64::from(input) * 1000.0,
        );
    }
}

#[test]
fn odd_designs_are_dropped_once_unused_and_old() {
    // Rates no other test uses (multiples of 25, not of 20), still accepted.
    let held = StreamResampler::new(40_025, 16_000).unwrap();
    let unused = Arc::downgrade(&StreamResampler::new(40_075, 16_000).unwrap().filter);
    for k in 0..KEPT_ODD_DESIGNS as u32 {
        drop(StreamResampler::new(40_125 + 50 * k, 16_000).unwrap());
    }
    assert!(unused.upgrade().is_none(), "unused and older than the latest: dropped");
    assert!(Arc::ptr_eq(&held.filter, &filter_for(40_025, 16_000)), "in use: kept");
}
