// SPDX-License-Identifier: Apache-2.0

//! mu-law companding of 16-bit PCM, in the two flavours a Baseten client meets.
//!
//! * [`MuLaw::G711`] is ITU-T G.711 mu-law exactly as CPython's `audioop.lin2ulaw(x, 2)` /
//!   `audioop.ulaw2lin(x, 2)` compute it (the bytes telephony carriers such as Twilio send).
//! * [`MuLaw::Continuous`] is the continuous companding curve of torchaudio's
//!   `MuLawEncoding(256)` / `MuLawDecoding(256)`, which is what Baseten's streaming Whisper server
//!   uses to decode `pcm_mulaw` audio. The two agree on negative samples and mirror each other on
//!   positive ones, so bytes of one flavour decoded as the other are garbled.

use std::sync::OnceLock;

use crate::pcm::{sample_count, samples_le};
use crate::AudioError;

/// Which mu-law curve to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MuLaw {
    /// G.711 mu-law, bit-exact with CPython's `audioop` (width 2).
    G711,
    /// torchaudio's continuous mu-law (mu = 255) on `sample / 32768`, as Baseten's Whisper
    /// server decodes `pcm_mulaw`.
    Continuous,
}

impl MuLaw {
    /// Encodes one sample.
    #[inline]
    pub fn encode_sample(self, x: i16) -> u8 {
        match self {
            MuLaw::G711 => g711_encode_table()[g711_index(x)],
            MuLaw::Continuous => continuous_encode_table()[usize::from(x as u16)],
        }
    }

    /// Decodes one byte.
    #[inline]
    pub fn decode_sample(self, b: u8) -> i16 {
        match self {
            MuLaw::G711 => G711_DECODE[usize::from(b)],
            MuLaw::Continuous => continuous_decode_table()[usize::from(b)],
        }
    }

    /// Encodes int16 samples into `out`, which must have the same length.
    ///
    /// # Panics
    /// If `out.len() != samples.len()` (a caller bug, not an input error).
    pub fn encode_into(self, samples: &[i16], out: &mut [u8]) {
        assert_eq!(samples.len(), out.len(), "mu-law output must match the input length");
        match self {
            MuLaw::G711 => {
                let table = g711_encode_table();
                for (o, &x) in out.iter_mut().zip(samples) {
                    *o = table[g711_index(x)];
                }
            }
            MuLaw::Continuous => {
                let table = continuous_encode_table();
                for (o, &x) in out.iter_mut().zip(samples) {
                    *o = table[usize::from(x as u16)];
                }
            }
        }
    }

    /// Encodes little-endian int16 bytes into `out` (half their length).
    ///
    /// Errors with [`AudioError::OddByteCount`] when `pcm` is not a whole number of samples,
    /// as `audioop.lin2ulaw` does, and [`AudioError::OutputLength`] when `out` is the wrong size.
    pub fn encode_s16le_into(self, pcm: &[u8], out: &mut [u8]) -> Result<(), AudioError> {
        let n = sample_count(pcm)?;
        if out.len() != n {
            return Err(AudioError::OutputLength { expected: n, got: out.len() });
        }
        match self {
            MuLaw::G711 => {
                let table = g711_encode_table();
                for (o, x) in out.iter_mut().zip(samples_le(pcm)) {
                    *o = table[g711_index(x)];
                }
            }
            MuLaw::Continuous => {
                let table = continuous_encode_table();
                for (o, x) in out.iter_mut().zip(samples_le(pcm)) {
                    *o = table[usize::from(x as u16)];
                }
            }
        }
        Ok(())
    }

    /// Decodes mu-law bytes into little-endian int16 bytes in `out` (twice their length).
    pub fn decode_to_s16le_into(self, ulaw: &[u8], out: &mut [u8]) -> Result<(), AudioError> {
        if out.len() != ulaw.len() * 2 {
            return Err(AudioError::OutputLength { expected: ulaw.len() * 2, got: out.len() });
        }
        let table: &[i16; 256] = match self {
            MuLaw::G711 => &G711_DECODE,
            MuLaw::Continuous => continuous_decode_table(),
        };
        for (o, &b) in out.chunks_exact_mut(2).zip(ulaw) {
            o.copy_from_slice(&table[usize::from(b)].to_le_bytes());
        }
        Ok(())
    }
}

/// G.711 depends only on the 14-bit value `x >> 2`, so a 16 KiB table holds every answer;
/// a lookup is about five times cheaper than the arithmetic.
fn g711_encode_table() -> &'static [u8; 16384] {
    static TABLE: OnceLock<Box<[u8; 16384]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0u8; 16384]);
        for (i, slot) in table.iter_mut().enumerate() {
            *slot = g711_encode(((i as i32 - 8192) << 2) as i16);
        }
        table
    })
}

#[inline]
fn g711_index(x: i16) -> usize {
    ((i32::from(x) >> 2) + 8192) as usize
}

/// G.711 encode in audioop's order of operations: shift to 14 bits *before* taking the sign.
/// The textbook 16-bit routine (sign first, clip, bias 0x84) differs on 381 negative inputs.
#[inline]
fn g711_encode(x: i16) -> u8 {
    let v = i32::from(x) >> 2;
    let (mag, mask) = if v < 0 { (-v, 0x7F_u8) } else { (v, 0xFF_u8) };
    let mag = (mag + 33) as u32; // BIAS >> 2; audioop's CLIP can never fire in 14 bits.
    let seg = 32 - (mag >> 6).leading_zeros(); // first i with mag <= 0x3F << i
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mantissa = (mag >> (seg + 1)) & 0x0F;
    ((seg << 4) as u8 | mantissa as u8) ^ mask
}

const fn g711_decode(b: u8) -> i16 {
    let u = !b;
    let mut t = (((u & 0x0F) as i16) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

const G711_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = g711_decode(b as u8);
        b += 1;
    }
    table
};

/// torchaudio computes in float32; so do we, in the same order, so that bytes agree.
const MU: f32 = 255.0;

fn continuous_encode_table() -> &'static [u8; 65536] {
    static TABLE: OnceLock<Box<[u8; 65536]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0u8; 65536]);
        let log1p_mu = MU.ln_1p();
        for (i, slot) in table.iter_mut().enumerate() {
            let x = f32::from(i as u16 as i16) / 32768.0;
            let y = x.signum() * (MU * x.abs()).ln_1p() / log1p_mu;
            let y = if x == 0.0 { 0.0 } else { y };
            // `as u8` truncates toward zero like torch's `.to(int64)`; the value is in [0.5, 255.5).
            *slot = ((y + 1.0) / 2.0 * MU + 0.5).min(255.0) as u8;
        }
        table
    })
}

fn continuous_decode_table() -> &'static [i16; 256] {
    static TABLE: OnceLock<[i16; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0i16; 256];
        let log1p_mu = MU.ln_1p();
        for (b, slot) in table.iter_mut().enumerate() {
            let y = b as f32 / MU * 2.0 - 1.0;
            let x = y.signum() * ((y.abs() * log1p_mu).exp() - 1.0) / MU;
            *slot = (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        table
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn all_int16_le() -> Vec<u8> {
        (i16::MIN..=i16::MAX).flat_map(i16::to_le_bytes).collect()
    }

    #[test]
    fn g711_encode_matches_audioop_on_all_inputs() {
        let pcm = all_int16_le();
        let mut out = vec![0u8; 65536];
        MuLaw::G711.encode_s16le_into(&pcm, &mut out).unwrap();
        assert_eq!(
            hex(&Sha256::digest(&out)),
            "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
        );
    }

    #[test]
    fn g711_decode_matches_audioop_on_all_bytes() {
        let ulaw: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 512];
        MuLaw::G711.decode_to_s16le_into(&ulaw, &mut out).unwrap();
        assert_eq!(
            hex(&Sha256::digest(&out)),
            "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
        );
    }

    #[test]
    fn g711_table_matches_the_arithmetic_on_all_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(MuLaw::G711.encode_sample(x), g711_encode(x), "{x}");
        }
    }

    #[test]
    fn g711_vectors() {
        let enc = [(0, 0xFF), (1, 0xFF), (-1, 0x7E), (-3, 0x7E), (1000, 0xCE), (-1000, 0x4E)];
        for (x, b) in enc.into_iter().chain([(32767, 0x80), (-32768, 0x00)]) {
            assert_eq!(MuLaw::G711.encode_sample(x), b, "encode {x}");
        }
        for (b, x) in [(0x00, -32124), (0x80, 32124), (0x7F, 0), (0xFF, 0)] {
            assert_eq!(MuLaw::G711.decode_sample(b), x, "decode {b:#x}");
        }
    }

    #[test]
    fn g711_round_trips_every_byte_but_negative_zero() {
        for b in 0..=255u8 {
            let back = MuLaw::G711.encode_sample(MuLaw::G711.decode_sample(b));
            assert_eq!(back, if b == 0x7F { 0xFF } else { b });
        }
    }

    #[test]
    fn continuous_vectors_from_the_spec() {
        let vectors = [
            (0, 0x80),
            (-1, 0x7F),
            (100, 0x8D),
            (-100, 0x72),
            (1000, 0xB1),
            (-1000, 0x4E),
            (8159, 0xDF),
            (-8159, 0x20),
            (32767, 0xFF),
            (-32768, 0x00),
        ];
        for (x, b) in vectors {
            assert_eq!(MuLaw::Continuous.encode_sample(x), b, "encode {x}");
        }
    }

    #[test]
    fn continuous_decode_endpoints() {
        assert_eq!(MuLaw::Continuous.decode_sample(0), -32768);
        assert_eq!(MuLaw::Continuous.decode_sample(255), 32767);
        assert!(MuLaw::Continuous.decode_sample(128).abs() < 20);
    }

    #[test]
    fn continuous_round_trips_every_byte() {
        for b in 0..=255u8 {
            let back = MuLaw::Continuous.encode_sample(MuLaw::Continuous.decode_sample(b));
            assert_eq!(back, b, "byte {b}");
        }
    }

    #[test]
    fn odd_byte_count_is_an_error() {
        let mut out = [0u8; 1];
        assert_eq!(
            MuLaw::G711.encode_s16le_into(&[1, 2, 3], &mut out),
            Err(AudioError::OddByteCount(3))
        );
    }

    #[test]
    fn wrong_output_length_is_an_error() {
        let mut out = [0u8; 3];
        assert!(matches!(
            MuLaw::G711.decode_to_s16le_into(&[1], &mut out),
            Err(AudioError::OutputLength { expected: 2, got: 3 })
        ));
    }

    proptest::proptest! {
        #[test]
        fn encode_is_monotonic(a: i16, b: i16) {
            // Both curves are monotonic in the sample value (G.711 with its bytes un-inverted).
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let key = |b: u8| if b & 0x80 != 0 { 0x17F - u16::from(b) } else { u16::from(b) };
            proptest::prop_assert!(key(MuLaw::G711.encode_sample(lo))
                <= key(MuLaw::G711.encode_sample(hi)));
            proptest::prop_assert!(MuLaw::Continuous.encode_sample(lo)
                <= MuLaw::Continuous.encode_sample(hi));
        }

        #[test]
        fn decode_error_is_bounded(x: i16) {
            // Companding error grows with amplitude: about 1/32 of |x| plus a small floor.
            for law in [MuLaw::G711, MuLaw::Continuous] {
                let y = law.decode_sample(law.encode_sample(x));
                let err = (i32::from(x) - i32::from(y)).abs();
                proptest::prop_assert!(err <= i32::from(x).abs() / 16 + 64, "{law:?} {x} -> {y}");
            }
        }
    }
}
