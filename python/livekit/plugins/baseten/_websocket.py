# SPDX-License-Identifier: Apache-2.0

"""Opening a WebSocket to Baseten, with failures mapped to LiveKit's API errors."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError, utils

if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout as deadline

# How long close() waits for the server's close frame: a dead server must not stall cleanup.
CLOSE_TIMEOUT_S = 1.0


async def connect(
    session: aiohttp.ClientSession,
    url: str,
    *,
    api_key: str,
    timeout: float,
    max_msg_size: int,
    heartbeat: float | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Opens `url` with Baseten's `Authorization: Api-Key` header, TLS verified.

    Raises `APIStatusError` with the HTTP status when the handshake is refused (401, 403 and
    404 are not retryable; 429 and 5xx are), `APITimeoutError` after `timeout` seconds, a
    retryable `APIConnectionError` for network failures and a non-retryable one for a
    certificate that fails verification or a session already closed. With `heartbeat`, the
    socket pings after that many seconds without data from the server and fails when no pong
    follows within half of it (aiohttp's heartbeat). The errors are raised outside the
    `except` blocks, so they carry no `__context__`: aiohttp's exceptions hold the request
    headers, and with them the API key.
    """
    error: APIError
    if session.closed:  # a job that ended, or a session closed under a live engine
        raise APIConnectionError(
            f"cannot connect to {url}: the HTTP session is closed", retryable=False
        )
    try:
        # Not asyncio.wait_for, which before Python 3.12 can swallow a cancellation that
        # arrives as the connection completes.
        async with deadline(timeout):
            return await session.ws_connect(
                url,
                headers={"Authorization": f"Api-Key {api_key}"},
                max_msg_size=max_msg_size,
                heartbeat=heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
            )
    except aiohttp.ClientConnectorCertificateError as e:
        # A certificate that fails verification will fail again: not retryable.
        error = APIConnectionError(
            f"TLS certificate of {url} failed verification: {e.certificate_error}",
            retryable=False,
        )
    except aiohttp.WSServerHandshakeError as e:
        error = APIStatusError(
            f"Baseten refused the WebSocket handshake to {url}: HTTP {e.status}",
            status_code=e.status,
        )
    except asyncio.TimeoutError:
        error = APITimeoutError(
            f"timed out after {timeout:g}s connecting to {url}{_pool_hint(session)}"
        )
    except (aiohttp.ClientError, OSError) as e:
        error = APIConnectionError(f"cannot connect to {url}: {type(e).__name__}: {e}")
    raise error


def _pool_hint(session: aiohttp.ClientSession) -> str:
    """Why a connect may have waited with no network fault at all: every open WebSocket holds
    one of the session's connections until it closes, and a session that allows only so many
    (LiveKit's shared session allows 50 per host) queues the next stream until it times out."""
    connector = session.connector
    limits = [
        f"{n}{where}"
        for n, where in (
            (connector.limit if connector else 0, " in all"),
            (connector.limit_per_host if connector else 0, " per host"),
        )
        if n
    ]
    if not limits:
        return ""
    return (
        f" (the aiohttp session holds at most {', '.join(limits)} connections, and every open "
        "Baseten WebSocket keeps one: for more concurrent streams in this process, pass "
        "http_session=aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, "
        "limit_per_host=0)))"
    )


def failure_of(msg: aiohttp.WSMessage, ws: aiohttp.ClientWebSocketResponse) -> object:
    """Why `ws.receive()` returned an ERROR message. aiohttp puts a protocol error (a message
    over `max_msg_size`, a bad frame) in the message itself, and only other failures in
    `ws.exception()`."""
    return msg.data if isinstance(msg.data, BaseException) else ws.exception()


def as_api_error(e: BaseException | None, doing: str) -> APIError:
    """`e` as it reaches LiveKit: an APIError as it is, anything else (a socket that failed
    while `doing` something) a retryable connection error."""
    if isinstance(e, APIError):
        return e
    return APIConnectionError(f"Baseten connection lost while {doing}: {type(e).__name__}: {e}")


class Dialer:
    """How one STT or TTS reaches its endpoint: the URL, the key, and the HTTP session, the
    one it was given or else the job's, taken when first needed (an engine may be made
    before its job's session exists)."""

    def __init__(
        self, url: str, *, api_key: str, session: aiohttp.ClientSession | None, max_msg_size: int
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._session = session
        self._max_msg_size = max_msg_size

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = utils.http_context.http_session()
        return self._session

    async def dial(
        self, timeout: float, heartbeat: float | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the endpoint, as `connect` opens it."""
        return await connect(
            self.session(),
            self.url,
            api_key=self._api_key,
            timeout=timeout,
            max_msg_size=self._max_msg_size,
            heartbeat=heartbeat,
        )
