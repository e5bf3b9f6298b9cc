// SPDX-License-Identifier: Apache-2.0

//! Client-to-server WebSocket framing (RFC 6455, section 5.2) for data messages.
//!
//! The plugin writes audio frames straight to the socket's transport (one syscall, no Python
//! framing per frame): the send pipelines emit them already framed and masked, so that the
//! frames a stream keeps for resending are the very bytes it writes. Whisper's audio goes out
//! as binary messages, Qwen3-ASR's as text messages (JSON with base64 audio, see
//! [`crate::qwen3`]). Control messages still go through the Python WebSocket client.

use crate::AudioError;

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// A text message: the payload must be UTF-8.
    Text = 0x1,
    /// A binary message.
    Binary = 0x2,
}
/// FIN: the frame is a whole message.
const FIN: u8 = 0x80;
/// The MASK bit of the second header byte: every client-to-server frame is masked.
const MASKED: u8 = 0x80;
/// The masking key's size.
const MASK_LEN: usize = 4;

/// The size of the masked client frame that carries `payload_len` bytes: header, masking key,
/// payload.
pub fn client_frame_len(payload_len: usize) -> usize {
    header_len(payload_len) + MASK_LEN + payload_len
}

/// The header's size before the masking key: 2 bytes, plus the extended payload length.
fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// A fresh masking key. RFC 6455 wants one per frame that intermediaries cannot predict; the
/// audio carries nothing an attacker chose, so a fast PRNG seeded per thread is enough (the
/// Python client this replaces uses a Mersenne Twister).
pub fn random_mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// Gives the calling thread's masking-key generator a new seed, unique to this process. A
/// forked child inherits its parent's generator state, and would otherwise send the very
/// keys its parent and every sibling send; it calls this once, right after the fork.
pub fn reseed_masks() {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::process::id().hash(&mut hasher);
    std::time::Instant::now().hash(&mut hasher);
    fastrand::u64(..).hash(&mut hasher);
    fastrand::seed(hasher.finish());
}

/// Writes `payload` as one final, masked binary frame into `out`, which must hold exactly
/// [`client_frame_len`]`(payload.len())` bytes.
pub fn write_binary_frame(payload: &[u8], mask: [u8; 4], out: &mut [u8]) -> Result<(), AudioError> {
    let expected = client_frame_len(payload.len());
    if out.len() != expected {
        return Err(AudioError::OutputLength { expected, got: out.len() });
    }
    let body = write_header(payload.len(), Opcode::Binary, mask, out);
    out[body..].copy_from_slice(payload);
    mask_in_place(&mut out[body..], mask);
    Ok(())
}

/// Turns the payloads appended to `buf` after `start` (back to back, `payload_len` bytes each
/// but the last, which may be shorter) into one masked binary frame each, in place, with a
/// key from `mask` per frame. Returns how many frames there are (none when `payload_len` is 0
/// or nothing follows `start`).
pub fn frame_payloads_in_place(
    buf: &mut Vec<u8>,
    start: usize,
    payload_len: usize,
    mut mask: impl FnMut() -> [u8; 4],
) -> usize {
    if payload_len == 0 || start >= buf.len() {
        return 0;
    }
    let total = buf.len() - start;
    let frames = total.div_ceil(payload_len);
    let last_len = total - (frames - 1) * payload_len;
    let stride = client_frame_len(payload_len);
    buf.resize(start + (frames - 1) * stride + client_frame_len(last_len), 0);
    // Last frame first: each payload only moves right, onto bytes already moved out of the way.
    for i in (0..frames).rev() {
        let len = if i + 1 == frames { last_len } else { payload_len };
        let (from, to) = (start + i * payload_len, start + i * stride);
        let body = to + client_frame_len(len) - len;
        buf.copy_within(from..from + len, body);
        let key = mask();
        write_header(len, Opcode::Binary, key, &mut buf[to..body]);
        mask_in_place(&mut buf[body..body + len], key);
    }
    frames
}

/// Appends to `out` one final, masked `opcode` message whose payload is what `write_payload`
/// appends to the vector it is given (which must be `out` itself: the payload is written in
/// place, then moved right past the header).
pub fn append_masked_frame(
    out: &mut Vec<u8>,
    opcode: Opcode,
    mask: [u8; 4],
    write_payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    write_payload(out);
    let len = out.len() - start;
    let body = client_frame_len(len) - len;
    out.resize(start + body + len, 0);
    out.copy_within(start..start + len, start + body);
    write_header(len, opcode, mask, &mut out[start..start + body]);
    mask_in_place(&mut out[start + body..], mask);
}

/// Writes the header and masking key for a `payload_len` payload at the start of `out`;
/// returns where the payload goes.
fn write_header(payload_len: usize, opcode: Opcode, mask: [u8; 4], out: &mut [u8]) -> usize {
    out[0] = FIN | opcode as u8;
    let header = header_len(payload_len);
    match header {
        2 => out[1] = MASKED | payload_len as u8,
        4 => {
            out[1] = MASKED | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out[1] = MASKED | 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    out[header..header + MASK_LEN].copy_from_slice(&mask);
    header + MASK_LEN
}

/// XORs `body` with the repeated key (written in 4-byte steps, which the compiler vectorises).
fn mask_in_place(body: &mut [u8], mask: [u8; 4]) {
    let mut chunks = body.chunks_exact_mut(MASK_LEN);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a server does with a client frame: check the header, unmask the payload. Returns
    /// the payload and the frame's length.
    fn unmask(frame: &[u8]) -> (Vec<u8>, usize) {
        assert_eq!(frame[0], 0x82, "FIN + binary");
        assert_eq!(frame[1] & 0x80, 0x80, "masked");
        let (len, header) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = &frame[header..header + 4];
        let body = &frame[header + 4..header + 4 + len];
        (body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect(), header + 4 + len)
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
    fn text_messages_are_appended_in_place() {
        let mut out = b"kept".to_vec();
        append_masked_frame(&mut out, Opcode::Text, [0x37, 0xfa, 0x21, 0x3d], |o| {
            o.extend_from_slice(b"Hello")
        });
        // RFC 6455, section 5.7: a single-frame masked text message containing "Hello".
        let expected = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(&out[..4], b"kept");
        assert_eq!(&out[4..], &expected);
        let mut long = Vec::new();
        append_masked_frame(&mut long, Opcode::Binary, [1, 2, 3, 4], |o| o.resize(4300, 7));
        assert_eq!(long, frame(&[7; 4300], [1, 2, 3, 4]));
    }

    #[test]
    fn wrong_output_size_is_an_error() {
        let mut out = vec![0; 10];
        assert!(write_binary_frame(&[0; 1024], [0; 4], &mut out).is_err());
    }

    #[test]
    fn in_place_framing_equals_framing_each_payload() {
        let mut keys = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]].into_iter().rev();
        let payloads: Vec<u8> = (0..2100u32).map(|i| i as u8).collect();
        let mut buf = b"kept".to_vec();
        buf.extend_from_slice(&payloads);
        let n = frame_payloads_in_place(&mut buf, 4, 1024, || keys.next().unwrap());
        assert_eq!(n, 3);
        let mut expected = b"kept".to_vec();
        expected.extend(frame(&payloads[..1024], [1, 2, 3, 4]));
        expected.extend(frame(&payloads[1024..2048], [5, 6, 7, 8]));
        expected.extend(frame(&payloads[2048..], [9, 10, 11, 12]));
        assert_eq!(buf, expected, "keys are drawn last frame first");
        let mut empty = b"x".to_vec();
        assert_eq!(frame_payloads_in_place(&mut empty, 1, 1024, random_mask), 0);
        assert_eq!(empty, b"x");
    }

    #[test]
    fn reseeding_changes_the_keys_to_come() {
        fastrand::seed(7);
        let before: Vec<[u8; 4]> = (0..4).map(|_| random_mask()).collect();
        fastrand::seed(7);
        reseed_masks();
        let after: Vec<[u8; 4]> = (0..4).map(|_| random_mask()).collect();
        assert_ne!(before, after);
    }

    proptest! {
        #[test]
        fn unmasks_to_the_payload(
            payload in prop::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
        ) {
            let f = frame(&payload, mask);
            prop_assert_eq!(unmask(&f), (payload, f.len()));
        }

        #[test]
        fn in_place_frames_unmask_to_the_payloads(
            total in 0usize..5000,
            payload_len in prop_oneof![Just(1usize), Just(125), Just(126), Just(256), Just(1024)],
            start in 0usize..10,
        ) {
            let data: Vec<u8> = (0..start + total).map(|i| (i * 7) as u8).collect();
            let mut buf = data.clone();
            let n = frame_payloads_in_place(&mut buf, start, payload_len, random_mask);
            prop_assert_eq!(&buf[..start], &data[..start]);
            let mut at = start;
            let mut payloads = Vec::new();
            for _ in 0..n {
                let (payload, len) = unmask(&buf[at..]);
                prop_assert!(!payload.is_empty() && payload.len() <= payload_len);
                payloads.extend(payload);
                at += len;
            }
            prop_assert_eq!(at, buf.len());
            prop_assert_eq!(payloads, data[start..].to_vec());
        }
    }
}
