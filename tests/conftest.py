# SPDX-License-Identifier: Apache-2.0

import gc
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from hypothesis import settings

# Property tests run as part of the suite: enough examples to find edge cases, no wall-clock
# deadline (CI machines are shared and noisy).
settings.register_profile("default", max_examples=200, deadline=None)
settings.load_profile("default")


_LOST_GROUPS = pytest.StashKey[list[str]]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker with `--dist loadgroup`, notes the tests whose `xdist_group` mark did
    not reach the scheduler: xdist tags a grouped test by suffixing its node id, which pytest
    9.2 no longer lets it do, and the groups then silently stop holding."""
    if getattr(config.option, "loadgroup", False):
        config.stash[_LOST_GROUPS] = [
            i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
        ]


@pytest.fixture(scope="session", autouse=True)
def xdist_groups_hold(request: pytest.FixtureRequest) -> None:
    """Every test errors, saying why, when the groups do not hold."""
    if lost := request.config.stash.get(_LOST_GROUPS, []):
        pytest.fail(f"xdist_group marks are not applied (pytest {pytest.__version__}): {lost[:3]}")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_asyncio_errors() -> Iterator[None]:
    """Fails a test that leaves a task whose exception was never retrieved, or any other
    error asyncio logs (they surface when the task is garbage-collected)."""
    collector = _Collector()
    logger = logging.getLogger("asyncio")
    logger.addHandler(collector)
    try:
        yield
        gc.collect()
        # What survives outlives this test: park it where later collections do not walk it
        # again. A full collection of the suite's heap (LiveKit, pydantic, hypothesis) costs
        # 0.2 s, which every test would otherwise pay; this one then only walks its own.
        gc.freeze()
    finally:
        logger.removeHandler(collector)
    messages = [r.getMessage() for r in collector.records]
    assert not messages, f"asyncio logged errors: {messages}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The aiohttp session the plugin's classes are given (outside a LiveKit job)."""
    async with aiohttp.ClientSession() as session:
        yield session
