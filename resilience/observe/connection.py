"""How to reach an observer the user runs: headers, credentials, TLS, an HTTP proxy, a timeout.

One plain description (``Connection``) that both HTTP stacks read: prometheus-api-client's
``requests`` session (``requests_settings``) and the trace client's httpx (``httpx_options``).
Neither uses proxies or CA bundles from the environment (``trust_env`` off): what a run
talks to, and how, is what the experiment file and the flags say, and a ``HTTP_PROXY`` meant
for the internet must not capture 127.0.0.1.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from resilience.errors import ObserveError
from resilience.tls import system_tls

DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Connection:
    """Everything but the URL: ``bearer`` becomes an ``Authorization: Bearer`` header;
    ``basic`` is ``(username, password)``; ``ca_file`` replaces the system's CA bundle;
    ``cert_file``/``key_file`` are a client certificate; ``proxy`` an HTTP(S) proxy URL."""

    headers: Mapping[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    proxy: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    def all_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.bearer is not None:
            headers["Authorization"] = f"Bearer {self.bearer}"
        return headers

    def proxies(self) -> dict[str, str]:
        """requests' ``proxies`` mapping (keyed by scheme; ``http_proxy`` keys are ignored)."""
        return {} if self.proxy is None else {"http": self.proxy, "https": self.proxy}

    def requests_cert(self) -> str | tuple[str, str] | None:
        if self.cert_file is None:
            return None
        return self.cert_file if self.key_file is None else (self.cert_file, self.key_file)

    def requests_verify(self) -> bool | str:
        return self.ca_file if self.verify and self.ca_file is not None else self.verify

    def ssl_context(self) -> ssl.SSLContext | bool:
        """httpx's ``verify``: a context when a CA bundle or client certificate is given."""
        if self.ca_file is None and self.cert_file is None:
            return system_tls() if self.verify else False
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ObserveError(f"cannot read the TLS files ({exc})") from exc
        return context

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` (besides ``base_url`` and ``timeout``)."""
        return {
            "headers": self.all_headers(),
            "auth": self.basic,
            "verify": self.ssl_context(),
            "proxy": self.proxy,
            "trust_env": False,
        }
