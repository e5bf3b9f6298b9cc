# SPDX-License-Identifier: Apache-2.0

"""A wide-area network between the plugin and a server on 127.0.0.1, in user space (this
kernel has no netem): a TCP proxy that delays each direction, with jitter, can cap the
bandwidth, and can partition (stop forwarding both ways, then resume or reset).

What it models, per connection and direction: every chunk read is delivered `delay_s` later,
plus a uniform jitter in [-jitter_s, +jitter_s] (never reordered: a chunk waits for the one
before it, as TCP delivers in order), and no faster than `bandwidth` bytes per second. A new
connection's first bytes also wait one round trip: the TCP handshake, which the proxy's own
accept on loopback does not cost. During a partition nothing is delivered (what was sent
waits, as TCP retransmits it), and new connections get nowhere; `heal(reset=True)` then drops
every connection with a TCP reset instead, as a NAT or load balancer that lost its state.

    python -m tests.wan --target-port 8766 --port 9766 --rtt 0.08 --jitter 0.02

runs one in a process of its own (the benchmarks), printing its port.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from .fake_tcp import TcpProxy


@dataclass
class Link:
    """One direction's conditions (both directions get the same)."""

    delay_s: float = 0.0  # one way
    jitter_s: float = 0.0  # each chunk's delay is delay_s +- up to this, uniformly
    bandwidth: float | None = None  # bytes per second, None for unlimited

    @classmethod
    def rtt(cls, rtt_s: float, jitter_s: float = 0.0, bandwidth: float | None = None) -> Link:
        return cls(delay_s=rtt_s / 2, jitter_s=jitter_s, bandwidth=bandwidth)


class _Direction:
    """Chunks read from one side, delivered to the other at their time."""

    def __init__(self, proxy: WanProxy, writer: asyncio.StreamWriter, extra_delay: float) -> None:
        self._proxy = proxy
        self._writer = writer
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._queued = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._last_at = 0.0
        self._extra_delay = extra_delay  # the first chunk's: the TCP handshake

    def send(self, data: bytes) -> None:
        link, now = self._proxy.link, time.monotonic()
        delay = link.delay_s + self._proxy.random.uniform(-link.jitter_s, link.jitter_s)
        at = max(now + max(delay, 0.0) + self._extra_delay, self._last_at)
        self._extra_delay = 0.0
        if link.bandwidth:
            at = max(at, self._last_at + len(data) / link.bandwidth)
        self._last_at = at
        self._queue.append((at, data))
        self._queued.set()
        self._empty.clear()

    async def drained(self) -> None:
        await self._empty.wait()

    async def deliver(self) -> None:
        while True:
            while not self._queue:
                self._empty.set()
                self._queued.clear()
                await self._queued.wait()
            at, data = self._queue[0]
            await asyncio.sleep(max(at - time.monotonic(), 0.0))
            await self._proxy.flowing.wait()
            self._queue.popleft()
            self._writer.write(data)
            if not self._queue:
                self._empty.set()
            await self._writer.drain()


class WanProxy(TcpProxy):
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port` across an emulated WAN."""

    def __init__(self, target_port: int, link: Link, *, seed: int = 0) -> None:
        super().__init__(target_port)
        self.link = link
        self.random = random.Random(seed)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.resets = 0  # connections dropped by heal(reset=True)

    @property
    def partitioned(self) -> bool:
        return not self.flowing.is_set()

    def partition(self) -> None:
        """Stops delivering, both ways, on every connection (and the ones to come)."""
        self.flowing.clear()

    def heal(self, *, reset_connections: bool = False) -> None:
        """Ends the partition: what waited is delivered, or with `reset_connections` every
        connection open now is dropped with a TCP reset."""
        if reset_connections:
            self.resets += self.reset_open()
        self.flowing.set()

    async def partition_for(self, seconds: float, *, reset_connections: bool = False) -> None:
        self.partition()
        await asyncio.sleep(seconds)
        self.heal(reset_connections=reset_connections)

    async def _admit(self) -> None:
        await self.flowing.wait()  # no handshake crosses a partition

    def _relay(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> list[Coroutine[Any, Any, None]]:
        # The client's first bytes also wait for the TCP handshake's round trip. Either side
        # closing (or failing) ends both, once what it sent is delivered.
        up = _Direction(self, upstream[1], 2 * self.link.delay_s)
        down = _Direction(self, client[1], 0.0)
        return [_read(client[0], up), _read(upstream[0], down), up.deliver(), down.deliver()]


async def _read(reader: asyncio.StreamReader, direction: _Direction) -> None:
    """Reads one side until it closes; returns once everything read has been delivered."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            direction.send(data)
    # The close travels as data does: after what came before it.
    await direction.drained()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rtt", type=float, default=0.08)
    parser.add_argument("--jitter", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes per second")
    args = parser.parse_args()

    async def serve() -> None:
        proxy = await WanProxy(
            args.target_port, Link.rtt(args.rtt, args.jitter, args.bandwidth)
        ).start(args.port)
        print(proxy.port, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
