// SPDX-License-Identifier: Apache-2.0

//! mu-law on arbitrary bytes, read both as int16 PCM and as mu-law, in both flavours.
//!
//! * The buffer functions agree with the per-sample ones and type their length errors.
//! * decode(encode(x)) is one of the two quantisation levels around x (or the outermost level
//!   past the ends): the error is within one step.
//! * encode(decode(b)) == b, except G.711's 0x7F (negative zero), which comes back as 0xFF
//!   (positive zero), as in `audioop`.
//! * Encoding is monotonic (G.711 with its inverted bits undone).

#![no_main]

use baseten_core::mulaw::MuLaw;
use baseten_core::AudioError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for law in [MuLaw::G711, MuLaw::Continuous] {
        check_buffers(law, data);
        let levels = levels(law);
        let samples: Vec<i16> =
            data.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
        for &x in &samples {
            check_step(law, &levels, x);
        }
        for pair in samples.windows(2) {
            let (lo, hi) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            assert!(
                order(law, law.encode_sample(lo)) <= order(law, law.encode_sample(hi)),
                "{law:?}: encode is not monotonic at {lo}, {hi}"
            );
        }
        for &b in data {
            let back = law.encode_sample(law.decode_sample(b));
            let expected = if law == MuLaw::G711 && b == 0x7F { 0xFF } else { b };
            assert_eq!(back, expected, "{law:?}: byte {b:#04x} does not round-trip");
        }
    }
});

/// The buffer encoders and decoder against the per-sample functions, and their errors.
fn check_buffers(law: MuLaw, data: &[u8]) {
    let n = data.len() / 2;
    let mut encoded = vec![0u8; n];
    match law.encode_s16le_into(data, &mut encoded) {
        Ok(()) => assert_eq!(data.len() % 2, 0, "{law:?}: encoded an odd byte count"),
        Err(e) => {
            assert_eq!(e, AudioError::OddByteCount(data.len()));
            // A whole number of samples must go through.
            let whole = &data[..n * 2];
            assert_eq!(law.encode_s16le_into(whole, &mut encoded), Ok(()));
        }
    }
    let samples: Vec<i16> =
        data.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
    let one_by_one: Vec<u8> = samples.iter().map(|&x| law.encode_sample(x)).collect();
    assert_eq!(encoded, one_by_one, "{law:?}: encode_s16le_into differs from encode_sample");
    let mut via_slice = vec![0u8; n];
    law.encode_into(&samples, &mut via_slice);
    assert_eq!(via_slice, one_by_one, "{law:?}: encode_into differs from encode_sample");
    let mut short = vec![0u8; n + 1];
    if data.len() % 2 == 0 {
        assert_eq!(
            law.encode_s16le_into(data, &mut short),
            Err(AudioError::OutputLength { expected: n, got: n + 1 })
        );
    }

    let mut decoded = vec![0u8; data.len() * 2];
    assert_eq!(law.decode_to_s16le_into(data, &mut decoded), Ok(()));
    let one_by_one: Vec<u8> =
        data.iter().flat_map(|&b| law.decode_sample(b).to_le_bytes()).collect();
    assert_eq!(decoded, one_by_one, "{law:?}: decode_to_s16le_into differs from decode_sample");
    decoded.push(0);
    assert_eq!(
        law.decode_to_s16le_into(data, &mut decoded),
        Err(AudioError::OutputLength { expected: data.len() * 2, got: data.len() * 2 + 1 })
    );
}

/// Every value the decoder can produce, ascending.
fn levels(law: MuLaw) -> Vec<i16> {
    let mut levels: Vec<i16> = (0..=255u8).map(|b| law.decode_sample(b)).collect();
    levels.sort_unstable();
    levels.dedup();
    levels
}

/// decode(encode(x)) is the nearest level at or below x, or the nearest at or above it.
fn check_step(law: MuLaw, levels: &[i16], x: i16) {
    let y = law.decode_sample(law.encode_sample(x));
    let below = levels.iter().rev().find(|&&l| l <= x).copied();
    let above = levels.iter().find(|&&l| l >= x).copied();
    assert!(
        Some(y) == below || Some(y) == above,
        "{law:?}: {x} decodes back as {y}, not a level next to it ({below:?}, {above:?})"
    );
}

/// A byte's position on the curve: continuous bytes rise with the sample; G.711 bytes are
/// inverted, sign bit set for positive samples.
fn order(law: MuLaw, b: u8) -> u16 {
    match law {
        MuLaw::Continuous => u16::from(b),
        MuLaw::G711 if b & 0x80 != 0 => 0x17F - u16::from(b),
        MuLaw::G711 => u16::from(b),
    }
}
