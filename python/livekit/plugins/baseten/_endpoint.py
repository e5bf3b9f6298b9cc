# SPDX-License-Identifier: Apache-2.0

"""Where to connect and with which key: the rules shared by the STT and the TTS."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from .log import logger

TRUSS_WS_URL = "wss://model-{model_id}.api.baseten.co/environments/production/websocket"
CHAIN_WS_URL = "wss://chain-{chain_id}.api.baseten.co/environments/production/websocket"


def resolve_api_key(api_key: str | None) -> str:
    """The key given, else `BASETEN_API_KEY`; a ValueError when neither is set."""
    key = api_key or os.environ.get("BASETEN_API_KEY")
    if not key:
        raise ValueError(
            "Baseten API key is required. Pass one in via the `api_key` parameter, "
            "or set it as the `BASETEN_API_KEY` environment variable"
        )
    return key


def resolve_endpoint(
    *,
    model_endpoint: str | None,
    model_id: str | None,
    chain_id: str | None,
    truss_template: str,
    chain_template: str,
    schemes: tuple[str, ...],
) -> str:
    """The endpoint URL: `model_endpoint`, else one built from `model_id`, else from
    `chain_id`, else `BASETEN_MODEL_ENDPOINT`. Refuses a URL whose scheme is not in
    `schemes`, and warns about plaintext to a host other than this machine."""
    if model_endpoint:
        endpoint = model_endpoint
    elif model_id:
        endpoint = truss_template.format(model_id=model_id)
    elif chain_id:
        endpoint = chain_template.format(chain_id=chain_id)
    else:
        endpoint = os.environ.get("BASETEN_MODEL_ENDPOINT", "")
    if not endpoint:
        raise ValueError(
            "A Baseten endpoint is required. Provide one of: model_endpoint, model_id, or "
            "chain_id. Alternatively, set the BASETEN_MODEL_ENDPOINT environment variable."
        )
    parts = urlsplit(endpoint)
    if parts.scheme not in schemes or not parts.hostname:
        expected = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"invalid Baseten endpoint {endpoint!r}: expected an {expected} URL")
    if parts.scheme in ("ws", "http") and not _is_loopback(parts.hostname):
        logger.warning(
            "endpoint %s is plaintext %s://: the API key and all audio travel unencrypted; "
            "use %ss:// for any host but this machine",
            endpoint,
            parts.scheme,
            parts.scheme,
        )
    return endpoint


def _is_loopback(host: str) -> bool:
    """Whether `host` is this machine: localhost, or any loopback address (all of 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only a resolver could tell, and it may lie
        return False
