# SPDX-License-Identifier: Apache-2.0

"""The audio ledger on its own: no server, no event loop. Frames are named by their index."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from livekit.plugins.baseten._audio_ledger import AudioLedger

F = 0.032


def frames(start: int, count: int) -> list[bytes]:
    return [str(i).encode() for i in range(start, start + count)]


def index(frame: bytes) -> int:
    return int(frame)


def take_all(ledger: AudioLedger) -> list[int]:
    taken = []
    while (frame := ledger.take()) is not None:
        taken.append(index(frame))
    return taken


def test_a_new_connection_starts_with_what_no_final_covered() -> None:
    ledger = AudioLedger(max_frames=100, frame_seconds=F)
    ledger.push(frames(0, 10))
    ledger.open()
    assert take_all(ledger) == list(range(10))
    assert ledger.sent_s == pytest.approx(10 * F) and ledger.origin_s == 0.0
    ledger.confirm(4 * F)  # a final ending at 0.128 s covers frames 0-3
    ledger.push(frames(10, 2))
    ledger.open()  # the connection died
    assert ledger.origin_s == pytest.approx(4 * F)  # its server's time 0 is frame 4's start
    assert take_all(ledger) == list(range(4, 12))
    assert not ledger.settled
    ledger.confirm_all()
    assert ledger.settled and ledger.queued == 0


def test_frames_lost_before_a_connection_move_its_origin(caplog: pytest.LogCaptureFixture) -> None:
    ledger = AudioLedger(max_frames=5, frame_seconds=F)
    ledger.push(frames(0, 3))
    ledger.push(frames(3, 4))  # 7 against a bound of 5: frames 0 and 1 go
    ledger.open()
    assert ledger.dropped_frames == 2
    assert ledger.origin_s == pytest.approx(2 * F)
    assert take_all(ledger) == [2, 3, 4, 5, 6]
    assert not ledger.broken
    assert ledger.take_usage() == 5  # frames never sent are not usage
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropping the oldest" in warnings[0].getMessage()


def test_frames_lost_after_a_connection_sent_audio_break_it() -> None:
    ledger = AudioLedger(max_frames=5, frame_seconds=F)
    ledger.open()
    ledger.push(frames(0, 2))
    assert take_all(ledger) == [0, 1]
    ledger.confirm_all()
    ledger.push(frames(2, 7))  # the socket took none of these; 2 and 3 are lost
    assert ledger.broken
    assert ledger.take() is None  # its server would hear frame 4 where frame 2 belonged
    ledger.open()  # a new connection starts where the kept audio does
    assert not ledger.broken and ledger.origin_s == pytest.approx(4 * F)
    assert take_all(ledger) == [4, 5, 6, 7, 8]


def test_frames_sent_once_leave_the_resend_queue_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A long silence (no finals) fills the bound with sent frames; the connection dies; the
    # audio pushed meanwhile pushes the oldest of them out. The server had them once: nothing
    # is lost that was never sent, and the next connection starts at the oldest still kept.
    ledger = AudioLedger(max_frames=5, frame_seconds=F)
    ledger.open()
    ledger.push(frames(0, 5))
    assert take_all(ledger) == [0, 1, 2, 3, 4]
    ledger.close()
    ledger.push(frames(5, 2))
    ledger.open()
    assert ledger.dropped_frames == 0 and not caplog.records
    assert ledger.origin_s == pytest.approx(2 * F)
    assert take_all(ledger) == [2, 3, 4, 5, 6]
    assert ledger.take_usage() == 7


def test_the_bound_first_forgets_sent_frames_it_could_have_resent() -> None:
    ledger = AudioLedger(max_frames=5, frame_seconds=F)
    ledger.open()
    ledger.push(frames(0, 4))
    assert take_all(ledger) == [0, 1, 2, 3]
    ledger.push(frames(4, 3))  # 7 kept: the two oldest, already sent, go first
    assert not ledger.broken and ledger.dropped_frames == 0
    assert take_all(ledger) == [4, 5, 6]
    ledger.open()
    assert take_all(ledger) == [2, 3, 4, 5, 6]


def test_usage_counts_each_frame_once_when_first_sent() -> None:
    ledger = AudioLedger(max_frames=100, frame_seconds=F)
    ledger.push(frames(0, 10))
    ledger.open()
    for _ in range(6):
        ledger.take()
    assert ledger.take_usage(at_least=7) == 0
    assert ledger.take_usage(at_least=6) == 6
    ledger.open()  # all six are resent
    assert take_all(ledger) == list(range(10))
    assert ledger.take_usage() == 4


def test_a_final_past_the_audio_sent_confirms_only_what_was_sent() -> None:
    ledger = AudioLedger(max_frames=100, frame_seconds=F)
    ledger.push(frames(0, 10))
    ledger.open()
    for _ in range(3):
        ledger.take()
    ledger.confirm(100.0)
    ledger.open()
    assert take_all(ledger) == list(range(3, 10))


def _near_a_frame_end(frames: int, offset: float, ulps: int) -> float:
    t = frames * F + offset
    return math.nextafter(t, ulps * math.inf) if ulps else t


@given(
    first=st.integers(0, 10_000),
    held=st.integers(0, 400),
    seconds=st.one_of(
        st.floats(-1.0, 400.0),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        # At a frame's end, give or take the server's rounding and the 1 us of slack, and the
        # next floats either side of that slack, where a division and a product can disagree.
        st.builds(
            _near_a_frame_end,
            st.integers(0, 12_000),
            st.sampled_from([-2e-6, -1e-6, -5e-7, 0.0, 5e-7, 2e-6]),
            st.sampled_from([-1, 0, 1]),
        ),
    ),
)
# Where floor(limit / F) alone is one frame off the rule (found by search).
@example(first=0, held=20, seconds=_near_a_frame_end(9, -1e-6, -1))
@example(first=0, held=60, seconds=_near_a_frame_end(52, -1e-6, -1))
def test_a_final_confirms_exactly_the_frames_it_covers(
    first: int, held: int, seconds: float
) -> None:
    # A connection that sent `first` frames, all covered, then `held` more.
    ledger = AudioLedger(max_frames=20_000, frame_seconds=F)
    ledger.open()
    ledger.push(frames(0, first))
    take_all(ledger)
    ledger.confirm_all()
    ledger.push(frames(first, held))
    take_all(ledger)
    ledger.confirm(seconds)
    # The rule, frame by frame: frame k is covered once it ends by `seconds` (1 us of slack);
    # a time that is not finite covers nothing.
    covered = [
        k
        for k in range(first, first + held)
        if math.isfinite(seconds) and (k + 1) * F <= seconds + 1e-6
    ]
    ledger.open()  # what a new connection resends is what no final covered
    assert take_all(ledger) == list(range(first + len(covered), first + held))


class LedgerMachine(RuleBasedStateMachine):
    """Random interleavings of pushes, sends, finals, finishes and connection deaths, checked
    against a plain model: every pushed frame is sent, in order, and resent only while no final
    covers it; each connection hears one unbroken run of the input from its origin; usage
    counts each frame once; at most `MAX` frames are kept."""

    MAX = 40

    def __init__(self) -> None:
        super().__init__()
        self.ledger = AudioLedger(max_frames=self.MAX, frame_seconds=F)
        self.pushed = 0
        self.covered: set[int] = set()  # frames a final (or finished) covered
        self.ever_sent: set[int] = set()
        # Whether more than MAX frames were ever owed at once, so the bound may have dropped
        # some; until then the model knows exactly which frame comes next.
        self.overflowed = False
        self.run: list[int] = []  # the live connection's frames, in order
        self.live = False
        self.usage = 0

    @rule(count=st.integers(0, 25))
    def push(self, count: int) -> None:
        before = self.ledger.dropped_frames
        self.ledger.push(frames(self.pushed, count))
        self.pushed += count
        self.overflowed |= self.pushed - len(self.covered) > self.MAX
        if not self.overflowed:
            assert self.ledger.dropped_frames == before == 0

    @rule()
    def connect(self) -> None:
        self.ledger.open()
        self.live, self.run = True, []

    @rule()
    def die(self) -> None:
        self.ledger.close()
        self.live, self.run = False, []

    @precondition(lambda self: self.live)
    @rule(count=st.integers(1, 30))
    def send(self, count: int) -> None:
        for _ in range(count):
            frame = self.ledger.take()
            if frame is None:
                assert self.ledger.queued == 0 or self.ledger.broken
                return
            i = index(frame)
            assert i not in self.covered, "resent after a final covered it"
            if self.run:
                assert i == self.run[-1] + 1, "a connection's audio must be one unbroken run"
            else:
                assert self.ledger.origin_s == pytest.approx(i * F)
                if not self.overflowed:  # covered frames are then a prefix of the input
                    assert i == len(self.covered), "a connection starts at the oldest owed"
            self.run.append(i)
            self.ever_sent.add(i)
            assert self.ledger.sent_s == pytest.approx(len(self.run) * F)

    @precondition(lambda self: self.live and bool(self.run))
    @rule(data=st.data())
    def final(self, data: st.DataObject) -> None:
        # A final ends somewhere in the audio this connection was sent.
        end = data.draw(st.integers(0, len(self.run)))
        self.ledger.confirm(end * F)
        self.covered.update(self.run[:end])

    @precondition(lambda self: self.live)
    @rule()
    def finished(self) -> None:
        self.ledger.confirm_all()
        self.covered.update(self.run)

    @rule(at_least=st.integers(1, 10))
    def report_usage(self, at_least: int) -> None:
        self.usage += self.ledger.take_usage(at_least)

    @invariant()
    def accounts_add_up(self) -> None:
        ledger = self.ledger
        assert ledger.queued >= 0
        # Usage never runs ahead of what was sent, and catches up exactly.
        assert self.usage <= len(self.ever_sent)
        assert self.usage + ledger.take_usage(at_least=10**9) <= len(self.ever_sent)

    def teardown(self) -> None:
        # Whatever happened, a last healthy connection that runs to the end settles
        # everything: each frame was covered, or lost at the bound with a count.
        ledger = self.ledger
        ledger.open()
        resent = take_all(ledger)
        assert resent == sorted(resent) and not ledger.broken
        assert not set(resent) & self.covered
        self.ever_sent.update(resent)
        ledger.confirm_all()
        assert ledger.settled
        self.usage += ledger.take_usage()
        assert self.usage == len(self.ever_sent)
        unsent = set(range(self.pushed)) - self.ever_sent
        assert len(unsent) <= ledger.dropped_frames
        if not self.overflowed:
            assert not unsent and ledger.dropped_frames == 0


TestLedgerMachine = LedgerMachine.TestCase
