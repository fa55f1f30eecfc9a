"""One TLS context for every HTTP client of a run.

httpx builds a fresh ``ssl.SSLContext`` for each client, loading the whole CA bundle each
time: about 20 ms of CPU, and a run made four such clients before its first request
(Toxiproxy, the stack, the rig, the trace backend) although most of them speak plain
HTTP to 127.0.0.1. A context is safe to share between clients and threads once built, and
httpx's documentation recommends sharing it; clients that need another (a CA file, a
client certificate, ``verify: false``) still bring their own (observe/connection.py).
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def system_tls() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CA bundle; nothing read from the
    environment), built once per process."""
    import httpx

    return httpx.create_ssl_context(verify=True, trust_env=False)
