# SPDX-License-Identifier: Apache-2.0

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.plugins.baseten import _native

from .oracles import audioop

ALL_INT16 = struct.pack("<65536h", *range(-32768, 32768))
ALL_BYTES = bytes(range(256))


def test_g711_encode_is_bit_exact_with_audioop_on_every_int16() -> None:
    ours = _native.mulaw_encode(ALL_INT16)
    assert ours == audioop.lin2ulaw(ALL_INT16, 2)
    assert (
        hashlib.sha256(ours).hexdigest()
        == "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
    )


def test_g711_decode_is_bit_exact_with_audioop_on_every_byte() -> None:
    ours = _native.mulaw_decode(ALL_BYTES)
    assert ours == audioop.ulaw2lin(ALL_BYTES, 2)
    assert (
        hashlib.sha256(ours).hexdigest()
        == "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
    )


@given(st.binary(max_size=4096).map(lambda b: b[: len(b) // 2 * 2]))
def test_g711_encode_matches_audioop_on_any_buffer(pcm: bytes) -> None:
    assert _native.mulaw_encode(pcm) == audioop.lin2ulaw(pcm, 2)


@pytest.mark.parametrize(
    ("sample", "byte"),
    [
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
    ],
)
def test_continuous_flavour_matches_torchaudio_vectors(sample: int, byte: int) -> None:
    assert _native.mulaw_encode(struct.pack("<h", sample), "continuous") == bytes([byte])


def test_continuous_flavour_round_trips_every_byte() -> None:
    decoded = _native.mulaw_decode(ALL_BYTES, "continuous")
    assert _native.mulaw_encode(decoded, "continuous") == ALL_BYTES


def test_flavours_differ_where_the_spec_says() -> None:
    # Negative halves agree, positive halves are mirrored: G.711 bytes are garbled by a
    # continuous decoder.
    pos, neg = struct.pack("<h", 1000), struct.pack("<h", -1000)
    assert _native.mulaw_encode(neg) == _native.mulaw_encode(neg, "continuous")
    assert _native.mulaw_encode(pos) != _native.mulaw_encode(pos, "continuous")


def test_accepts_every_buffer_kind() -> None:
    pcm = ALL_INT16[:1024]
    expected = audioop.lin2ulaw(pcm, 2)
    for buf in (pcm, bytearray(pcm), memoryview(pcm), memoryview(bytearray(pcm)).cast("h")):
        assert _native.mulaw_encode(buf) == expected


def test_odd_byte_count_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a whole number of int16 samples: 3 bytes"):
        _native.mulaw_encode(b"\x00\x01\x02")


def test_unknown_flavour_is_a_value_error() -> None:
    with pytest.raises(ValueError, match='unknown mu-law flavour "alaw"'):
        _native.mulaw_encode(b"", "alaw")  # type: ignore[arg-type]


def test_non_buffer_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _native.mulaw_encode(5)  # type: ignore[arg-type]
