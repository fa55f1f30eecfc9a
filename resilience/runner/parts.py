"""The rig's parts for one run: whose Toxiproxy, Prometheus and trace backend, checked first.

A part is the user's when the experiment file names it (``toxiproxy:``, ``observe.prometheus``,
``observe.traces``) or a flag does (``--toxiproxy``, ``--prometheus``, ``--traces``: the URL
replaces the file's, its other settings stay); every other part is the local stack's, which
``prepare_target`` starts when it is missing. Before anything starts or any request is sent:

1. every address the flags add is loopback or an allowed host (the file's are checked when
   it is loaded): ``ExperimentError``, exit 2, naming the flag, the host and how to allow it;
2. the user's parts need a target of the user's own (the built-in shop is wired to the
   stack's): exit 2;
3. each of the user's parts answers a health check: ``DependencyUnavailable``, exit 3,
   saying how to start or fix it.

The journal records which parts were the user's (``parts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from resilience.errors import DependencyUnavailable, ExperimentError, FaultError, ObserveError
from resilience.experiment.model import (
    Experiment,
    HttpPart,
    TracesPart,
    check_target_url,
)
from resilience.faults.toxiproxy import ToxiproxyClient
from resilience.observe.connection import Connection
from resilience.observe.prometheus import HttpPrometheusSource
from resilience.observe.traces import JaegerTraceSource, tempo_source
from resilience.stack import StackConfig

logger = logging.getLogger(__name__)

PartName = Literal["toxiproxy", "prometheus", "traces"]
PartSource = Literal["flag", "file", "stack"]
PART_NAMES: tuple[PartName, ...] = ("toxiproxy", "prometheus", "traces")
STACK_COMPONENT: dict[PartName, str] = {
    "toxiproxy": "toxiproxy",
    "prometheus": "prometheus",
    "traces": "jaeger",
}
"""The stack component that stands in for a part the user did not give."""
_FLAGS: dict[PartName, str] = {
    "toxiproxy": "--toxiproxy",
    "prometheus": "--prometheus",
    "traces": "--traces",
}
_TIMEOUTS: dict[PartName, float] = {"toxiproxy": 3.0, "prometheus": 5.0, "traces": 5.0}
"""A flag's part without settings in the file: the file's defaults."""
_KEYS: dict[PartName, str] = {
    "toxiproxy": "toxiproxy",
    "prometheus": "observe.prometheus",
    "traces": "observe.traces",
}


@dataclass(frozen=True)
class Part:
    """One part of the rig: where it is, whose it is, and how to talk to it."""

    name: PartName
    url: str
    source: PartSource
    connection: Connection = field(default_factory=Connection)
    kind: str | None = None
    """traces only: ``jaeger`` or ``tempo``."""
    api: str | None = None
    """traces only: Tempo's ``v1`` or ``v2``."""

    @property
    def own(self) -> bool:
        """Whether the user runs it (not the local stack)."""
        return self.source != "stack"

    def where(self, file: str | None = None) -> str:
        """Where it was named, for messages."""
        if self.source == "flag":
            return _FLAGS[self.name]
        if self.source == "file":
            return f"{_KEYS[self.name]} in {file}" if file else _KEYS[self.name]
        return f"the local stack's {STACK_COMPONENT[self.name]}"

    def record(self) -> dict[str, Any]:
        """The journal's entry (no headers or credentials: only where and whose)."""
        entry: dict[str, Any] = {"url": self.url, "source": self.source, "own": self.own}
        if self.kind is not None:
            entry["kind"] = self.kind
        return entry


@dataclass(frozen=True)
class Parts:
    """The three parts of one run."""

    toxiproxy: Part
    prometheus: Part
    traces: Part

    def all(self) -> tuple[Part, Part, Part]:
        return (self.toxiproxy, self.prometheus, self.traces)

    def own(self) -> list[Part]:
        return [p for p in self.all() if p.own]

    def stack_components(self) -> tuple[str, ...]:
        """The stack components standing in for the parts the user did not give."""
        return tuple(STACK_COMPONENT[p.name] for p in self.all() if not p.own)

    def to_journal(self) -> dict[str, dict[str, Any]]:
        return {p.name: p.record() for p in self.all()}

    def prometheus_source(self, timeout: float | None = None) -> HttpPrometheusSource:
        part = self.prometheus
        return HttpPrometheusSource(part.url, timeout=timeout, connection=part.connection)

    def trace_source(self, timeout: float | None = None) -> JaegerTraceSource:
        part = self.traces
        if part.kind == "tempo":
            return tempo_source(
                part.url, api=part.api or "v1", timeout=timeout, connection=part.connection
            )
        return JaegerTraceSource(part.url, timeout=timeout, connection=part.connection)

    def toxiproxy_client(
        self, *, timeout: float | None = None, retries: int = 2
    ) -> ToxiproxyClient:
        part = self.toxiproxy
        return ToxiproxyClient(
            part.url, timeout=timeout or part.connection.timeout, retries=retries
        )


def stack_parts(config: StackConfig) -> Parts:
    """Every part the local stack's."""
    return Parts(
        toxiproxy=Part("toxiproxy", config.toxiproxy_url, "stack", Connection(timeout=3.0)),
        prometheus=Part("prometheus", config.prometheus_url, "stack"),
        traces=Part("traces", config.jaeger_query_url, "stack", kind="jaeger"),
    )


def resolve_parts(
    experiment: Experiment,
    *,
    config: StackConfig,
    target: str | None = None,
    flags: dict[PartName, str | None] | None = None,
    allow_hosts: Iterable[str] = (),
) -> Parts:
    """The run's parts: flags over the file over the stack. ``ExperimentError`` (exit 2) for
    a flag's host that is off loopback and not allowed, for the user's parts with the
    built-in shop, for ``--target`` with faults on the shop's proxies, and for a TLS file
    that does not exist. Sends nothing."""
    flags = flags or {}
    allowed = experiment.allowed_hosts(allow_hosts)
    for option, url in (("--target", target), *((_FLAGS[n], flags.get(n)) for n in PART_NAMES)):
        if url is not None:
            check_target_url(url, option=option, allow_hosts=allowed, part=option != "--target")
    defaults = stack_parts(config)
    given = experiment.given_parts()
    base = experiment.source.parent if experiment.source is not None else Path.cwd()
    resolved: dict[PartName, Part] = {}
    for name, default in zip(PART_NAMES, defaults.all(), strict=True):
        settings = given[name]
        flag = flags.get(name)
        if settings is None and flag is None:
            resolved[name] = default
            continue
        source: PartSource = "flag" if flag is not None else "file"
        url = flag if flag is not None else settings.url if settings is not None else ""
        connection = (
            _connection(settings, base, experiment, name)
            if isinstance(settings, HttpPart)
            else Connection(timeout=settings.timeout if settings is not None else _TIMEOUTS[name])
        )
        kind = api = None
        if name == "traces":
            kind = settings.kind if isinstance(settings, TracesPart) else "jaeger"
            api = settings.api if isinstance(settings, TracesPart) else None
        resolved[name] = Part(name, url.rstrip("/"), source, connection, kind, api)
    parts = Parts(**resolved)
    if target is not None:
        experiment.check_target_flag()
    builtin = target is None and experiment.target is None
    if builtin and parts.own():
        names = ", ".join(p.where(_file(experiment)) for p in parts.own())
        raise ExperimentError(
            "your own Toxiproxy, Prometheus or trace backend needs a target of your own: the "
            "built-in shop is wired to the local stack's",
            expected="a target (--target URL or target: {url: ...}) with them, or none of them",
            got=names,
        )
    return parts


def _file(experiment: Experiment) -> str | None:
    return experiment.source.name if experiment.source is not None else None


def _connection(part: HttpPart, base: Path, experiment: Experiment, name: PartName) -> Connection:
    auth, tls = part.auth, part.tls
    files: dict[str, str | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key) if tls is not None else None
        files[key] = None if value is None else _existing(value, base, experiment, name, key)
    return Connection(
        headers=dict(part.headers),
        basic=(auth.basic.username, auth.basic.password) if auth and auth.basic else None,
        bearer=auth.bearer if auth is not None else None,
        verify=tls.verify if tls is not None else True,
        proxy=part.proxy,
        timeout=part.timeout,
        **files,
    )


def _existing(value: str, base: Path, experiment: Experiment, name: PartName, key: str) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ExperimentError(
            f"{_KEYS[name]}.tls.{key} in {_file(experiment) or 'the experiment'} names no file",
            expected="a readable file (relative paths are relative to the experiment file)",
            got=str(path),
        )
    return str(path.resolve())


def check_parts(
    parts: Parts, *, file: str | None = None, say: Callable[[str], None] = lambda _m: None
) -> None:
    """Health-check each of the user's parts once; ``DependencyUnavailable`` (exit 3) for
    the first that does not answer, saying how to start or fix it."""
    for part in parts.own():
        where = part.where(file)
        problem = _probe(parts, part)
        if problem is not None:
            raise DependencyUnavailable(
                f"your {_LABEL[part.name]} at {part.url} (given by {where}) does not answer: "
                f"{problem}",
                fix=_fix(part, where),
                component=STACK_COMPONENT[part.name],
            )
        say(f"using your {_LABEL[part.name]} at {part.url} ({where})")


_LABEL: dict[PartName, str] = {
    "toxiproxy": "Toxiproxy",
    "prometheus": "Prometheus",
    "traces": "trace backend",
}


def _probe(parts: Parts, part: Part) -> str | None:
    try:
        if part.name == "toxiproxy":
            with parts.toxiproxy_client(retries=0) as client:
                client.version()
        elif part.name == "prometheus":
            with parts.prometheus_source() as prometheus:
                prometheus.check()
        else:
            with parts.trace_source() as traces:
                traces.check()
    except (FaultError, ObserveError) as exc:
        return str(exc)
    return None


def _fix(part: Part, where: str) -> str:
    drop = f"or drop {where} to use the local stack's {STACK_COMPONENT[part.name]}"
    if part.name == "toxiproxy":
        return (
            f"start it (toxiproxy-server -host HOST -port PORT) so that GET {part.url}/version "
            f"answers, or correct {where}; {drop}"
        )
    if part.name == "prometheus":
        return (
            f"start it so that GET {part.url}/api/v1/query?query=1 answers, or correct the URL, "
            f"headers, auth and tls given by {where}; {drop}"
        )
    health = "/api/echo" if part.kind == "tempo" else "/api/v3/services"
    return (
        f"start it so that GET {part.url}{health} answers ({part.kind}), or correct the URL, "
        f"kind, headers, auth and tls given by {where}; {drop}"
    )
