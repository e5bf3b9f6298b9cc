# SPDX-License-Identifier: Apache-2.0

"""Reference implementations the native core is checked against."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # CPython <= 3.12; audioop-lts provides the same module on 3.13+

__all__ = ["audioop"]
