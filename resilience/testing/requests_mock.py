"""``MockAdapter``: requests' network replaced by a function, as httpx's ``MockTransport`` does.

Mounted on a session (``HttpPrometheusSource(url, adapter=MockAdapter(handler))``), it hands
every prepared request to ``handler`` and turns its ``(status, body)`` into a response: a
``str`` or ``bytes`` body is sent as is, anything else as JSON. It records each request with
the transport settings requests passed along (timeout, verify, cert, proxies), so a test can
check what the client would have sent without a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Handler = Callable[[requests.PreparedRequest], tuple[int, object]]


@dataclass(frozen=True)
class Sent:
    """One request as the adapter received it, with requests' transport settings."""

    request: requests.PreparedRequest
    timeout: object
    verify: object
    cert: object
    proxies: Mapping[str, str]


class MockAdapter(BaseAdapter):
    """A transport adapter that answers from ``handler`` and remembers what was sent."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[Sent] = []

    def send(  # noqa: PLR0917 (requests' adapter interface)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: object = None,
        verify: object = True,
        cert: object = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self.sent.append(Sent(request, timeout, verify, cert, dict(proxies or {})))
        status, body = self.handler(request)
        response = requests.Response()
        response.status_code = status
        if isinstance(body, bytes):
            content = body
        elif isinstance(body, str):
            content = body.encode()
        else:
            content = json.dumps(body).encode()
        response._content = content
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release."""
