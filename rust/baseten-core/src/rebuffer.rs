// SPDX-License-Identifier: Apache-2.0

//! Rebuffering of a byte stream into frames of one fixed size.
//!
//! Same contract as livekit-agents' `utils.audio.AudioByteStream` (non-progressive): pushes of
//! any size, byte-oriented (a sample split across two pushes is rejoined), and a flush that
//! emits the complete samples left over while keeping a trailing partial sample for the next
//! push. Unlike `AudioByteStream`, a flush can zero-pad the remainder to a whole frame, which
//! Baseten's server-side VAD needs.

use crate::AudioError;

/// The largest frame a [`Rebuffer`] accepts: 1 MiB (30 s of 16 kHz int16 is under 1 MiB).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Cuts a byte stream into frames of `frame_bytes`.
#[derive(Clone, Debug)]
pub struct Rebuffer {
    frame_bytes: usize,
    sample_bytes: usize,
    buf: Vec<u8>,
}

impl Rebuffer {
    /// A rebuffer emitting frames of `frame_bytes` bytes, made of samples of `sample_bytes`
    /// bytes (2 for mono int16, 4 for stereo int16, 1 for mu-law).
    pub fn new(frame_bytes: usize, sample_bytes: usize) -> Result<Self, AudioError> {
        if frame_bytes == 0
            || frame_bytes > MAX_FRAME_BYTES
            || sample_bytes == 0
            || !frame_bytes.is_multiple_of(sample_bytes)
        {
            return Err(AudioError::FrameSize { frame_bytes, sample_bytes });
        }
        Ok(Self { frame_bytes, sample_bytes, buf: Vec::with_capacity(frame_bytes) })
    }

    /// The size of every full frame, in bytes.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Bytes waiting for the next frame.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Adds `data` and appends every completed frame to `out`; returns how many.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut frames = 0;
        if !self.buf.is_empty() {
            let take = (self.frame_bytes - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < self.frame_bytes {
                return 0;
            }
            out.extend_from_slice(&self.buf);
            self.buf.clear();
            frames += 1;
        }
        // Whole frames go straight from the input to the output, without passing through `buf`.
        let whole = data.len() - data.len() % self.frame_bytes;
        out.extend_from_slice(&data[..whole]);
        self.buf.extend_from_slice(&data[whole..]);
        frames + whole / self.frame_bytes
    }

    /// Appends the complete samples still buffered as one last frame, zero-padded to
    /// `frame_bytes` when `pad` is set; returns how many frames (0 or 1) it appended.
    /// A trailing partial sample stays buffered for the next push.
    pub fn flush(&mut self, pad: bool, out: &mut Vec<u8>) -> usize {
        let complete = self.buf.len() - self.buf.len() % self.sample_bytes;
        if complete == 0 {
            return 0;
        }
        out.extend_from_slice(&self.buf[..complete]);
        if pad {
            out.resize(out.len() + self.frame_bytes - complete, 0);
        }
        self.buf.drain(..complete);
        1
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What AudioByteStream(samples_per_channel = frame / sample) returns, as a list of frames.
    fn oracle(pushes: &[Vec<u8>], frame: usize, sample: usize) -> Vec<Vec<u8>> {
        let all: Vec<u8> = pushes.concat();
        let whole = all.len() - all.len() % frame;
        let mut frames: Vec<Vec<u8>> = all[..whole].chunks(frame).map(<[u8]>::to_vec).collect();
        let rest = &all[whole..];
        let complete = rest.len() - rest.len() % sample;
        if complete > 0 {
            frames.push(rest[..complete].to_vec());
        }
        frames
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Rebuffer::new(0, 2).is_err());
        assert!(Rebuffer::new(1023, 2).is_err());
        assert!(Rebuffer::new(1024, 0).is_err());
        assert!(Rebuffer::new(1 << 40, 2).is_err());
    }

    #[test]
    fn rejoins_a_sample_split_across_pushes() {
        let mut r = Rebuffer::new(4, 2).unwrap();
        let mut out = Vec::new();
        assert_eq!(r.push(&[1, 2, 3], &mut out), 0);
        assert_eq!(r.push(&[4, 5], &mut out), 1);
        assert_eq!(out, [1, 2, 3, 4]);
        out.clear();
        assert_eq!(r.flush(false, &mut out), 0, "a lone byte is not a sample");
        assert_eq!(r.push(&[6], &mut out), 0);
        assert_eq!(r.flush(true, &mut out), 1);
        assert_eq!(out, [5, 6, 0, 0]);
    }

    proptest! {
        #[test]
        fn matches_audio_byte_stream(
            pushes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20),
            pad: bool,
        ) {
            let mut r = Rebuffer::new(1024, 2).unwrap();
            let mut out = Vec::new();
            let mut n = 0;
            for p in &pushes {
                n += r.push(p, &mut out);
            }
            n += r.flush(pad, &mut out);
            let expected = oracle(&pushes, 1024, 2);
            prop_assert_eq!(n, expected.len());
            let mut expected = expected.concat();
            if pad && expected.len() % 1024 != 0 {
                expected.resize(expected.len().div_ceil(1024) * 1024, 0);
            }
            prop_assert_eq!(out, expected);
        }
    }
}
