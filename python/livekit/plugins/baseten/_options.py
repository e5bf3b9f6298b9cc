# SPDX-License-Identifier: Apache-2.0

"""`update_options` helpers: LiveKit's NOT_GIVEN means "leave as it is"."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from livekit.agents.utils import is_given

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Options = TypeVar("Options", bound=DataclassInstance)
else:
    Options = TypeVar("Options")


def replace_given(opts: Options, **changes: Any) -> Options:
    """A copy of the options dataclass `opts` with the changes that were given."""
    return dataclasses.replace(opts, **{k: v for k, v in changes.items() if is_given(v)})
