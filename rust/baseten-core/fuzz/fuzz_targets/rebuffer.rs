// SPDX-License-Identifier: Apache-2.0

//! `Rebuffer` with an arbitrary frame and sample size and arbitrary pushes, flushes and clears,
//! against a model that keeps the pending bytes in a plain `Vec`: pushes emit every whole frame,
//! a flush emits the whole samples left (zero-padded to a frame when asked) and keeps a partial
//! sample, a clear drops everything. So the frames, concatenated, are the input plus padding.

#![no_main]

use arbitrary::Arbitrary;
use baseten_core::rebuffer::{Rebuffer, MAX_FRAME_BYTES};
use baseten_core::AudioError;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Size {
    /// Small sizes, where frames and samples split across pushes in every way.
    Small(u8),
    Any(usize),
}

impl Size {
    fn bytes(&self) -> usize {
        match *self {
            Size::Small(n) => usize::from(n % 64),
            Size::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Push(Vec<u8>),
    Flush { pad: bool },
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    frame: Size,
    sample: Size,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let (frame_bytes, sample_bytes) = (input.frame.bytes(), input.sample.bytes());
    let valid = frame_bytes > 0
        && frame_bytes <= MAX_FRAME_BYTES
        && sample_bytes > 0
        && frame_bytes % sample_bytes == 0;
    let mut rebuffer = match Rebuffer::new(frame_bytes, sample_bytes) {
        Ok(r) => r,
        Err(e) => {
            assert!(!valid, "refused {frame_bytes}-byte frames of {sample_bytes}-byte samples");
            assert_eq!(e, AudioError::FrameSize { frame_bytes, sample_bytes });
            return;
        }
    };
    assert!(valid, "accepted {frame_bytes}-byte frames of {sample_bytes}-byte samples");
    assert_eq!(rebuffer.frame_bytes(), frame_bytes);

    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut expected = Vec::new();
    for op in &input.ops {
        let before = out.len();
        match op {
            Op::Push(data) => {
                let frames = rebuffer.push(data, &mut out);
                pending.extend_from_slice(data);
                let whole = pending.len() - pending.len() % frame_bytes;
                assert_eq!(frames, whole / frame_bytes, "push returned the wrong frame count");
                expected.extend(pending.drain(..whole));
            }
            Op::Flush { pad } => {
                let frames = rebuffer.flush(*pad, &mut out);
                let complete = pending.len() - pending.len() % sample_bytes;
                assert_eq!(frames, usize::from(complete > 0), "flush returned the wrong count");
                expected.extend(pending.drain(..complete));
                if *pad && complete > 0 {
                    expected.resize(expected.len() + frame_bytes - complete, 0);
                }
                assert!(pending.len() < sample_bytes, "a flush must leave only a partial sample");
            }
            Op::Clear => {
                rebuffer.clear();
                pending.clear();
            }
        }
        assert_eq!(out.len(), expected.len(), "output length after {op:?}");
        assert!(out[before..] == expected[before..], "output differs after {op:?}");
        assert_eq!(rebuffer.buffered_bytes(), pending.len(), "buffered bytes after {op:?}");
        assert!(rebuffer.buffered_bytes() < frame_bytes, "a whole frame left buffered");
    }
});
