# SPDX-License-Identifier: Apache-2.0

"""Looks for an API key in everything a test run lets out: log records at every level, from
every logger, and whatever a test hands over (exceptions with their whole cause and context
chain, events, metrics, streams, plugin objects)."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass


def encodings(secret: str) -> list[str]:
    """`secret` as it could show up: verbatim, as a header value, in hex, and inside base64
    (an Authorization header encoded whole, say) at each of the three byte alignments."""
    raw = secret.encode()
    found = [secret, f"Api-Key {secret}", raw.hex()]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Only the characters made of the secret's own bits, not of its neighbours'.
        first = math.ceil(8 * offset / 6)
        last = (8 * (offset + len(raw))) // 6
        core = encoded[first:last]
        found += [core, core.replace("+", "-").replace("/", "_")]
    return found


@dataclass
class Finding:
    where: str
    needle: str
    text: str

    def __str__(self) -> str:
        at = self.text.lower().find(self.needle.lower())
        return f"{self.where}: ...{self.text[max(at - 60, 0) : at + 60]!r}..."


class SecretScan(logging.Handler):
    """A root logging handler at DEBUG (installed with `install`) and a sink for objects."""

    def __init__(self, secret: str) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.needles = encodings(secret)
        self.seen: list[tuple[str, str]] = []  # (where, text)
        self.records = 0
        self._saved: list[tuple[logging.Logger, int, bool]] = []

    # -- what it looks at ------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        # The message with its traceback, and the record's own fields: args and `extra`
        # values a formatter might print.
        self.seen.append((f"log {record.name}", self.format(record)))
        self.seen.append((f"log {record.name} fields", repr(vars(record))))

    def see(self, where: str, obj: object) -> None:
        """Records `str` and `repr` of `obj`; of an exception, of every exception chained to
        it (causes and contexts, even suppressed ones), with their args."""
        if isinstance(obj, BaseException):
            for e in exception_chain(obj):
                self.seen.append((f"{where} {type(e).__name__}", f"{e}\n{e!r}\n{e.args!r}"))
        else:
            self.seen.append((where, f"{obj}\n{obj!r}"))

    def findings(self) -> list[Finding]:
        return [
            Finding(where, needle, text)
            for where, text in self.seen
            for needle in self.needles
            if needle.lower() in text.lower()
        ]

    # -- installing it -----------------------------------------------------------------------

    def install(self) -> None:
        """Receives every record of every logger at DEBUG, including loggers created later
        (they inherit the root's level) and ones that do not propagate."""
        root = logging.getLogger()
        self._saved = [(root, root.level, root.disabled)]
        root.setLevel(logging.DEBUG)
        root.addHandler(self)
        for logger in _existing_loggers():
            self._saved.append((logger, logger.level, logger.disabled))
            logger.disabled = False
            if logger.level > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
            if not logger.propagate:
                logger.addHandler(self)

    def uninstall(self) -> None:
        for logger, level, disabled in self._saved:
            logger.setLevel(level)
            logger.disabled = disabled
            logger.removeHandler(self)
        self._saved = []


def exception_chain(e: BaseException | None) -> list[BaseException]:
    """`e` and every exception chained to it (causes, contexts, members of groups)."""
    seen: list[BaseException] = []
    todo = [e]
    while todo:
        x = todo.pop()
        if x is not None and not any(x is s for s in seen):
            seen.append(x)
            todo += [x.__cause__, x.__context__]
            # An exception group's members (duck-typed: the project supports Python < 3.11).
            members = getattr(x, "exceptions", ())
            if isinstance(members, tuple):
                todo += [m for m in members if isinstance(m, BaseException)]
    return seen


def _existing_loggers() -> Iterator[logging.Logger]:
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield logger
