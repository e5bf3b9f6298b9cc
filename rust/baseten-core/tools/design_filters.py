#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Designs the resampler's filters for the common rate pairs and writes them as Rust source.

    python rust/baseten-core/tools/design_filters.py            # rewrite the Rust tables
    python rust/baseten-core/tools/design_filters.py --check    # exit 1 if they differ
    python rust/baseten-core/tools/design_filters.py --search   # smallest tap counts that pass

For each pair `in_rate -> out_rate` (ratio L/M, reduced by the gcd) one linear-phase lowpass
prototype is designed at L * in_rate, with the band edges of `band_edges` (the same as in
`resample.rs`), split into its L phases, and each phase quantized to int16 so that it sums to
exactly 2**shift (unity DC gain in every phase). `shift` is the largest of 17..12 that keeps
every coefficient in int16 and rules out int32 overflow in the kernels' lanes (`lanes_fit`).

- One phase (decimation by a whole number): scipy's Parks-McClellan `remez` (equiripple),
  rounded to nearest, the remainder given to the taps that rounding moved furthest.
- Several phases: the spurs beside a tone are the prototype's response at the tone's images,
  deep in the stopband, which an equiripple design leaves at its stopband level (about -68 dB,
  too close to a 1 kHz tone's 85 dB SNR). So these use `firwin` with a Kaiser window for
  KAISER_DB of attenuation, whose sidelobes fall away from the transition band, and each
  phase's rounding error is pushed to high frequencies (first-order error feedback along its
  taps), as `resample.rs` does for the pairs it designs at run time.

The tap counts in `DESIGNS` are the smallest that meet the targets below after quantization
(`--search` finds them again); the tests in `resample.rs` hold every table to the quality bar
with less margin:

- passband: |gain| within PASSBAND_DB of 0 dB up to the pass edge;
- stopband: every tone from the stop edge to the input's Nyquist at least STOPBAND_DB down;
- spurs (L > 1, where phases differ): at least STOPBAND_DB below any passband tone, and
  SPUR_1K_DB below a 1 kHz tone.

`tests/test_filter_tables.py` runs `--check`, so the tables and this script cannot drift.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy.signal import firwin, kaiser_beta, remez

OUT = Path(__file__).resolve().parent.parent / "src" / "resample" / "designed.rs"

# (in_rate, out_rate) -> prototype taps (odd: the prototype is centred on a tap).
DESIGNS: dict[tuple[int, int], int] = {
    (48000, 16000): 103,
    (24000, 16000): 157,
    (32000, 16000): 69,
    (96000, 16000): 205,
    (48000, 8000): 181,
    (24000, 8000): 91,
    (16000, 8000): 61,
    (32000, 8000): 121,
    (96000, 8000): 361,
}

# Design targets: a little better than the bar the tests hold the tables to (0.1 dB, 65 dB),
# so that the tests' tone measurements through the int16 path pass with room.
PASSBAND_DB = 0.08
STOPBAND_DB = 66.5
SPUR_1K_DB = 88.0
KAISER_DB = 80.0
# remez weights the stopband against the passband by the ratio of the ripples wanted.
RIPPLE_PASS = 10 ** (0.05 / 20) - 1
RIPPLE_STOP = 10 ** (-68 / 20)
# The kernels read 16 taps at a time; a phase is padded with zeros at its start to a multiple.
LANES = 16
GRID_HZ = 10.0


def band_edges(in_rate: int, out_rate: int) -> tuple[float, float]:
    """(pass edge, stop edge) in Hz: 7 kHz / 8.5 kHz at 16 kHz, 3.4 kHz / 4.25 kHz at 8 kHz;
    relative to the lower of the two rates (an upsampler keeps the input's band)."""
    low = min(in_rate, out_rate)
    return low * (0.425 if low <= 8000 else 0.4375), low * 17 / 32


def ratio(in_rate: int, out_rate: int) -> tuple[int, int]:
    g = math.gcd(in_rate, out_rate)
    return out_rate // g, in_rate // g


def prototype(in_rate: int, out_rate: int, taps: int) -> np.ndarray:
    phases, _ = ratio(in_rate, out_rate)
    fs = phases * in_rate
    pass_hz, stop_hz = band_edges(in_rate, out_rate)
    if phases > 1:
        window = ("kaiser", kaiser_beta(KAISER_DB))
        fir: np.ndarray = firwin(taps, (pass_hz + stop_hz) / 2, window=window, fs=fs, scale=False)
        return fir * phases
    h: np.ndarray = remez(
        taps,
        [0, pass_hz, stop_hz, fs / 2],
        [phases, 0],
        weight=[1, RIPPLE_PASS / RIPPLE_STOP],
        fs=fs,
        maxiter=200,
        grid_density=16,
    )
    return h


def split(h: np.ndarray, phases: int) -> tuple[np.ndarray, int]:
    """The prototype's phases, one row each, over a common range of input offsets; and the
    offset of the first column. Output k sits at input time q + p/L (q whole, phase p); its
    tap j multiplies input q + first + j with h at (first + j) * L - p."""
    half = (len(h) - 1) // 2
    first = -(half // phases)
    last = (phases - 1 + half) // phases
    rows = np.zeros((phases, last - first + 1))
    for p in range(phases):
        for col in range(last - first + 1):
            i = (first + col) * phases - p
            if -half <= i <= half:
                rows[p, col] = h[i + half]
    return rows, first


def quantize(rows: np.ndarray, shift: int) -> np.ndarray:
    """Each phase scaled to sum to 2**shift and rounded (with error feedback when there are
    several phases), the remainder given to the taps whose rounding moved them furthest the
    other way (ties to the lower index)."""
    total = 1 << shift
    shaped = rows.shape[0] > 1
    out = np.zeros(rows.shape, dtype=np.int64)
    for p, row in enumerate(rows):
        exact = row / row.sum() * total
        q = np.zeros(len(row), dtype=np.int64)
        carried = 0.0
        for j, x in enumerate(exact):
            v = x + carried if shaped else x
            q[j] = math.floor(v + 0.5)
            carried = v - q[j]
        short = int(total - q.sum())
        if short:
            err = (exact - q) * np.sign(short)
            order = np.argsort(-err, kind="stable")
            q[order[: abs(short)]] += int(np.sign(short))
        out[p] = q
    return out


def lanes_fit(q: np.ndarray) -> bool:
    """No int32 partial sum can overflow, for any int16 input: each kernel lane accumulates
    the taps whose padded index mod 16 is 2l or 2l + 1 (AVX2's and SSE2's madd lanes; NEON's
    lanes hold one tap index mod 16 each, a subset), and 32768 * their sum of |coefficient|
    must fit in int32. The lanes are summed in int64."""
    taps = q.shape[1]
    pad = -taps % LANES
    lane = ((np.arange(taps) + pad) % LANES) // 2
    for row in np.abs(q):
        for sel in range(LANES // 2):
            if 32768 * int(row[lane == sel].sum()) > 2**31 - 1:
                return False
    return True


def choose_shift(rows: np.ndarray) -> tuple[np.ndarray, int]:
    for shift in range(17, 11, -1):
        q = quantize(rows, shift)
        if np.abs(q).max() <= 32767 and lanes_fit(q):
            return q, shift
    raise SystemExit("no shift keeps the coefficients in int16")


def response(q: np.ndarray, first: int, shift: int, in_rate: int, freqs: np.ndarray) -> np.ndarray:
    """Each phase's complex gain for input tones at `freqs`, relative to the tone sampled at
    the output's time: one row per phase."""
    phases, taps = q.shape
    w = 2 * np.pi * freqs / in_rate
    rows = []
    for p in range(phases):
        offsets = np.arange(taps) + first - p / phases
        rows.append(np.exp(1j * np.outer(w, offsets)) @ q[p] / (1 << shift))
    return np.array(rows)


def quality(q: np.ndarray, first: int, shift: int, in_rate: int, out_rate: int) -> dict[str, float]:
    """Worst passband deviation (dB), stopband attenuation (dB) and spur level (dB below the
    tone), on a 10 Hz grid. Every output phase occurs equally often, so a tone's output is its
    mean gain over the phases plus spurs of the phases' spread."""
    pass_hz, stop_hz = band_edges(in_rate, out_rate)
    g = response(q, first, shift, in_rate, np.arange(0, pass_hz + GRID_HZ / 2, GRID_HZ))
    mean = g.mean(axis=0)
    spread = np.sqrt((np.abs(g - mean) ** 2).mean(axis=0)).max()
    s = response(q, first, shift, in_rate, np.arange(stop_hz, in_rate / 2 + GRID_HZ / 2, GRID_HZ))
    worst_stop = float(np.sqrt((np.abs(s) ** 2).mean(axis=0)).max()) if s.size else 0.0
    k = response(q, first, shift, in_rate, np.array([1000.0]))
    spread_1k = float(np.sqrt((np.abs(k - k.mean(axis=0)) ** 2).mean()))
    return {
        "passband_db": float(np.abs(20 * np.log10(np.abs(mean))).max()),
        "stopband_db": math.inf if worst_stop == 0 else -20 * math.log10(worst_stop),
        "spur_db": math.inf if spread == 0 else -20 * math.log10(float(spread)),
        "spur_1k_db": math.inf if spread_1k == 0 else -20 * math.log10(spread_1k),
    }


def meets(m: dict[str, float]) -> bool:
    return (
        m["passband_db"] <= PASSBAND_DB
        and m["stopband_db"] >= STOPBAND_DB
        and m["spur_db"] >= STOPBAND_DB
        and m["spur_1k_db"] >= SPUR_1K_DB
    )


def design(in_rate: int, out_rate: int, taps: int) -> tuple[np.ndarray, int, int]:
    phases, _ = ratio(in_rate, out_rate)
    rows, first = split(prototype(in_rate, out_rate, taps), phases)
    q, shift = choose_shift(rows)
    return q, first, shift


def search(in_rate: int, out_rate: int) -> int:
    """The smallest odd prototype length that meets the targets (remez may fail to converge
    at some lengths: those are skipped)."""
    phases, _ = ratio(in_rate, out_rate)
    pass_hz, stop_hz = band_edges(in_rate, out_rate)
    if phases > 1:  # Kaiser's estimate for KAISER_DB
        width = (stop_hz - pass_hz) / (phases * in_rate)
        taps = int((KAISER_DB - 7.95) / (2.285 * 2 * math.pi * width)) // 2 * 2 - 11
    else:  # Herrmann's estimate for the ripples asked of remez
        db = -20 * math.log10(math.sqrt(RIPPLE_PASS * RIPPLE_STOP))
        taps = int((db - 13) / (14.6 * (stop_hz - pass_hz) / (phases * in_rate))) // 2 * 2 - 9
    while True:
        taps += 2
        try:
            q, first, shift = design(in_rate, out_rate, taps)
        except ValueError:
            continue
        if meets(quality(q, first, shift, in_rate, out_rate)):
            return taps


def rust_source() -> str:
    lines = [
        "// SPDX-License-Identifier: Apache-2.0",
        "// @generated by rust/baseten-core/tools/design_filters.py: do not edit by hand.",
        "// To change a filter, edit the script and run it (it needs numpy and scipy):",
        "//     .venv/bin/python rust/baseten-core/tools/design_filters.py",
        "// tests/test_filter_tables.py fails while this file and the script disagree.",
        "",
        "//! Polyphase lowpass filters for the common rate pairs, designed offline (equiripple,",
        "//! scipy's `remez`); other pairs get a Kaiser-windowed sinc at run time.",
        "",
        "use super::Designed;",
        "",
        "/// The designed filters, one per (input rate, output rate).",
        "#[rustfmt::skip]",
        "pub(super) static DESIGNED: &[Designed] = &[",
    ]
    for (in_rate, out_rate), taps in DESIGNS.items():
        q, first, shift = design(in_rate, out_rate, taps)
        m = quality(q, first, shift, in_rate, out_rate)
        if not meets(m):
            raise SystemExit(f"{in_rate} -> {out_rate} with {taps} taps misses the targets: {m}")
        phases, width = q.shape
        pass_hz, stop_hz = band_edges(in_rate, out_rate)
        shape = f"{taps} taps" if phases == 1 else f"{taps} taps in {phases} phases of {width}"
        lines += [
            f"    // {in_rate} -> {out_rate} Hz, {shape}: "
            f"passband within {m['passband_db']:.3f} dB",
            f"    // to {pass_hz:g} Hz, stopband {m['stopband_db']:.1f} dB from {stop_hz:g} Hz"
            + (f", spurs {m['spur_db']:.1f} dB down" if phases > 1 else ""),
            "    Designed {",
            f"        in_rate: {in_rate}, out_rate: {out_rate}, phases: {phases}, "
            f"taps: {width}, first: {first}, shift: {shift},",
            "        coefs: &[",
        ]
        flat = [int(x) for x in q.reshape(-1)]
        for i in range(0, len(flat), 12):
            lines.append("            " + " ".join(f"{x}," for x in flat[i : i + 12]))
        lines += ["        ],", "    },"]
    lines += ["];", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--search", action="store_true", help="print the smallest tap counts")
    args = parser.parse_args()
    if args.search:
        for in_rate, out_rate in DESIGNS:
            print(f"    ({in_rate}, {out_rate}): {search(in_rate, out_rate)},")
        return 0
    text = rust_source()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is not what {Path(__file__).name} writes: run it", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
