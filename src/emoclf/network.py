"""Whether a server answers at all, in seconds rather than after a library's minutes of retries."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why a TCP connection to ``url``'s host and port fails (None when it opens)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as e:
        return str(e)
    return None
