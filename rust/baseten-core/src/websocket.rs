// SPDX-License-Identifier: Apache-2.0

//! Client-to-server WebSocket framing (RFC 6455, section 5.2) for binary messages.
//!
//! The plugin writes audio frames straight to the socket's transport (one syscall, no Python
//! framing per frame); this builds the bytes it writes. Text and control messages still go
//! through the Python WebSocket client.

use crate::AudioError;

/// The opcode of a binary data frame.
const OPCODE_BINARY: u8 = 0x2;
/// FIN: the frame is a whole message.
const FIN: u8 = 0x80;
/// The MASK bit of the second header byte: every client-to-server frame is masked.
const MASKED: u8 = 0x80;

/// The size of the masked client frame that carries `payload_len` bytes: header, masking key,
/// payload.
pub fn client_frame_len(payload_len: usize) -> usize {
    let length_bytes = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + length_bytes + 4 + payload_len
}

/// A fresh masking key. RFC 6455 wants one per frame that intermediaries cannot predict; the
/// audio carries nothing an attacker chose, so a fast PRNG seeded per thread is enough (the
/// Python client this replaces uses a Mersenne Twister).
pub fn random_mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// Writes `payload` as one final, masked binary frame into `out`, which must hold exactly
/// [`client_frame_len`]`(payload.len())` bytes.
pub fn write_binary_frame(payload: &[u8], mask: [u8; 4], out: &mut [u8]) -> Result<(), AudioError> {
    let expected = client_frame_len(payload.len());
    if out.len() != expected {
        return Err(AudioError::OutputLength { expected, got: out.len() });
    }
    out[0] = FIN | OPCODE_BINARY;
    let header = match payload.len() {
        n @ 0..=125 => {
            out[1] = MASKED | n as u8;
            2
        }
        n @ 126..=0xFFFF => {
            out[1] = MASKED | 126;
            out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            out[1] = MASKED | 127;
            out[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    out[header..header + 4].copy_from_slice(&mask);
    let body = &mut out[header + 4..];
    for (i, (o, p)) in body.iter_mut().zip(payload).enumerate() {
        *o = p ^ mask[i & 3];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a server does with a client frame: check the header, unmask the payload.
    fn unmask(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0], 0x82, "FIN + binary");
        assert_eq!(frame[1] & 0x80, 0x80, "masked");
        let (len, header) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = &frame[header..header + 4];
        let body = &frame[header + 4..];
        assert_eq!(body.len(), len);
        body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect()
    }

    fn frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![0; client_frame_len(payload.len())];
        write_binary_frame(payload, mask, &mut out).unwrap();
        out
    }

    #[test]
    fn rfc_6455_example_masked_hello() {
        // Section 5.7: a masked "Hello" (as text there; the payload bytes are the same).
        let f = frame(b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&f[1..], &[0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn audio_frame_uses_the_16_bit_length() {
        let f = frame(&[7; 1024], [1, 2, 3, 4]);
        assert_eq!(f.len(), 4 + 4 + 1024);
        assert_eq!(&f[..4], &[0x82, 0x80 | 126, 0x04, 0x00]);
    }

    #[test]
    fn wrong_output_size_is_an_error() {
        let mut out = vec![0; 10];
        assert!(write_binary_frame(&[0; 1024], [0; 4], &mut out).is_err());
    }

    proptest! {
        #[test]
        fn unmasks_to_the_payload(
            payload in prop::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
        ) {
            let f = frame(&payload, mask);
            prop_assert_eq!(unmask(&f), payload);
        }
    }
}
