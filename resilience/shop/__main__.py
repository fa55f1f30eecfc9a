"""``python -m resilience.shop SERVICE``: run one shop service on uvicorn, configured by env.

Exit codes: 0 after a clean stop, 2 when the settings are invalid (the message names the
variable), 3 when the service could not start (e.g. the database stayed unreachable past
its startup deadline; uvicorn reports a failed lifespan start with 3 as well).
"""

from __future__ import annotations

import logging
import socket
import sys

from resilience.errors import EXIT_INVALID, ExperimentError

logger = logging.getLogger("resilience.shop")

USAGE = "usage: python -m resilience.shop [gateway|orders|catalog]  (or set SHOP_SERVICE)"
GRACEFUL_SHUTDOWN_SECONDS = 3
BACKLOG = 2048
KEEP_ALIVE_SECONDS = 65
"""How long a service keeps an idle connection open: longer than its callers keep one
(the gateway's client drops idle connections after ``gateway.KEEPALIVE_EXPIRY_SECONDS``).
Equal idle limits (uvicorn's and httpx's defaults are both 5 s) race: the server closes a
connection as the client reuses it, and a POST on it fails with "Server disconnected
without sending a response" (a 502 in a quiet baseline, seen in the ground-truth matrix)."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        logger.error(USAGE)
        return EXIT_INVALID

    from resilience.shop.settings import settings_from_env

    try:
        settings = settings_from_env(service=args[0] if args else None)
    except ExperimentError as exc:
        logger.error("invalid shop settings: %s", exc)
        return EXIT_INVALID

    import uvicorn

    from resilience.shop.app import build_app, served_app

    app = build_app(settings)
    separate = settings.options.separate_metrics_port
    logger.info(
        "starting %s (%s) on %s:%d%s",
        settings.service_name,
        settings.mode,
        settings.host,
        settings.port,
        f", /metrics on port {settings.metrics_port}" if separate else "",
    )
    config = uvicorn.Config(
        served_app(app),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    try:
        if separate and settings.metrics_port is not None:
            # One server on two sockets: one event loop, one shutdown (see web.PortDispatch).
            try:
                sockets = [
                    _listen(settings.host, p) for p in (settings.port, settings.metrics_port)
                ]
            except OSError as exc:
                logger.error("could not listen on %s: %s", settings.host, exc)
                return 3
            server.run(sockets=sockets)
        else:
            server.run()
    finally:
        app.state.tracing.shutdown()
    if not server.started:
        return 3
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, whichever ``host`` is)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


if __name__ == "__main__":
    sys.exit(main())
