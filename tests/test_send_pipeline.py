# SPDX-License-Identifier: Apache-2.0

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit import rtc
from livekit.agents.utils.audio import AudioByteStream
from livekit.plugins.baseten import _native

from .oracles import audioop

pushes = st.lists(st.binary(max_size=3000), max_size=12)


def oracle_frames(chunks: list[bytes], pad: bool) -> list[bytes]:
    """livekit-agents' AudioByteStream(512), the existing plugin's rebuffer, plus padding."""
    stream = AudioByteStream(sample_rate=16000, num_channels=1, samples_per_channel=512)
    frames = [bytes(f.data) for chunk in chunks for f in stream.push(chunk)]
    frames += [bytes(f.data) for f in stream.flush()]
    if pad and frames and len(frames[-1]) < 1024:
        frames[-1] = frames[-1].ljust(1024, b"\x00")
    return frames


@given(pushes, st.booleans())
def test_16k_mono_equals_audio_byte_stream_plus_padding(chunks: list[bytes], pad: bool) -> None:
    pipeline = _native.SendPipeline(16000, 1, "pcm_s16le")
    frames = [f for chunk in chunks for f in pipeline.push(chunk)] + pipeline.flush(pad=pad)
    assert frames == oracle_frames(chunks, pad)


@given(pushes)
def test_8k_mono_mulaw_equals_audioop_of_the_input(chunks: list[bytes]) -> None:
    pipeline = _native.SendPipeline(8000, 1, "pcm_mulaw", "g711")
    frames = [f for chunk in chunks for f in pipeline.push(chunk)] + pipeline.flush()
    assert all(len(f) == 256 for f in frames)
    pcm = b"".join(chunks)
    pcm = pcm[: len(pcm) // 2 * 2]
    expected = audioop.lin2ulaw(pcm, 2)
    wire = b"".join(frames)
    assert wire[: len(expected)] == expected
    assert set(wire[len(expected) :]) <= {0xFF}, "padding is encoded silence"


def tone(rate: int, seconds: float, freq: float = 1000.0, channels: int = 1) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (12000 * np.sin(2 * math.pi * freq * t)).astype(np.int16)
    return np.repeat(mono, channels).tobytes()


def snr_db(samples: np.ndarray, rate: int, freq: float) -> float:
    """Signal-to-residual ratio after a least-squares fit of a sinusoid at `freq`."""
    t = np.arange(len(samples)) / rate
    basis = np.stack([np.sin(2 * math.pi * freq * t), np.cos(2 * math.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, samples, rcond=None)
    fitted = basis @ coef
    return float(10 * np.log10(np.sum(fitted**2) / np.sum((samples - fitted) ** 2)))


@pytest.mark.parametrize("rate", [22050, 24000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_resampled_input_is_clean_16k_in_whole_frames(rate: int, channels: int) -> None:
    pipeline = _native.SendPipeline(rate, channels, "pcm_s16le")
    pcm = tone(rate, 1.0, channels=channels)
    step = rate // 50 * channels * 2  # 20 ms frames, as LiveKit delivers them
    frames = [f for i in range(0, len(pcm), step) for f in pipeline.push(pcm[i : i + step])]
    frames += pipeline.flush()
    assert all(len(f) == 1024 for f in frames)
    assert len(frames) == math.ceil(16000 / 512)
    out = np.frombuffer(b"".join(frames), dtype=np.int16).astype(np.float64)[:16000]
    assert snr_db(out[800:-800], 16000, 1000.0) >= 60.0


def test_a_tone_above_the_new_nyquist_is_removed() -> None:
    pipeline = _native.SendPipeline(48000, 1, "pcm_s16le")
    frames = pipeline.push(tone(48000, 1.0, freq=8500.0)) + pipeline.flush()
    out = np.frombuffer(b"".join(frames), dtype=np.int16).astype(np.float64)[800:-800]
    rms_in = 12000 / math.sqrt(2)
    assert 20 * math.log10(rms_in / max(float(np.sqrt(np.mean(out**2))), 1e-9)) >= 60.0


def test_48k_to_8k_mulaw_frames() -> None:
    pipeline = _native.SendPipeline(48000, 1, "pcm_mulaw")
    assert (pipeline.wire_rate, pipeline.frame_bytes) == (8000, 256)
    frames = pipeline.push(tone(48000, 0.5)) + pipeline.flush()
    assert [len(f) for f in frames] == [256] * math.ceil(4000 / 256)
    decoded = np.frombuffer(_native.mulaw_decode(b"".join(frames), "continuous"), dtype=np.int16)
    assert snr_db(decoded[400:3600].astype(np.float64), 8000, 1000.0) >= 30.0  # mu-law's floor


def test_latency_is_reported() -> None:
    # The resampling filter's look-ahead: 51 samples at 48 kHz, 90 for 8 kHz output.
    assert _native.SendPipeline(16000, 1, "pcm_s16le").added_latency_s == 0.0
    assert _native.SendPipeline(48000, 1, "pcm_s16le").added_latency_s == 51 / 48000
    assert _native.SendPipeline(48000, 1, "pcm_mulaw").added_latency_s == 90 / 48000


def test_audio_frame_buffers_are_accepted() -> None:
    pcm = tone(16000, 0.1)
    frame = rtc.AudioFrame(data=pcm, sample_rate=16000, num_channels=1, samples_per_channel=1600)
    a, b = _native.SendPipeline(16000, 1, "pcm_s16le"), _native.SendPipeline(16000, 1, "pcm_s16le")
    assert a.push(frame.data) == b.push(pcm)
    assert a.push(bytearray(pcm)) == b.push(memoryview(pcm))


def test_pending_samples_and_flush_without_padding() -> None:
    pipeline = _native.SendPipeline(16000, 1, "pcm_s16le")
    assert pipeline.push(bytes(700)) == []
    assert pipeline.pending_samples == 350
    assert [len(f) for f in pipeline.flush(pad=False)] == [700]
    assert pipeline.flush() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((100, 1, "pcm_s16le"), "unsupported sample rate 100 Hz"),
        ((16000, 0, "pcm_s16le"), "unsupported channel count 0"),
        ((16000, 1, "opus"), 'unknown encoding "opus"'),
        ((16000, 1, "pcm_mulaw", "alaw"), 'unknown mu-law flavour "alaw"'),
        ((16000, 1, "pcm_s16le", "alaw"), 'unknown mu-law flavour "alaw"'),
        ((44099, 1, "pcm_s16le"), "cannot resample 44099 Hz to 16000 Hz with low latency"),
    ],
)
def test_bad_configuration_is_a_value_error(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _native.SendPipeline(*args)  # type: ignore[arg-type]


@given(pushes, st.sampled_from([2, 4]))
def test_rebuffer_equals_audio_byte_stream(chunks: list[bytes], sample_bytes: int) -> None:
    channels = sample_bytes // 2
    stream = AudioByteStream(sample_rate=16000, num_channels=channels, samples_per_channel=256)
    rebuffer = _native.Rebuffer(256 * sample_bytes, sample_bytes)
    ours = [f for chunk in chunks for f in rebuffer.push(chunk)] + rebuffer.flush()
    theirs = [bytes(f.data) for chunk in chunks for f in stream.push(chunk)]
    theirs += [bytes(f.data) for f in stream.flush()]
    assert ours == theirs
    assert rebuffer.buffered_bytes == len(b"".join(chunks)) % sample_bytes


def test_rebuffer_pads_and_clears() -> None:
    rebuffer = _native.Rebuffer(8)
    assert rebuffer.push(b"\x01\x02\x03") == []
    assert rebuffer.flush(pad=True) == [b"\x01\x02" + bytes(6)]
    rebuffer.clear()
    assert rebuffer.buffered_bytes == 0
    for frame_bytes in (7, 0, 2**40):
        with pytest.raises(ValueError, match="frame size must be a positive whole number"):
            _native.Rebuffer(frame_bytes, 2)


def test_push_checks_the_format_when_given_both_rate_and_channels() -> None:
    pipeline = _native.SendPipeline(48000, 2, "pcm_s16le", "continuous")
    frame = bytes(48000 // 50 * 2 * 2)
    assert pipeline.push(frame, 48000, 2) == []
    pending = pipeline.pending_samples
    with pytest.raises(ValueError, match="48000 Hz x 2 then 16000 Hz x 2"):
        pipeline.push(frame, 16000, 2)
    with pytest.raises(ValueError, match="both sample_rate and channels, or neither"):
        pipeline.push(frame, 48000)
    assert pipeline.pending_samples == pending  # refused input is not taken
    assert len(pipeline.push(frame)) == 1  # and the stream goes on
