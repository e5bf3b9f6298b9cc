// SPDX-License-Identifier: Apache-2.0

//! The per-stream send path: user audio in, Baseten wire frames out.
//!
//! int16 little-endian PCM at any rate and channel count, in pushes of any size
//! -> mono (mean of the channels) -> the wire rate (16 kHz for s16le, 8 kHz for mu-law)
//! -> frames of exactly 512 samples at 16 kHz (1024 bytes) or 256 samples at 8 kHz (256 bytes)
//! -> encoded. Baseten's server feeds every binary message to Silero VAD as one chunk, which
//! raises on any other size, so [`SendPipeline::flush`] zero-pads the last frame by default.
//! -> optionally framed as masked client WebSocket messages ([`Framing::WebSocket`]), ready
//! for the socket.

use crate::mulaw::MuLaw;
use crate::pcm::{downmix_le, extend_le, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use crate::rebuffer::{self, Rebuffer};
use crate::resample::StreamResampler;
use crate::websocket;
use crate::AudioError;

/// How audio is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireEncoding {
    /// Little-endian int16 at 16 kHz (Baseten's `pcm_s16le`).
    PcmS16le,
    /// mu-law bytes at 8 kHz (Baseten's `pcm_mulaw`), in the given flavour.
    PcmMulaw(MuLaw),
}

impl WireEncoding {
    /// The sample rate the server assumes for this encoding, in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            WireEncoding::PcmS16le => 16_000,
            WireEncoding::PcmMulaw(_) => 8_000,
        }
    }

    /// Samples per wire frame: 32 ms, i.e. 512 samples once the server is at 16 kHz.
    pub fn frame_samples(self) -> usize {
        match self {
            WireEncoding::PcmS16le => 512,
            WireEncoding::PcmMulaw(_) => 256,
        }
    }

    /// Bytes per wire frame.
    pub fn frame_bytes(self) -> usize {
        self.frame_samples() * self.sample_bytes()
    }

    /// Bytes per encoded sample.
    pub fn sample_bytes(self) -> usize {
        match self {
            WireEncoding::PcmS16le => 2,
            WireEncoding::PcmMulaw(_) => 1,
        }
    }
}

/// What each emitted frame is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Framing {
    /// The encoded audio alone.
    #[default]
    Raw,
    /// The encoded audio as one masked client-to-server binary WebSocket message (RFC 6455),
    /// with a fresh masking key each.
    WebSocket,
}

/// One stream's send path. See the module docs.
#[derive(Debug)]
pub struct SendPipeline {
    input_rate: u32,
    channels: usize,
    encoding: WireEncoding,
    /// Wire-rate samples per frame.
    frame_samples: usize,
    framing: Framing,
    path: Path,
}

#[derive(Debug)]
enum Path {
    /// Mono s16le input already at 16 kHz: the bytes only need cutting into frames.
    Rebuffer(Rebuffer),
    /// Anything else goes through samples.
    Convert {
        /// The start of an input sample frame (all channels) split across pushes.
        carry: Vec<u8>,
        /// Boxed: most streams (16 kHz mono) never have one.
        resampler: Option<Box<StreamResampler>>,
        /// Wire-rate samples not yet making a whole frame.
        pending: Vec<i16>,
    },
}

impl SendPipeline {
    /// A pipeline for input at `input_rate` Hz with `channels` interleaved channels, emitting
    /// the encoding's frames of [`WireEncoding::frame_samples`].
    pub fn new(input_rate: u32, channels: u32, encoding: WireEncoding) -> Result<Self, AudioError> {
        Self::with_frame_samples(input_rate, channels, encoding, encoding.frame_samples())
    }

    /// A pipeline like [`Self::new`]'s whose frames hold `frame_samples` wire-rate samples
    /// (other protocols cut the same audio differently: Qwen3-ASR takes 100 ms chunks).
    pub fn with_frame_samples(
        input_rate: u32,
        channels: u32,
        encoding: WireEncoding,
        frame_samples: usize,
    ) -> Result<Self, AudioError> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&input_rate) {
            return Err(AudioError::SampleRate(input_rate));
        }
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(AudioError::Channels(channels));
        }
        let sample_bytes = encoding.sample_bytes();
        let frame_bytes = frame_samples.saturating_mul(sample_bytes);
        if frame_samples == 0 || frame_bytes > rebuffer::MAX_FRAME_BYTES {
            return Err(AudioError::FrameSize { frame_bytes, sample_bytes });
        }
        let wire_rate = encoding.sample_rate();
        let path = if channels == 1 && input_rate == wire_rate && encoding == WireEncoding::PcmS16le
        {
            Path::Rebuffer(Rebuffer::new(frame_bytes, 2)?)
        } else {
            Path::Convert {
                carry: Vec::new(),
                resampler: if input_rate == wire_rate {
                    None
                } else {
                    Some(Box::new(StreamResampler::new(input_rate, wire_rate)?))
                },
                pending: Vec::with_capacity(frame_samples * 2),
            }
        };
        let channels = channels as usize;
        Ok(Self { input_rate, channels, encoding, frame_samples, framing: Framing::Raw, path })
    }

    /// The same pipeline, emitting frames as `framing` says.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// How frames are emitted.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The size of every emitted frame but an unpadded last one, in bytes.
    pub fn frame_len(&self) -> usize {
        match self.framing {
            Framing::Raw => self.frame_bytes(),
            Framing::WebSocket => websocket::client_frame_len(self.frame_bytes()),
        }
    }

    /// The input sample rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// The number of input channels.
    pub fn channels(&self) -> u32 {
        self.channels as u32
    }

    /// The wire encoding.
    pub fn encoding(&self) -> WireEncoding {
        self.encoding
    }

    /// Wire-rate samples per frame.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Encoded bytes per frame (before any WebSocket framing).
    pub fn frame_bytes(&self) -> usize {
        self.frame_samples * self.encoding.sample_bytes()
    }

    /// The latency the resampler adds, in seconds (0 when none is needed): its filter's
    /// look-ahead.
    pub fn added_latency_s(&self) -> f64 {
        match &self.path {
            Path::Convert { resampler: Some(r), .. } => r.added_latency_s(),
            _ => 0.0,
        }
    }

    /// Wire-rate samples buffered towards the next frame.
    pub fn pending_samples(&self) -> usize {
        match &self.path {
            Path::Rebuffer(r) => r.buffered_bytes() / 2,
            Path::Convert { pending, .. } => pending.len(),
        }
    }

    /// Checks that input of `sample_rate` Hz and `channels` channels is what this pipeline
    /// converts: a stream's format cannot change midway.
    pub fn check_format(&self, sample_rate: u32, channels: u32) -> Result<(), AudioError> {
        let expected = (self.input_rate(), self.channels());
        if (sample_rate, channels) == expected {
            Ok(())
        } else {
            Err(AudioError::FormatChanged { expected, got: (sample_rate, channels) })
        }
    }

    /// Adds input bytes; appends every completed wire frame to `out` and returns how many.
    pub fn push(&mut self, pcm: &[u8], out: &mut Vec<u8>) -> Result<usize, AudioError> {
        let start = out.len();
        let frames = self.push_payloads(pcm, out)?;
        Ok(self.frame(out, start, frames))
    }

    /// Ends a stretch of audio: the resampler's tail and the samples left over go out as one
    /// last frame, zero-padded to a whole frame when `pad` is set. Returns the frames appended.
    /// A partial input sample stays buffered for the next push, as in `AudioByteStream`.
    pub fn flush(&mut self, pad: bool, out: &mut Vec<u8>) -> Result<usize, AudioError> {
        let start = out.len();
        let frames = self.flush_payloads(pad, out)?;
        Ok(self.frame(out, start, frames))
    }

    /// Frames the `frames` payloads appended after `start`, if this pipeline frames them.
    fn frame(&self, out: &mut Vec<u8>, start: usize, frames: usize) -> usize {
        match self.framing {
            Framing::Raw => frames,
            Framing::WebSocket => websocket::frame_payloads_in_place(
                out,
                start,
                self.frame_bytes(),
                websocket::random_mask,
            ),
        }
    }

    fn push_payloads(&mut self, mut pcm: &[u8], out: &mut Vec<u8>) -> Result<usize, AudioError> {
        let stride = self.channels * 2;
        let (carry, resampler, pending) = match &mut self.path {
            Path::Rebuffer(r) => return Ok(r.push(pcm, out)),
            Path::Convert { carry, resampler, pending } => (carry, resampler, pending),
        };
        if !carry.is_empty() {
            let take = (stride - carry.len()).min(pcm.len());
            carry.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if carry.len() == stride {
                convert(carry, self.channels, resampler.as_deref_mut(), pending);
                carry.clear();
            }
        }
        let whole = pcm.len() - pcm.len() % stride;
        convert(&pcm[..whole], self.channels, resampler.as_deref_mut(), pending);
        carry.extend_from_slice(&pcm[whole..]);
        Ok(emit_frames(pending, self.frame_samples, self.encoding, out))
    }

    fn flush_payloads(&mut self, pad: bool, out: &mut Vec<u8>) -> Result<usize, AudioError> {
        let (resampler, pending) = match &mut self.path {
            Path::Rebuffer(r) => return Ok(r.flush(pad, out)),
            Path::Convert { resampler, pending, .. } => (resampler, pending),
        };
        if let Some(r) = resampler.as_mut() {
            r.flush(pending);
        }
        let mut frames = emit_frames(pending, self.frame_samples, self.encoding, out);
        if !pending.is_empty() {
            if pad {
                pending.resize(self.frame_samples, 0);
            }
            encode(pending, self.encoding, out);
            pending.clear();
            frames += 1;
        }
        Ok(frames)
    }
}

/// Converts whole input sample frames to mono wire-rate samples appended to `pending`.
fn convert(
    pcm: &[u8],
    channels: usize,
    resampler: Option<&mut StreamResampler>,
    pending: &mut Vec<i16>,
) {
    let frames = pcm.len() / (channels * 2);
    match resampler {
        None => {
            let start = pending.len();
            pending.resize(start + frames, 0);
            downmix_le(pcm, channels, &mut pending[start..]);
        }
        // Decoded (and downmixed) straight into the resampler's buffer.
        Some(r) => r.push_with(frames, |mono| downmix_le(pcm, channels, mono), pending),
    }
}

/// Encodes every whole frame in `pending` onto `out`, keeping the rest.
fn emit_frames(
    pending: &mut Vec<i16>,
    frame: usize,
    encoding: WireEncoding,
    out: &mut Vec<u8>,
) -> usize {
    let frames = pending.len() / frame;
    if frames > 0 {
        encode(&pending[..frames * frame], encoding, out);
        pending.drain(..frames * frame);
    }
    frames
}

/// Encodes `samples` onto the end of `out`.
fn encode(samples: &[i16], encoding: WireEncoding, out: &mut Vec<u8>) {
    match encoding {
        WireEncoding::PcmS16le => extend_le(out, samples),
        WireEncoding::PcmMulaw(law) => {
            let start = out.len();
            out.resize(start + samples.len(), 0);
            law.encode_into(samples, &mut out[start..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn refuses_bad_configuration() {
        assert_eq!(
            SendPipeline::new(100, 1, WireEncoding::PcmS16le).unwrap_err(),
            AudioError::SampleRate(100)
        );
        assert_eq!(
            SendPipeline::new(16_000, 0, WireEncoding::PcmS16le).unwrap_err(),
            AudioError::Channels(0)
        );
    }

    #[test]
    fn refuses_a_change_of_format() {
        let p = SendPipeline::new(48_000, 2, WireEncoding::PcmS16le).unwrap();
        assert_eq!(p.check_format(48_000, 2), Ok(()));
        let err = p.check_format(16_000, 2).unwrap_err();
        assert_eq!(err, AudioError::FormatChanged { expected: (48_000, 2), got: (16_000, 2) });
        assert!(err.to_string().ends_with("48000 Hz x 2 then 16000 Hz x 2"), "{err}");
        assert!(p.check_format(48_000, 1).is_err());
    }

    #[test]
    fn flush_pads_the_last_frame() {
        let mut p = SendPipeline::new(16_000, 1, WireEncoding::PcmS16le).unwrap();
        let mut out = Vec::new();
        assert_eq!(p.push(&le(&[7; 600]), &mut out).unwrap(), 1);
        assert_eq!(p.flush(true, &mut out).unwrap(), 1);
        assert_eq!(out.len(), 2048);
        assert_eq!(&out[1024..1024 + 176], le(&[7; 88]).as_slice());
        assert!(out[1024 + 176..].iter().all(|&b| b == 0));
        out.clear();
        assert_eq!(p.flush(true, &mut out).unwrap(), 0, "nothing left to flush");
    }

    #[test]
    fn mulaw_frames_are_256_bytes_at_8_khz() {
        let mut p = SendPipeline::new(8_000, 1, WireEncoding::PcmMulaw(MuLaw::G711)).unwrap();
        let mut out = Vec::new();
        let input: Vec<i16> = (0..300).map(|i| (i * 37) as i16).collect();
        assert_eq!(p.push(&le(&input), &mut out).unwrap(), 1);
        assert_eq!(p.flush(true, &mut out).unwrap(), 1);
        assert_eq!(out.len(), 512);
        let expected: Vec<u8> = input.iter().map(|&x| MuLaw::G711.encode_sample(x)).collect();
        assert_eq!(&out[..300], expected.as_slice());
        assert!(out[300..].iter().all(|&b| b == 0xFF), "padding is encoded silence");
    }

    #[test]
    fn downmixes_stereo_to_the_mean() {
        let mut p = SendPipeline::new(16_000, 2, WireEncoding::PcmS16le).unwrap();
        let mut out = Vec::new();
        let stereo: Vec<i16> = (0..512).flat_map(|i| [i as i16 * 2, 100]).collect();
        p.push(&le(&stereo), &mut out).unwrap();
        let mono: Vec<i16> = (0..512).map(|i| i as i16 + 50).collect();
        assert_eq!(out, le(&mono));
    }

    #[test]
    fn resamples_48k_stereo_to_whole_16k_frames() {
        let mut p = SendPipeline::new(48_000, 2, WireEncoding::PcmS16le).unwrap();
        let mut out = Vec::new();
        let frame = le(&[1000; 960 * 2]); // 20 ms of stereo
        let mut frames = 0;
        for _ in 0..50 {
            frames += p.push(&frame, &mut out).unwrap();
        }
        frames += p.flush(true, &mut out).unwrap();
        // One second in, 16000 samples out: 31 whole frames plus one padded.
        assert_eq!(frames, 32);
        assert_eq!(out.len(), 32 * 1024);
        let samples: Vec<i16> =
            out.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
        // A constant stays constant in the middle, away from the edge transients.
        assert!(samples[1000..15000].iter().all(|&s| (s - 1000).abs() <= 1));
    }

    #[test]
    fn websocket_framing_wraps_each_frame() {
        let pcm = le(&(0..1300).map(|i| i as i16).collect::<Vec<_>>());
        let mut raw = SendPipeline::new(16_000, 1, WireEncoding::PcmS16le).unwrap();
        let mut framed = SendPipeline::new(16_000, 1, WireEncoding::PcmS16le)
            .unwrap()
            .with_framing(Framing::WebSocket);
        assert_eq!((raw.frame_len(), framed.frame_len()), (1024, 1032));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(raw.push(&pcm, &mut a).unwrap(), framed.push(&pcm, &mut b).unwrap());
        assert_eq!(raw.flush(true, &mut a).unwrap(), framed.flush(true, &mut b).unwrap());
        assert_eq!((a.len(), b.len()), (3 * 1024, 3 * 1032));
        for (payload, frame) in a.chunks(1024).zip(b.chunks(1032)) {
            assert_eq!(&frame[..4], &[0x82, 0x80 | 126, 0x04, 0x00]);
            let mask = &frame[4..8];
            let body: Vec<u8> =
                frame[8..].iter().enumerate().map(|(i, x)| x ^ mask[i % 4]).collect();
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn frames_of_any_size() {
        let chunk = |rate| SendPipeline::with_frame_samples(rate, 1, WireEncoding::PcmS16le, 1600);
        for rate in [16_000, 48_000] {
            let mut p = chunk(rate).unwrap();
            assert_eq!((p.frame_samples(), p.frame_bytes(), p.frame_len()), (1600, 3200, 3200));
            let mut out = Vec::new();
            let second = vec![0u8; rate as usize * 2];
            assert_eq!(p.push(&second, &mut out).unwrap() + p.flush(true, &mut out).unwrap(), 10);
        }
        for bad in [0, rebuffer::MAX_FRAME_BYTES] {
            let e = SendPipeline::with_frame_samples(16_000, 1, WireEncoding::PcmS16le, bad);
            assert_eq!(
                e.unwrap_err(),
                AudioError::FrameSize { frame_bytes: bad * 2, sample_bytes: 2 }
            );
        }
    }

    proptest! {
        /// At the wire rate and mono, the output is AudioByteStream(512)'s, plus padding.
        #[test]
        fn passthrough_matches_the_rebuffer_oracle(
            pushes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2500), 0..12),
        ) {
            let mut p = SendPipeline::new(16_000, 1, WireEncoding::PcmS16le).unwrap();
            let mut oracle = Rebuffer::new(1024, 2).unwrap();
            let (mut got, mut expected) = (Vec::new(), Vec::new());
            let (mut n_got, mut n_expected) = (0, 0);
            for push in &pushes {
                n_got += p.push(push, &mut got).unwrap();
                n_expected += oracle.push(push, &mut expected);
            }
            n_got += p.flush(true, &mut got).unwrap();
            n_expected += oracle.flush(true, &mut expected);
            prop_assert_eq!(n_got, n_expected);
            prop_assert_eq!(got, expected);
        }

        /// Any input at any supported rate gives whole frames and the right duration.
        #[test]
        fn output_is_whole_frames_of_the_right_duration(
            rate in prop_oneof![Just(8_000u32), Just(16_000), Just(22_050), Just(24_000), Just(44_100), Just(48_000)],
            channels in 1u32..3,
            mulaw: bool,
            samples in 0usize..20_000,
            piece in 1usize..3000,
        ) {
            let encoding = if mulaw { WireEncoding::PcmMulaw(MuLaw::Continuous) } else { WireEncoding::PcmS16le };
            let mut p = SendPipeline::new(rate, channels, encoding).unwrap();
            let input = vec![3u8; samples * channels as usize * 2];
            let mut out = Vec::new();
            let mut frames = 0;
            for chunk in input.chunks(piece) {
                frames += p.push(chunk, &mut out).unwrap();
            }
            frames += p.flush(true, &mut out).unwrap();
            prop_assert_eq!(out.len(), frames * encoding.frame_bytes());
            let wire = u64::from(encoding.sample_rate());
            let expected = (samples as u64 * wire + u64::from(rate) / 2) / u64::from(rate);
            prop_assert_eq!(frames as u64, expected.div_ceil(encoding.frame_samples() as u64));
        }
    }
}
