# SPDX-License-Identifier: Apache-2.0

# Kept equal to the workspace version in Cargo.toml, which names the wheel (a test checks).
__version__ = "1.8.9"
