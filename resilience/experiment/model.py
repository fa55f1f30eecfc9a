"""The experiment model: one validated, typed object per experiment file.

Everything an experiment says (target, proxies, load shape and workload, the fault
timeline, SLOs, checks, guards, detector settings, recovery settings, profiles) is a
pydantic model here; unknown keys are refused everywhere. Durations are float seconds
and percentages are fractions inside (see ``units``). Checks that involve several fields
(a fault names a declared proxy, an SLO names a real endpoint, a captured variable is
captured somewhere) raise ``CrossFieldError`` so the loader can point at the exact key.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from resilience.errors import ErrorDetail, ExperimentError
from resilience.experiment._env import EnvRecord
from resilience.experiment._problems import (
    KeyPath,
    Locator,
    Problem,
    ValueProblem,
    describe,
    experiment_error,
    raise_if,
)
from resilience.experiment.captures import parse_capture
from resilience.experiment.detector_params import param_problems
from resilience.experiment.expectation import Expectation
from resilience.experiment.fault_types import FAULT_TYPES, FaultType, normalize_attributes
from resilience.experiment.placeholders import (
    BUILTIN_NAMES,
    IDENTIFIER,
    Template,
    iter_json_strings,
)
from resilience.experiment.presets import PRESET_STAGES, Preset
from resilience.experiment.spike import Spike, StageLevel, find_spike
from resilience.experiment.units import (
    MAX_DURATION,
    Duration,
    Latency,
    Percent,
    PositiveDuration,
    duration_between,
    format_duration,
    format_percent,
)
from resilience.vocabulary import (
    BUILTIN_PROXIES,
    EPHEMERAL_HIGH,
    EPHEMERAL_LOW,
    STACK_SCRAPE_JOBS,
    FaultWindow,
    Phase,
    Severity,
    ShopMode,
    phases_from_faults,
    phases_from_spike,
)

LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

DetectorKind = Literal[
    "cascading_failure",
    "timeout",
    "slow_recovery",
    "pool_exhaustion",
    "retry_amplification",
    "latency_trend",
    "memory_growth",
    "cpu_saturation",
    "connection_limit",
    "data_loss",
    "phase_comparison",
]
DETECTOR_KINDS: Final[tuple[str, ...]] = get_args(DetectorKind)
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CheckPhase = Literal["baseline", "fault", "recovery", "run"]
LoadMetric = Literal["error_rate", "p95", "p99", "rps"]

_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
_PROXY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})$"
)
_JSON_DEPTH_LIMIT = 32

# Bounds on what a file may ask for (docs/experiments.md, "Limits"): wide enough for any real
# experiment on one machine, narrow enough that a typo (a missing unit, an extra zero) is
# caught at the door instead of scheduling a week of load or a billion toxic updates.
HOUR: Final = 3600.0
MIN_LOAD: Final = 1.0
MAX_LOAD: Final = MAX_DURATION
MAX_USERS: Final = 100_000
MAX_RPS: Final = 100_000
MIN_SPAWN_RATE: Final = 0.01
MAX_SPAWN_RATE: Final = 10_000
MAX_FAULT_STEPS: Final = 10_000
UpToAnHour = Annotated[Duration, duration_between(0.0, HOUR)]
ClientTimeout = Annotated[Duration, duration_between(0.001, HOUR)]


class _Model(BaseModel):
    # strict: YAML already gives typed values, and "true" must not pass as 1 user.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        populate_by_name=True,
        validate_default=False,
    )


def _slug(value: str) -> str:
    if not _SLUG.match(value) or len(value) > 64:
        raise ValueProblem(
            "a slug of lowercase letters and digits joined by - or _ (like db-outage)",
            describe(value),
        )
    return value


Slug = Annotated[str, AfterValidator(_slug)]


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueProblem("a non-empty string", describe(value))
    return value


NonEmpty = Annotated[str, AfterValidator(_non_empty)]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _host_port(value: str, *, local: bool) -> str:
    match = _HOST_PORT.match(value.strip())
    if match is None:
        raise ValueProblem("host:port like 127.0.0.1:25432", describe(value))
    host = match.group("v6") or match.group("host") or ""
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueProblem("a port between 1 and 65535", describe(value))
    if local:
        if host not in LOCAL_HOSTS:
            raise ValueProblem(
                "a listen address on this machine (127.0.0.1, localhost or ::1)",
                describe(value),
            )
        if EPHEMERAL_LOW <= port <= EPHEMERAL_HIGH or port < 1024:
            raise ValueProblem(
                f"a port from 1024 to 65535 outside the ephemeral range "
                f"{EPHEMERAL_LOW}-{EPHEMERAL_HIGH} (Toxiproxy fails there intermittently)",
                describe(value),
            )
    return value.strip()


ListenAddress = Annotated[str, AfterValidator(lambda v: _host_port(v, local=True))]
UpstreamAddress = Annotated[str, AfterValidator(lambda v: _host_port(v, local=False))]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback: ``localhost``, 127.0.0.0/8 or ``::1``."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def url_host(url: str) -> str:
    """The host of a URL the model accepted, lowercase, without brackets."""
    return (urlsplit(url).hostname or "").lower()


def _http_url(
    value: str,
    *,
    what: str = "an http(s) URL like http://127.0.0.1:8000",
    credentials: bool = True,
) -> str:
    """An http(s) URL with a host; ``credentials=False`` refuses ``user:password@`` (a
    part's secrets go under ``auth:``, where they are never part of a recorded URL)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ValueProblem(what, describe(value)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueProblem(what, describe(value))
    if not credentials and (parts.username is not None or parts.password is not None):
        raise ValueProblem(
            f"{what}, without user:password@ (put credentials under auth:, with ${{env:NAME}})",
            "a URL with credentials in it",
        )
    return value.strip().rstrip("/")


def _part_url(value: str) -> str:
    """A part's URL: http(s), no credentials, no ?query or #fragment (paths are joined)."""
    checked = _http_url(value, credentials=False)
    parts = urlsplit(checked)
    if parts.query or parts.fragment:
        raise ValueProblem(
            "an http(s) URL like http://127.0.0.1:9090, without ?query or #fragment",
            describe(value),
        )
    return checked


def _target_url(value: str) -> str:
    """The target's base URL: http(s), no ?query or #fragment (request paths are appended
    to it, so they would end up inside the query or fragment)."""
    checked = _http_url(value)
    parts = urlsplit(checked)
    if parts.query or parts.fragment or checked.endswith(("?", "#")):
        raise ValueProblem(
            "an http(s) URL like http://127.0.0.1:8000 or http://127.0.0.1:8000/api, without "
            "?query or #fragment (request paths are appended to it: put a query in each path)",
            describe(value),
        )
    return checked


def check_http_url(url: str, *, option: str, part: bool = False) -> str:
    """A URL given outside a file (a flag, a library option), as the file's URLs are
    written (``part``: as a part's URL, otherwise as a target's): ``ExperimentError``
    naming ``option`` otherwise. The host is not judged."""
    try:
        return _part_url(url) if part else _target_url(url)
    except ValueProblem as problem:
        raise ExperimentError(
            f"invalid {option}", expected=problem.expected, got=problem.got
        ) from None


def check_target_url(
    url: str, *, option: str = "--target", allow_hosts: Iterable[str] = (), part: bool = False
) -> str:
    """``check_http_url``, and a host that is loopback or one of ``allow_hosts``."""
    checked = check_http_url(url, option=option, part=part)
    check_url_allowed(checked, option=option, allow_hosts=allow_hosts)
    return checked


def check_url_allowed(url: str, *, option: str, allow_hosts: Iterable[str]) -> None:
    """``ExperimentError`` (exit 2) unless the URL's host is loopback or listed."""
    host = url_host(url)
    allowed = {normalize_host(h) for h in allow_hosts}
    if is_loopback(host) or host in allowed:
        return
    raise ExperimentError(
        f"{option} names host {host!r}, which is off loopback and not allowed",
        expected=allowed_hosts_hint(host, allowed),
        got=url,
    )


def allowed_hosts_hint(host: str, allowed: Iterable[str]) -> str:
    listed = ", ".join(sorted(allowed))
    return (
        f"a loopback host (127.0.0.1, localhost, ::1) or an allowed one: add it to the file "
        f"(safety: {{allow_hosts: [{host}]}}) or pass --allow-host {host}"
        + (f" (allowed now: {listed})" if listed else "")
    )


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}[a-z0-9_])?)*$"
)


def normalize_host(value: str) -> str:
    """A host name or IP address as compared: lowercase, no brackets, no trailing dot."""
    return value.strip().strip("[]").lower().rstrip(".")


def _allow_host(value: str) -> str:
    expected = "a host name or IP address without scheme or port, like staging.example.internal"
    host = normalize_host(value)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueProblem(expected, describe(value)) from None
    return host


# ---------------------------------------------------------------------------- target


PartUrl = Annotated[str, AfterValidator(_part_url)]


def _ready_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in " \t\r\n#"):
        raise ValueProblem("a path on the target, starting with / (like /health)", describe(value))
    return value


class Readiness(_Model):
    """What "ready" means for the target: a GET of ``path`` (on the target's URL) answers one
    of ``expect`` (default: any 2xx). A run waits for it, at most ``within``, after it has
    healed what an earlier run left and before its load starts; a target never ready is
    reported as could not run (exit 3), never as the target's resilience failure."""

    path: Annotated[str, AfterValidator(_ready_path)]
    expect: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    within: Annotated[Duration, duration_between(1.0, HOUR)] = 30.0

    def accepts(self, status: int) -> bool:
        return status in self.expect if self.expect else 200 <= status < 300


class Target(_Model):
    """A system under test reached over HTTP (off loopback only when its host is allowed)."""

    url: Annotated[str, AfterValidator(_target_url)]
    ready: Readiness | None = None
    """Wait until the target says it is ready before the load starts (``Readiness``)."""


def _proxy_name(value: str) -> str:
    if not _PROXY_NAME.match(value) or len(value) > 64:
        raise ValueProblem("a proxy name of letters, digits, '.', '_' or '-'", describe(value))
    return value


class ProxyDef(_Model):
    """A Toxiproxy proxy the experiment creates in front of one of the target's dependencies."""

    name: Annotated[str, AfterValidator(_proxy_name)]
    listen: ListenAddress
    upstream: UpstreamAddress


_JOB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _job_name(value: str) -> str:
    if not _JOB_NAME.match(value) or len(value) > 64:
        raise ValueProblem(
            "a job name of letters, digits, '_', '.', ':' or '-' (like orders-api)",
            describe(value),
        )
    if value in STACK_SCRAPE_JOBS:
        raise ValueProblem(
            f"a job name other than the stack's own ({', '.join(STACK_SCRAPE_JOBS)})",
            describe(value),
        )
    return value


def _metrics_url(value: str) -> str:
    url = _http_url(value)
    if not urlsplit(url).path:
        url += "/metrics"
    return url


class ScrapeJob(_Model):
    """A Prometheus scrape job for the target's own metrics (``url``: the /metrics URL)."""

    job: Annotated[str, AfterValidator(_job_name)]
    url: Annotated[str, AfterValidator(_metrics_url)]


def _trace_ui_url(value: str) -> str:
    """A trace UI's page for one trace: an http(s) URL with ``{trace_id}`` in it (only ever
    a link in the report, never fetched, so it may name another host)."""
    expected = (
        "an http(s) URL with {trace_id} in it, like http://jaeger.example:16686/trace/{trace_id}"
    )
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        raise ValueProblem(expected, describe(value)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "{trace_id}" not in value:
        raise ValueProblem(expected, describe(value))
    return value.strip()


class ShopSettings(_Model):
    """Settings of the built-in shop: its mode and free-form options for its services."""

    mode: ShopMode | None = None
    options: dict[str, bool | int | float | str] = Field(default_factory=dict)


# ---------------------------------------------------------------------------- load


class Stage(_Model):
    """Closed model: hold ``users`` (reached at ``spawn_rate``/s) for ``duration``."""

    duration: PositiveDuration
    users: int = Field(ge=0, le=MAX_USERS)
    spawn_rate: float = Field(ge=MIN_SPAWN_RATE, le=MAX_SPAWN_RATE)


class ArrivalStage(_Model):
    """Open model: send ``rps`` requests per second for ``duration``, whatever the answers."""

    duration: PositiveDuration
    rps: float = Field(ge=0, le=MAX_RPS)


class SearchSteps(_Model):
    """The levels a capacity search steps through: ``from``, ``from + step``, ... up to
    ``ceiling`` (the last level, whatever the step)."""

    from_: float = Field(alias="from", gt=0, le=MAX_RPS)
    step: float = Field(gt=0, le=MAX_RPS)
    ceiling: float = Field(gt=0, le=MAX_RPS)

    @model_validator(mode="after")
    def _ordered(self) -> SearchSteps:
        if self.ceiling < self.from_:
            raise_if(
                [
                    Problem(
                        "the ceiling is below where the search starts",
                        expected=f"a ceiling of at least {self.from_:g} (from)",
                        got=f"{self.ceiling:g}",
                        path=("ceiling",),
                    )
                ]
            )
        return self

    def levels(self) -> list[float]:
        out: list[float] = []
        level = self.from_
        while level < self.ceiling - 1e-9 and len(out) < MAX_SEARCH_STEPS:
            out.append(level)
            level = self.from_ + self.step * len(out)
        out.append(self.ceiling)
        return out


MAX_SEARCH_STEPS: Final = 1000


class LoadSearch(_Model):
    """A capacity search: step the load up (users, or requests per second) from ``from`` by
    ``step`` every ``hold`` up to ``ceiling``; the run watches its SLOs (``slo.baseline``)
    live and stops by itself ``after`` seconds once they broke. ``max_duration`` bounds it
    (default: every step held), so a search never runs away (docs/load.md)."""

    users: SearchSteps | None = None
    rps: SearchSteps | None = None
    hold: Annotated[Duration, duration_between(1.0, HOUR)]
    spawn_rate: float | None = Field(default=None, ge=MIN_SPAWN_RATE, le=MAX_SPAWN_RATE)
    """Closed model: users added per second at each step (default: a step within a second)."""
    after: Annotated[Duration, duration_between(0.0, HOUR)] = 10.0
    max_duration: Annotated[Duration, duration_between(1.0, MAX_DURATION)] | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> LoadSearch:
        given = [name for name in ("users", "rps") if getattr(self, name) is not None]
        if len(given) != 1:
            raise_if(
                [
                    Problem(
                        "a search steps either users (closed model) or rps (open model)",
                        expected="exactly one of users and rps, each {from, step, ceiling}",
                        got=" and ".join(given) if given else "neither",
                        path=(),
                    )
                ]
            )
        steps = self.users
        if steps is not None:
            problems = [
                Problem(
                    "users come in whole numbers",
                    expected="a whole number of users",
                    got=f"{getattr(steps, attr):g}",
                    path=("users", "from" if attr == "from_" else attr),
                )
                for attr in ("from_", "step", "ceiling")
                if not float(getattr(steps, attr)).is_integer()
            ]
            if steps.ceiling > MAX_USERS:
                problems.append(
                    Problem(
                        "too many users",
                        expected=f"a ceiling of at most {MAX_USERS}",
                        got=f"{steps.ceiling:g}",
                        path=("users", "ceiling"),
                    )
                )
            raise_if(problems)
        levels = self.steps.levels()
        if len(levels) > MAX_SEARCH_STEPS:
            raise_if(
                [
                    Problem(
                        "too many steps",
                        expected=f"at most {MAX_SEARCH_STEPS} levels from 'from' to 'ceiling'",
                        got=f"{len(levels)} levels",
                        path=("rps" if self.rps is not None else "users", "step"),
                    )
                ]
            )
        return self

    @property
    def steps(self) -> SearchSteps:
        steps = self.users if self.users is not None else self.rps
        assert steps is not None
        return steps

    @property
    def duration(self) -> float:
        """Every step held, bounded by ``max_duration``."""
        full = len(self.steps.levels()) * self.hold
        return full if self.max_duration is None else min(full, self.max_duration)

    def _held(self) -> list[tuple[float, float]]:
        """(level, seconds held) of each step, cut at ``duration``."""
        out: list[tuple[float, float]] = []
        left = self.duration
        for level in self.steps.levels():
            if left <= 0:
                break
            out.append((level, min(self.hold, left)))
            left -= self.hold
        return out

    def stages(self) -> list[Stage]:
        if self.users is None:
            return []
        rate = self.spawn_rate or max(MIN_SPAWN_RATE, min(MAX_SPAWN_RATE, self.users.step))
        return [Stage(duration=d, users=int(u), spawn_rate=rate) for u, d in self._held()]

    def arrival(self) -> list[ArrivalStage]:
        if self.rps is None:
            return []
        return [ArrivalStage(duration=d, rps=r) for r, d in self._held()]


class DistributedLoad(_Model):
    """Spread the load over ``workers`` remote worker processes (``resilience worker
    --master HOST:PORT``, on this machine or others) joining this run's master; the run
    waits ``wait`` for them. Where the master listens is the command line's business
    (``--master-bind``; loopback by default), never the file's."""

    workers: int = Field(ge=1, le=1024)
    wait: Annotated[Duration, duration_between(1.0, HOUR)] = 120.0


class WriteSpec(_Model):
    """This request writes a record; lets the data-loss check read every acknowledged one back."""

    id_field: NonEmpty = "id"
    read_back: str
    headers: dict[str, str] | None = None
    """Headers of the read-back GETs (placeholders allowed); default: the writing request's."""
    # ``list`` stays last: after this line the name shadows the builtin in the class body.
    list: str | None = None

    @model_validator(mode="after")
    def _paths(self) -> WriteSpec:
        problems: list[Problem] = []
        try:
            parse_capture(self.id_field)
        except ValueProblem as problem:
            problems.append(_value_problem(problem, ("id_field",)))
        must = Problem(
            "read_back must be a GET path containing {id}",
            expected="a path like /orders/{id}, or {id} first when the id is the record's "
            "URL (id_field: header:Location)",
            got=describe(self.read_back),
            path=("read_back",),
        )
        if not self.read_back.startswith(("/", "{id}")):
            problems.append(must)
        else:
            try:
                template = Template.parse(self.read_back)
            except ValueProblem as problem:
                problems.append(_value_problem(problem, ("read_back",)))
            else:
                if "id" not in template.variables:
                    problems.append(must)
                elif template.variables - {"id"} or any(
                    p.kind != "var" for p in template.placeholders
                ):
                    problems.append(
                        Problem(
                            "read_back may only use the {id} placeholder",
                            expected="a path like /orders/{id}",
                            got=describe(self.read_back),
                            path=("read_back",),
                        )
                    )
        problems.extend(_header_problems(self.headers or {}, ("headers",)))
        if self.list is not None and self.id_field.lower().startswith("header:"):
            problems.append(
                Problem(
                    "list goes with an id read from the JSON body",
                    expected="no list with id_field header:..., or an id_field in the body",
                    got=f"list {self.list!r} with id_field {self.id_field!r}",
                    path=("list",),
                )
            )
        if self.list is not None and (not self.list.startswith("/") or "{" in self.list):
            problems.append(
                Problem(
                    "list must be a plain GET path",
                    expected="a path like /orders/ids",
                    got=describe(self.list),
                    path=("list",),
                )
            )
        raise_if(problems)
        return self


def _value_problem(problem: ValueProblem, path: KeyPath) -> Problem:
    return Problem(
        problem.message or "invalid value", expected=problem.expected, got=problem.got, path=path
    )


def _check_json(value: Any, path: KeyPath, depth: int = 0) -> list[Problem]:  # noqa: PLR0911 (a dispatch on the JSON value's type)
    """JSON-compatible data only (a YAML date or binary would fail at send time)."""
    if depth > _JSON_DEPTH_LIMIT:
        return [Problem("JSON body nested too deeply", "at most 32 levels", "more", path)]
    if value is None or isinstance(value, bool | int | str):
        return []
    if isinstance(value, float):
        if math.isfinite(value):
            return []
        return [Problem("not valid JSON", "a finite number", describe(value), path)]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _check_json(item, (*path, i), depth + 1)]
    if isinstance(value, dict):
        return [
            p for k, item in value.items() for p in _check_json(item, (*path, str(k)), depth + 1)
        ]
    return [
        Problem(
            "not valid JSON", "JSON data (strings, numbers, lists, mappings)", describe(value), path
        )
    ]


def _unquoted_placeholders(
    value: object, path: KeyPath, captured: AbstractSet[str]
) -> list[Problem]:
    """``{int:1:50}`` or ``{token}`` without quotes is YAML for a mapping of one key to null,
    which a JSON body would send as such: the placeholder was meant."""
    if isinstance(value, list):
        return [
            p
            for i, item in enumerate(value)
            for p in _unquoted_placeholders(item, (*path, i), captured)
        ]
    if not isinstance(value, dict):
        return []
    if len(value) == 1:
        ((key, item),) = value.items()
        name = str(key).strip()
        if item is None and (
            name in captured or name in BUILTIN_NAMES or name.startswith(("int:", "choice:"))
        ):
            return [
                Problem(
                    f'a placeholder without quotes is a YAML mapping, sent as {{"{name}": null}}',
                    expected=f'the placeholder in quotes: "{{{name}}}"',
                    got=f"{{{name}}} unquoted",
                    path=path,
                )
            ]
    return [
        p
        for key, item in value.items()
        for p in _unquoted_placeholders(item, (*path, str(key)), captured)
    ]


def _json_text(value: object) -> list[Problem]:
    """JSON text quoted into a string (``json: '{"a": 1}'``) would be sent as one JSON
    string: the data itself was meant."""
    if not isinstance(value, str) or value.strip()[:1] not in ("{", "["):
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    if not isinstance(parsed, dict | list):
        return []
    return [
        Problem(
            "json holds JSON text in a string, which would be sent as one JSON string",
            expected='the data itself: drop the quotes (json: {"amount": 5}; YAML reads JSON '
            "as it is)",
            got=describe(value),
            path=("json",),
        )
    ]


_NOT_IN_PATH = re.compile(r"[\x00-\x20\x7f#]")
"""What the HTTP client refuses in a request line (whitespace, control characters), and
'#', after which it sends nothing."""
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_CONTENT_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;.*)?$")
MAX_BODY_CHARS: Final = 1_000_000
BODY_KEYS: Final = ("json", "form", "body")
FormValue = str | int | float | bool


def _url_head(path: str) -> str | None:
    """The captured variable a path starts with (``{order_url}/items``), whose value is a
    URL or an absolute path sent as it is (on the target's host): None for other paths."""
    if not path.startswith("{") or path.startswith("{{"):
        return None
    end = path.find("}")
    name = path[1:end].strip() if end > 0 else ""
    return name if IDENTIFIER.match(name) and name not in BUILTIN_NAMES else None


def _header_problems(headers: dict[str, str], path: KeyPath) -> list[Problem]:
    """Header names are HTTP tokens; values are one-line templates (placeholders allowed)."""
    problems: list[Problem] = []
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            problems.append(
                Problem(
                    "not an HTTP header name",
                    expected="a header name of letters, digits and - (like X-Tenant-Id), "
                    "without spaces or ':'",
                    got=describe(name),
                    path=(*path, name),
                )
            )
            continue
        if "\n" in value or "\r" in value or "\x00" in value:
            problems.append(
                Problem(
                    "a header value holds a line break"
                    if "\x00" not in value
                    else "a header value holds a NUL character",
                    expected="one line",
                    got=describe(value),
                    path=(*path, name),
                )
            )
            continue
        try:
            Template.parse(value)
        except ValueProblem as problem:
            problems.append(_value_problem(problem, (*path, name)))
    return problems


class StepSpec(_Model):
    """One HTTP request: what ``on_start`` and ``setup`` steps are made of, and the base of
    a workload request. At most one body: ``json``, ``form`` or ``body`` (+ ``content_type``).
    """

    name: NonEmpty | None = None
    method: Annotated[Method, BeforeValidator(_upper)] = "GET"
    path: str
    json_body: Any = Field(default=None, alias="json")
    form: dict[str, FormValue] | None = None
    """An ``application/x-www-form-urlencoded`` body; string values may hold placeholders."""
    body: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    """A raw body (text, placeholders allowed), sent with ``content_type``."""
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    expect: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    capture: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _templates(self) -> StepSpec:  # noqa: PLR0912, PLR0915 (each part of a request, one branch)
        problems: list[Problem] = []
        if not self.path.startswith("/") and _url_head(self.path) is None:
            problems.append(
                Problem(
                    "a request path starts with /",
                    expected="a path like /catalog/items, or a captured URL first "
                    "({order_url} or {order_url}/items)",
                    got=describe(self.path),
                    path=("path",),
                )
            )
        elif found := _NOT_IN_PATH.search(self.path):
            char = found.group()
            what = {" ": "a space", "#": "'#'"}.get(char, f"the control character {char!r}")
            before = self.path[: found.start()]
            problems.append(
                Problem(
                    "a request path is sent as written: no spaces, control characters or '#'",
                    expected="%20 for a space, %23 for '#' (like /items?q=red%20shirt)",
                    got=f"{what} after {('...' if len(before) > 40 else '') + before[-40:]!r}",
                    path=("path",),
                )
            )
        else:
            try:
                Template.parse(self.path)
            except ValueProblem as problem:
                problems.append(_value_problem(problem, ("path",)))
        bodies = [key for key in BODY_KEYS if self._body_of(key) is not None]
        if len(bodies) > 1:
            problems.append(
                Problem(
                    "a request has at most one body",
                    expected="one of json, form and body",
                    got=" and ".join(bodies),
                    path=(bodies[1],),
                )
            )
        json_problems = _check_json(self.json_body, ("json",)) or _json_text(self.json_body)
        problems.extend(json_problems)
        if not json_problems:
            for path, text in iter_json_strings(self.json_body, ("json",)):
                try:
                    Template.parse(text)
                except ValueProblem as problem:
                    problems.append(_value_problem(problem, path))
        for field_name, value in (self.form or {}).items():
            if isinstance(value, str):
                try:
                    Template.parse(value)
                except ValueProblem as problem:
                    problems.append(_value_problem(problem, ("form", field_name)))
            elif isinstance(value, float) and not math.isfinite(value):
                problems.append(
                    Problem(
                        "not a form value", "a finite number", describe(value), ("form", field_name)
                    )
                )
        if self.body is not None:
            try:
                Template.parse(self.body)
            except ValueProblem as problem:
                problems.append(_value_problem(problem, ("body",)))
        if self.content_type is not None:
            if self.body is None:
                problems.append(
                    Problem(
                        "content_type goes with a raw body",
                        expected="content_type together with body (json and form set their own)",
                        got=f"content_type {self.content_type!r} without body",
                        path=("content_type",),
                    )
                )
            elif not _CONTENT_TYPE.match(self.content_type.strip()) or any(
                c in self.content_type for c in "\r\n"
            ):
                problems.append(
                    Problem(
                        "not a media type",
                        expected="a media type like text/plain or application/xml; charset=utf-8",
                        got=describe(self.content_type),
                        path=("content_type",),
                    )
                )
        problems.extend(_header_problems(self.headers, ("headers",)))
        for variable, source in self.capture.items():
            if not IDENTIFIER.match(variable) or variable in BUILTIN_NAMES:
                problems.append(
                    Problem(
                        f"bad capture variable name {variable!r}",
                        expected="an identifier other than uuid and seq (like order_id)",
                        got=repr(variable),
                        path=("capture", variable),
                    )
                )
            try:
                parsed = parse_capture(source)
            except ValueProblem as problem:
                problems.append(_value_problem(problem, ("capture", variable)))
                continue
            if self.method == "HEAD" and parsed.from_body:
                problems.append(
                    Problem(
                        "a HEAD answer has no body to capture from",
                        expected="a response header (header:Location)",
                        got=describe(source),
                        path=("capture", variable),
                    )
                )
        if self.method == "HEAD":
            for key in BODY_KEYS:
                if self._body_of(key) is not None:
                    problems.append(
                        Problem(
                            "a HEAD request has no body",
                            expected="no json, form or body with method HEAD",
                            got=f"{key} with method HEAD",
                            path=(key,),
                        )
                    )
        raise_if(problems)
        if self.name is None:
            self.name = f"{self.method} {self.path}"
        return self

    def _body_of(self, key: str) -> Any:
        return {"json": self.json_body, "form": self.form, "body": self.body}[key]

    @property
    def endpoint(self) -> str:
        """The endpoint name used in stats, SLOs and findings (``name`` or ``METHOD path``)."""
        return self.name or f"{self.method} {self.path}"

    @property
    def path_template(self) -> Template:
        return Template.parse(self.path)

    def variable_sources(self) -> dict[str, KeyPath]:
        """Captured variables this request needs, each with the first key that uses it."""
        found: dict[str, KeyPath] = {}

        def add(text: str, path: KeyPath) -> None:
            for name in sorted(Template.parse(text).variables):
                found.setdefault(name, path)

        add(self.path, ("path",))
        for path, text in iter_json_strings(self.json_body, ("json",)):
            add(text, path)
        for key, value in (self.form or {}).items():
            if isinstance(value, str):
                add(value, ("form", key))
        if self.body is not None:
            add(self.body, ("body",))
        for key, value in self.headers.items():
            add(value, ("headers", key))
        return found

    def variables_used(self) -> frozenset[str]:
        """Captured variables this request needs (path, body and headers)."""
        return frozenset(self.variable_sources())

    def is_ok(self, status: int) -> bool:
        """Whether a response status counts as OK (``expect``, or any 2xx/3xx)."""
        if self.expect:
            return status in self.expect
        return 200 <= status < 400


class RequestSpec(StepSpec):
    """One kind of request in the workload mix; ``name`` is its endpoint name everywhere."""

    weight: int = Field(default=1, ge=1, le=1_000_000)
    write: WriteSpec | None = None
    depends_on: list[Annotated[str, AfterValidator(_proxy_name)]] | None = None
    """The proxies this endpoint's requests pass (the cascade's footprint without traces)."""

    @model_validator(mode="after")
    def _head_write(self) -> RequestSpec:
        if (
            self.method == "HEAD"
            and self.write is not None
            and parse_capture(self.write.id_field).from_body
        ):
            raise_if(
                [
                    Problem(
                        "a HEAD answer has no body to read the written id from",
                        expected="id_field: header:Location (or another response header)",
                        got=describe(self.write.id_field),
                        path=("write", "id_field"),
                    )
                ]
            )
        return self


class Wait(_Model):
    """Think time between one user's requests, uniform in [min, max]."""

    min: UpToAnHour = 0.0
    max: UpToAnHour = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> Wait:
        if self.min > self.max:
            raise_if(
                [
                    Problem(
                        "wait.min is above wait.max",
                        expected=f"max of at least {format_duration(self.min)}",
                        got=format_duration(self.max),
                        path=("max",),
                    )
                ]
            )
        return self


def _identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueProblem("a Python class name", describe(value))
    return value


class Workload(_Model):
    """What each simulated user does: a weighted request mix, or the user's own Locust file.

    ``setup`` steps run once per load worker before any request (their captures are shared
    by every user and every scheduled request); ``on_start`` steps run once per user before
    its weighted loop (closed model only). Captures of both feed the requests' paths,
    bodies and headers.
    """

    requests: list[RequestSpec] | None = Field(default=None, min_length=1)
    on_start: list[StepSpec] = Field(default_factory=list, max_length=100)
    setup: list[StepSpec] = Field(default_factory=list, max_length=100)
    wait: Wait = Field(default_factory=Wait)
    locustfile: NonEmpty | None = None
    user_classes: list[Annotated[str, AfterValidator(_identifier)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        problems: list[Problem] = []
        if (self.requests is None) == (self.locustfile is None):
            problems.append(
                Problem(
                    "give exactly one of requests and locustfile",
                    expected="either a requests list or a locustfile path",
                    got="both" if self.requests is not None else "neither",
                    path=(),
                )
            )
        if self.user_classes and self.locustfile is None:
            problems.append(
                Problem(
                    "user_classes only applies with a locustfile",
                    expected="user_classes together with locustfile",
                    got=f"user_classes without a locustfile ({', '.join(self.user_classes)})",
                    path=("user_classes",),
                )
            )
        for key in ("on_start", "setup"):
            if getattr(self, key) and self.locustfile is not None:
                problems.append(
                    Problem(
                        f"{key} only applies to a requests list",
                        expected="a locustfile's own on_start (Locust's) instead",
                        got=f"{key} together with a locustfile",
                        path=(key,),
                    )
                )
        problems.extend(self._step_variables())
        requests = self.requests or []
        seen: dict[str, int] = {}
        captured = self.step_captures() | {name for r in requests for name in r.capture}
        for key, specs in (
            ("setup", self.setup),
            ("on_start", self.on_start),
            ("requests", requests),
        ):
            for i, spec in enumerate(specs):
                problems.extend(_unquoted_placeholders(spec.json_body, (key, i, "json"), captured))
        for i, request in enumerate(requests):
            endpoint = request.endpoint
            if endpoint in seen:
                problems.append(
                    Problem(
                        f"two requests share the endpoint name {endpoint!r}",
                        expected="unique names (set 'name' on one of them)",
                        got=f"the same name as requests[{seen[endpoint]}]",
                        path=("requests", i, "name" if request.name else "path"),
                    )
                )
            seen.setdefault(endpoint, i)
            if request.write is not None and request.write.headers:
                problems.extend(self._readback_variables(i, request.write.headers))
            for name, where in sorted(request.variable_sources().items()):
                if name in captured:
                    continue
                problems.append(
                    Problem(
                        f"placeholder {{{name}}} is not captured by any request or step",
                        expected=(
                            f"a request or step with capture: {{{name}: <response field>}}"
                            + (f" (captured: {', '.join(sorted(captured))})" if captured else "")
                            + f", or {{{{{name}}}}} for the literal text {{{name}}}"
                        ),
                        got=f"{{{name}}}",
                        path=("requests", i, *where),
                    )
                )
        from_steps = self.step_captures()
        if (
            requests
            and not problems
            and all(set(r.variable_sources()) - from_steps for r in requests)
        ):
            problems.append(
                Problem(
                    "every request needs a variable that only another request captures, so "
                    "none can be sent first",
                    expected="at least one request without captured variables, or a setup or "
                    "on_start step capturing what the first one needs",
                    got=", ".join(
                        f"{r.endpoint} needs {', '.join(sorted(set(r.variable_sources())))}"
                        for r in requests[:3]
                    )
                    + (", ..." if len(requests) > 3 else ""),
                    path=("requests",),
                )
            )
        raise_if(problems)
        return self

    def _step_variables(self) -> list[Problem]:
        """Steps run in order (setup, then on_start): each may use what earlier ones captured."""
        problems: list[Problem] = []
        known: set[str] = set()
        for key in ("setup", "on_start"):
            for i, step in enumerate(getattr(self, key)):
                for name, where in sorted(step.variable_sources().items()):
                    if name not in known:
                        problems.append(
                            Problem(
                                f"placeholder {{{name}}} is not captured by an earlier step",
                                expected="a variable captured by an earlier setup or on_start "
                                "step (steps run before any request)"
                                + (
                                    f" (captured so far: {', '.join(sorted(known))})"
                                    if known
                                    else ""
                                ),
                                got=f"{{{name}}}",
                                path=(key, i, *where),
                            )
                        )
                known |= set(step.capture)
        return problems

    def _readback_variables(self, index: int, headers: dict[str, str]) -> list[Problem]:
        """The read-back runs after the load, with only the steps' captures at hand."""
        known = self.step_captures()
        problems: list[Problem] = []
        for key, value in headers.items():
            for name in sorted(Template.parse(value).variables - known):
                problems.append(
                    Problem(
                        f"placeholder {{{name}}} in a read-back header is not captured by a "
                        "setup or on_start step",
                        expected="a variable a step captures (the read-back runs the steps "
                        "once, after the load)"
                        + (f" (steps capture: {', '.join(sorted(known))})" if known else ""),
                        got=f"{{{name}}}",
                        path=("requests", index, "write", "headers", key),
                    )
                )
        return problems

    def step_captures(self) -> frozenset[str]:
        """Variables the setup and on_start steps capture."""
        return frozenset(name for step in (*self.setup, *self.on_start) for name in step.capture)

    def endpoints(self) -> list[str]:
        return [r.endpoint for r in self.requests or []]

    def request(self, endpoint: str) -> RequestSpec | None:
        """The request whose endpoint name is ``endpoint``."""
        return next((r for r in self.requests or [] if r.endpoint == endpoint), None)


class Load(_Model):
    """The load shape (preset, closed-model stages, or open-model arrival rate) and workload."""

    preset: Preset | None = None
    stages: list[Stage] | None = Field(default=None, min_length=1, max_length=1000)
    arrival_rate: list[ArrivalStage] | None = Field(default=None, min_length=1, max_length=1000)
    search: LoadSearch | None = None
    """A capacity search (stepped users or requests per second, stopped once the SLOs
    broke); instead of preset, stages or arrival_rate."""
    workers: int | None = Field(default=None, ge=1, le=1024)
    distributed: DistributedLoad | None = None
    client_timeout: ClientTimeout = 10.0
    max_in_flight: int = Field(default=1000, ge=1, le=MAX_RPS)
    workload: Workload
    trace_sample: Percent = 0.01
    slow_threshold: ClientTimeout = 1.0
    warmup: UpToAnHour = 2.0
    """Seconds at the start of the load left out of every phase: cold caches, connection
    set-up and the spawn of users would otherwise pass for baseline behaviour."""
    spike: Literal["auto", "none"] | Annotated[int, Field(ge=1, le=1000)] = "auto"
    """Which stage is a load spike (phases baseline / spike / recovery in a run without
    faults): ``auto`` finds it (experiment/spike.py), ``none`` makes none, a number names
    the stage (1 for the first)."""

    @model_validator(mode="after")
    def _one_shape(self) -> Load:
        given = [
            name
            for name in ("preset", "stages", "arrival_rate", "search")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise_if(
                [
                    Problem(
                        "give exactly one of preset, stages, arrival_rate and search"
                        + (" (in a profile, set the others to null)" if given else ""),
                        expected="one load shape",
                        got=" and ".join(given) if given else "none of them",
                        path=(),
                    )
                ]
            )
        if self.model == "open" and self.workload.locustfile is not None:
            raise_if(
                [
                    Problem(
                        "a locustfile runs its own Locust users, and the open model "
                        f"({self.model_shape_key()}) has no users",
                        expected="stages, a preset or a search by users with a locustfile "
                        "(or a requests list with the open model)",
                        got=f"a locustfile with {self.model_shape_key()}",
                        path=(self.model_shape_key(),),
                    )
                ]
            )
        if self.model == "open" and self.workload.on_start:
            raise_if(
                [
                    Problem(
                        "on_start runs once per user, and the open model (arrival_rate) has "
                        "no users",
                        expected="setup (run once, its captures shared by every request)",
                        got="on_start with arrival_rate",
                        path=("workload", "on_start"),
                    )
                ]
            )
        if isinstance(self.spike, int):
            count = len(self.levels())
            if not 1 < self.spike < count:
                raise_if(
                    [
                        Problem(
                            "the spike must be a stage with a stage before it (the baseline) "
                            "and one after it (the recovery)",
                            expected=f"a stage number from 2 to {count - 1}"
                            if count > 2
                            else "a load shape of at least three stages",
                            got=f"{self.spike} of {count} stage(s)",
                            path=("spike",),
                        )
                    ]
                )
        length = self.duration
        if not MIN_LOAD <= length <= MAX_LOAD:
            key = "preset" if self.preset is not None else self.model_shape_key()
            raise_if(
                [
                    Problem(
                        "the load is too long" if length > MAX_LOAD else "the load is too short",
                        expected=f"stages adding up to {format_duration(MIN_LOAD)} to "
                        f"{format_duration(MAX_LOAD)} (7 days)",
                        got=format_duration(length),
                        path=(key,),
                    )
                ]
            )
        return self

    def model_shape_key(self) -> str:
        """The key that holds the load shape: preset, stages, arrival_rate or search."""
        if self.arrival_rate is not None:
            return "arrival_rate"
        if self.search is not None:
            return "search"
        return "stages" if self.stages is not None else "preset"

    @property
    def model(self) -> Literal["closed", "open"]:
        """``open`` for arrival_rate or a search by rps (requests per second), ``closed``
        for users."""
        if self.arrival_rate is not None:
            return "open"
        return "open" if self.search is not None and self.search.rps is not None else "closed"

    def resolve_arrival(self) -> list[ArrivalStage]:
        """The open-model stages, with a search by rps expanded; empty for the closed model."""
        if self.arrival_rate is not None:
            return list(self.arrival_rate)
        return self.search.arrival() if self.search is not None else []

    def resolve_stages(self) -> list[Stage]:
        """The closed-model stages, with a preset or a search by users expanded; empty for
        the open model."""
        if self.stages is not None:
            return list(self.stages)
        if self.search is not None:
            return self.search.stages()
        if self.preset is not None:
            return [
                Stage(duration=d, users=u, spawn_rate=r) for d, u, r in PRESET_STAGES[self.preset]
            ]
        return []

    def levels(self) -> list[StageLevel]:
        """Each stage's length and load (users, or requests per second), for the spike rule."""
        if self.arrival_rate is not None:
            return [StageLevel(s.duration, s.rps) for s in self.arrival_rate]
        return [StageLevel(s.duration, s.users, s.spawn_rate) for s in self.resolve_stages()]

    def find_spike(self) -> Spike | None:
        """The load spike of this shape (``load.spike``), or None."""
        return find_spike(self.levels(), self.spike)

    @property
    def duration(self) -> float:
        """Seconds from the start of the load to its end."""
        if self.model == "open":
            return sum(s.duration for s in self.resolve_arrival())
        return sum(s.duration for s in self.resolve_stages())


# ---------------------------------------------------------------------------- faults


class FaultAction(_Model):
    """What a fault does and where: the keys an experiment's fault and a game day's named
    fault share. With ``duration`` it heals by itself after it (an experiment's always has
    one; a game day's may not: it lasts until healed by hand)."""

    proxy: NonEmpty
    type: FaultType
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: Percent = 1.0
    attributes: dict[str, int | float | str] = Field(default_factory=dict)
    duration: PositiveDuration | None = None

    @model_validator(mode="after")
    def _attributes(self) -> Self:
        converted, problems = normalize_attributes(self.type, self.attributes)
        if self.type in ("outage", "flap") and self.toxicity != 1.0:
            problems.append(
                Problem(
                    f"toxicity has no meaning for {self.type} (a disabled proxy refuses every "
                    "connection)",
                    expected="no toxicity (or 100%)",
                    got=format_percent(self.toxicity),
                    path=("toxicity",),
                )
            )
        if self.duration is not None:
            problems.extend(_step_problems(self.type, self.duration, converted))
        raise_if(problems)
        self.attributes = converted
        return self

    def describe(self) -> str:
        attrs = ", ".join(f"{k}={v}" for k, v in self.attributes.items())
        return f"{self.type} on {self.proxy}" + (f" ({attrs})" if attrs else "")


def _step_problems(
    type: str, duration: float, attributes: dict[str, int | float | str]
) -> list[Problem]:
    """A time-driven fault (flaky, flap) may not take more than ``MAX_FAULT_STEPS`` steps."""
    problems: list[Problem] = []
    reroll = float(attributes.get("reroll", 1.0))
    if type == "flaky" and reroll > 0 and duration / reroll > MAX_FAULT_STEPS:
        problems.append(
            Problem(
                f"a flaky fault re-drawn more than {MAX_FAULT_STEPS} times",
                expected="a longer reroll or a shorter fault",
                got=f"{format_duration(duration)} / {format_duration(reroll)}",
                path=("attributes", "reroll"),
            )
        )
    period = float(attributes.get("period", 10.0))
    if type == "flap" and duration / period > MAX_FAULT_STEPS:
        problems.append(
            Problem(
                f"a flap of more than {MAX_FAULT_STEPS} periods",
                expected="a longer period or a shorter fault",
                got=f"{format_duration(duration)} / {format_duration(period)}",
                path=("attributes", "period"),
            )
        )
    return problems


class Fault(FaultAction):
    """One Toxiproxy action on the experiment clock: from ``at`` for ``duration``."""

    at: Duration
    duration: PositiveDuration

    @property
    def end(self) -> float:
        return self.at + self.duration

    @property
    def toxic(self) -> str | None:
        """The Toxiproxy toxic type behind this fault (None for proxy-level faults)."""
        return FAULT_TYPES[self.type].toxic


# ---------------------------------------------------------------------------- SLOs


class Thresholds(_Model):
    """Limits on one phase or endpoint; latencies in seconds, error rate a fraction.

    Latencies need a unit (``p95: 500`` would be 500 seconds) and may not decrease:
    p50 <= p95 <= p99 <= max, for those given.
    """

    p50: Latency | None = None
    p95: Latency | None = None
    p99: Latency | None = None
    max: Latency | None = None
    error_rate: Percent | None = None
    min_rps: float | None = Field(default=None, ge=0, le=MAX_RPS)

    @model_validator(mode="after")
    def _percentiles_ordered(self) -> Thresholds:
        problems: list[Problem] = []
        below: tuple[str, float] | None = None
        for name in ("p50", "p95", "p99", "max"):
            value = getattr(self, name)
            if value is None:
                continue
            if below is not None and value < below[1]:
                problems.append(
                    Problem(
                        f"{name} is below {below[0]} (a higher percentile cannot be faster)",
                        expected=f"{name} of at least {format_duration(below[1])} "
                        f"(the {below[0]} given)",
                        got=format_duration(value),
                        path=(name,),
                    )
                )
            else:
                below = (name, value)
        raise_if(problems)
        return self


class PhaseSlo(Thresholds):
    """A phase's limits, overall and per endpoint name."""

    endpoints: dict[str, Thresholds] = Field(default_factory=dict)


class RecoverySlo(PhaseSlo):
    """Recovery phase limits, and the recovery budget (``within``)."""

    within: Duration | None = None


class Capacity(_Model):
    """The load a rising load (a stress ramp, a search) must hold with its SLOs met: the
    run's verdict is its breaking point against these (docs/findings.md)."""

    rps: float | None = Field(default=None, gt=0, le=MAX_RPS)
    """Requests per second served (answered OK) with every SLO held."""
    users: int | None = Field(default=None, ge=1, le=MAX_USERS)
    """Users in flight (closed model) with every SLO held."""

    @model_validator(mode="after")
    def _something(self) -> Capacity:
        if self.rps is None and self.users is None:
            raise_if(
                [
                    Problem(
                        "a capacity target names the load to hold",
                        expected="rps (requests per second served) and/or users",
                        got="neither",
                        path=(),
                    )
                ]
            )
        return self


class Slo(_Model):
    """Service-level objectives per phase, and the capacity a rising load must reach."""

    baseline: PhaseSlo | None = None
    fault: PhaseSlo | None = None
    recovery: RecoverySlo | None = None
    capacity: Capacity | None = None

    def phases(self) -> dict[str, PhaseSlo]:
        return {
            name: slo
            for name, slo in (
                ("baseline", self.baseline),
                ("fault", self.fault),
                ("recovery", self.recovery),
            )
            if slo is not None
        }


# ---------------------------------------------------------------------------- checks


class Check(_Model):
    """A PromQL expression evaluated over a phase (or the whole run) against ``expect``."""

    name: NonEmpty
    promql: NonEmpty
    phase: CheckPhase
    expect: Expectation
    severity: Severity = "critical"


class Guard(_Model):
    """A continuous condition that must hold; the run is aborted (faults healed) if it does not.

    ``expect`` is what must HOLD; the guard trips once it has failed for ``for`` seconds,
    ignoring the first ``grace`` seconds of the run.
    """

    name: str = ""
    promql: NonEmpty | None = None
    load: LoadMetric | None = None
    endpoint: NonEmpty | None = None
    expect: Expectation
    for_: Duration = Field(default=0.0, alias="for")
    grace: Duration = 0.0

    @model_validator(mode="after")
    def _source(self) -> Guard:
        problems: list[Problem] = []
        if (self.promql is None) == (self.load is None):
            problems.append(
                Problem(
                    "a guard watches exactly one of promql and load",
                    expected="promql: <expression> or load: error_rate|p95|p99|rps",
                    got="both" if self.promql is not None else "neither",
                )
            )
        if self.load in ("p95", "p99") and self.expect.unit != "duration":
            problems.append(
                Problem(
                    f"a {self.load} guard needs a latency with a unit",
                    expected="a condition like '< 500ms' or '< 2s'",
                    got=f"{str(self.expect)!r} (a bare number would be seconds)",
                    path=("expect",),
                )
            )
        if self.endpoint is not None and self.load is None:
            problems.append(
                Problem(
                    "endpoint only applies to load guards",
                    expected="endpoint together with load",
                    got=f"endpoint {self.endpoint!r} with promql",
                    path=("endpoint",),
                )
            )
        raise_if(problems)
        if not self.name:
            where = f" {self.endpoint}" if self.endpoint else ""
            self.name = self.promql if self.promql else f"load {self.load}{where}"
        return self


# ---------------------------------------------------------------------------- settings


class DetectorSettings(_Model):
    """Per-detector switches; ``None`` leaves the detector's own default. ``params`` are
    checked against the detector's declaration (``detector_params``) by ``Experiment``,
    which knows the kind."""

    enabled: bool = True
    severity: Severity | None = None
    fails_run: bool | None = None
    params: dict[str, float | int | str] = Field(default_factory=dict)


class RecoverySettings(_Model):
    """How recovery is measured: the baseline band (median ± k·MAD) and how long to wait."""

    band_k: float = Field(default=3.0, gt=0, le=100)
    stable_seconds: int = Field(default=5, ge=1, le=3600)
    max_wait: Annotated[Duration, duration_between(0.0, HOUR, above=True)] = 60.0


# ---------------------------------------------------------------------------- parts

ObserverTimeout = Annotated[Duration, duration_between(0.0, 120.0, above=True)]


def _headers(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueProblem("HTTP header names (letters, digits, -)", describe(name))
        if "\r" in text or "\n" in text or "\x00" in text:
            raise ValueProblem(
                f"a header value on one line (header {name!r})", "a value with a line break"
            )
    return value


Headers = Annotated[dict[str, str], AfterValidator(_headers)]


class BasicAuth(_Model):
    """HTTP basic credentials; write the password as ``${env:NAME}``."""

    username: NonEmpty
    password: str


class Auth(_Model):
    """Credentials for a part: exactly one of ``basic`` and ``bearer``."""

    basic: BasicAuth | None = None
    bearer: NonEmpty | None = None

    @model_validator(mode="after")
    def _one(self) -> Auth:
        if (self.basic is None) == (self.bearer is None):
            raise_if(
                [
                    Problem(
                        "give exactly one of basic and bearer",
                        expected="basic: {username, password} or bearer: <token>",
                        got="both" if self.basic is not None else "neither",
                    )
                ]
            )
        return self


class Tls(_Model):
    """How to check an https part: ``verify`` (default on), a CA bundle, a client certificate.

    Relative paths are relative to the experiment file."""

    verify: bool = True
    ca_file: NonEmpty | None = None
    cert_file: NonEmpty | None = None
    key_file: NonEmpty | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Tls:
        problems: list[Problem] = []
        if self.key_file is not None and self.cert_file is None:
            problems.append(
                Problem(
                    "key_file needs cert_file (the client certificate it belongs to)",
                    expected="cert_file together with key_file",
                    got="key_file alone",
                    path=("key_file",),
                )
            )
        if self.ca_file is not None and not self.verify:
            problems.append(
                Problem(
                    "ca_file has no use when verify is false",
                    expected="verify: true with ca_file, or no ca_file",
                    got="verify: false and a ca_file",
                    path=("ca_file",),
                )
            )
        raise_if(problems)
        return self


class HttpPart(_Model):
    """A part of the rig the user runs, reached over HTTP(S): where, and how to talk to it."""

    url: PartUrl
    headers: Headers = Field(default_factory=dict)
    auth: Auth | None = None
    tls: Tls | None = None
    proxy: PartUrl | None = None
    """An HTTP(S) proxy to reach the part through (environment proxies are not used)."""
    timeout: ObserverTimeout = 5.0

    @model_validator(mode="after")
    def _one_authorization(self) -> HttpPart:
        header = next((k for k in self.headers if k.lower() == "authorization"), None)
        if header is not None and self.auth is not None:
            raise_if(
                [
                    Problem(
                        "credentials given twice (an Authorization header and auth)",
                        expected="either auth: or an Authorization header",
                        got="both",
                        path=("headers", header),
                    )
                ]
            )
        return self

    def addresses(self) -> list[tuple[KeyPath, str]]:
        """(key path, URL) of every address this part makes us connect to."""
        found: list[tuple[KeyPath, str]] = [(("url",), self.url)]
        if self.proxy is not None:
            found.append((("proxy",), self.proxy))
        return found


TraceKind = Literal["jaeger", "tempo"]


class TracesPart(HttpPart):
    """A trace backend that serves OTLP JSON by trace id: Jaeger (API v3) or Tempo."""

    kind: TraceKind = "jaeger"
    api: Literal["v1", "v2", "v3"] | None = None
    """Tempo's API: ``v1`` (``/api/traces/{id}``, the default) or ``v2``
    (``/api/v2/traces/{id}``); Jaeger's is ``v3``."""

    @model_validator(mode="after")
    def _api_of_kind(self) -> TracesPart:
        allowed = {"jaeger": ("v3",), "tempo": ("v1", "v2")}[self.kind]
        if self.api is not None and self.api not in allowed:
            raise_if(
                [
                    Problem(
                        f"{self.kind} has no API {self.api}",
                        expected=" or ".join(allowed),
                        got=self.api,
                        path=("api",),
                    )
                ]
            )
        return self


class Observe(_Model):
    """How the run observes the target: its own metrics for the stack's Prometheus to
    scrape (``scrape``), where its traces are seen (``trace_ui``), and the user's own
    Prometheus and trace backend (each started locally by the stack when not given)."""

    scrape: list[ScrapeJob] = Field(default_factory=list, max_length=100)
    trace_ui: Annotated[str, AfterValidator(_trace_ui_url)] | None = None
    """The trace UI's page of one trace: reports link trace ids to it (default: the stack's
    Jaeger UI). Only a link, never fetched, so its host is not judged."""
    prometheus: HttpPart | None = None
    traces: TracesPart | None = None

    @model_validator(mode="after")
    def _unique(self) -> Observe:
        seen: dict[str, int] = {}
        problems: list[Problem] = []
        for i, job in enumerate(self.scrape):
            if job.job in seen:
                problems.append(
                    Problem(
                        f"two scrape jobs named {job.job!r}",
                        expected="unique job names",
                        got=f"the same name as scrape[{seen[job.job]}]",
                        path=("scrape", i, "job"),
                    )
                )
            seen.setdefault(job.job, i)
        raise_if(problems)
        return self


class ToxiproxyPart(_Model):
    """The user's own Toxiproxy (its HTTP API); the stack's is started when not given."""

    url: PartUrl
    timeout: ObserverTimeout = 3.0


class Safety(_Model):
    """Where traffic may go. Off-loopback hosts (target, parts, proxies) must be listed."""

    allow_hosts: list[Annotated[str, AfterValidator(_allow_host)]] = Field(
        default_factory=list, max_length=100
    )


# ---------------------------------------------------------------------------- experiment


class Experiment(_Model):
    """One experiment: load, faults on a timeline, and what must hold."""

    name: Slug
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    target: Target | None = None
    proxies: list[ProxyDef] = Field(default_factory=list)
    shop: ShopSettings | None = None
    observe: Observe | None = None
    toxiproxy: ToxiproxyPart | None = None
    safety: Safety | None = None
    load: Load
    faults: list[Fault] = Field(default_factory=list)
    slo: Slo = Field(default_factory=Slo)
    checks: list[Check] = Field(default_factory=list)
    guards: list[Guard] = Field(default_factory=list)
    detectors: dict[DetectorKind, DetectorSettings] = Field(default_factory=dict)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)
    profiles: dict[Slug, dict[str, Any]] = Field(default_factory=dict)

    _source: Path | None = PrivateAttr(default=None)
    _profile: str | None = PrivateAttr(default=None)
    _env: EnvRecord = PrivateAttr(default_factory=EnvRecord)
    _warnings: list[ErrorDetail] = PrivateAttr(default_factory=list)
    _locator: Locator | None = PrivateAttr(default=None)
    """Gives a problem found after loading its line in the file (set by the loader)."""

    @model_validator(mode="after")
    def _cross_checks(self) -> Experiment:  # noqa: PLR0912 (every cross-field rule of the file, each one branch)
        problems: list[Problem] = []
        if self.target is not None and self.shop is not None:
            problems.append(
                Problem(
                    "shop settings apply only to the built-in shop",
                    expected="no 'shop' key when a target is given",
                    got=f"a shop section with target {self.target.url}",
                    path=("shop",),
                )
            )
        for kind, settings in self.detectors.items():
            problems += [
                p.at(("detectors", kind, "params")) for p in param_problems(kind, settings.params)
            ]
        names: dict[str, int] = {}
        for i, proxy in enumerate(self.proxies):
            if proxy.name in names:
                problems.append(
                    Problem(
                        f"two proxies named {proxy.name!r}",
                        expected="unique proxy names",
                        got=f"the same name as proxies[{names[proxy.name]}]",
                        path=("proxies", i, "name"),
                    )
                )
            names.setdefault(proxy.name, i)
        problems += self._unknown_proxies(own_target=self.target is not None)
        end = self.total_duration
        for i, fault in enumerate(self.faults):
            if fault.at >= end:
                problems.append(
                    Problem(
                        "fault starts after the load has ended",
                        expected=f"at before the load ends at {format_duration(end)}",
                        got=format_duration(fault.at),
                        path=("faults", i, "at"),
                    )
                )
            elif fault.end > end:
                problems.append(
                    Problem(
                        "fault is still active when the load ends (no recovery to measure)",
                        expected=f"at + duration <= {format_duration(end)} (the load's end)",
                        got=f"{format_duration(fault.at)} + {format_duration(fault.duration)}"
                        f" = {format_duration(fault.end)}",
                        path=("faults", i, "duration"),
                    )
                )
        if self.faults and isinstance(self.load.spike, int):
            problems.append(
                Problem(
                    "a run with faults is phased by its faults, so no stage can be its spike",
                    expected="load.spike: auto or none (or no faults)",
                    got=f"load.spike: {self.load.spike} with {len(self.faults)} fault(s)",
                    path=("load", "spike"),
                )
            )
        endpoints = self.endpoints()
        if self.load.workload.requests is not None:
            for phase, slo in self.slo.phases().items():
                for endpoint in slo.endpoints:
                    if endpoint not in endpoints:
                        problems.append(
                            Problem(
                                "SLO names an unknown endpoint",
                                expected=f"one of the request names: {', '.join(endpoints)}",
                                got=repr(endpoint),
                                path=("slo", phase, "endpoints", endpoint),
                            )
                        )
            for i, guard in enumerate(self.guards):
                if guard.endpoint is not None and guard.endpoint not in endpoints:
                    problems.append(
                        Problem(
                            "guard names an unknown endpoint",
                            expected=f"one of the request names: {', '.join(endpoints)}",
                            got=repr(guard.endpoint),
                            path=("guards", i, "endpoint"),
                        )
                    )
        problems.extend(self._search_problems())
        for name, overlay in self.profiles.items():
            if "profiles" in overlay:
                problems.append(
                    Problem(
                        "a profile cannot define profiles",
                        expected="profile keys other than 'profiles'",
                        got="a 'profiles' key",
                        path=("profiles", name, "profiles"),
                    )
                )
        raise_if(problems)
        return self

    def _search_problems(self) -> list[Problem]:
        """A capacity search stops when the SLOs break: it needs some, and no faults (a
        fault would be taken for the target's limit)."""
        if self.load.search is None:
            return []
        problems: list[Problem] = []
        if self.faults:
            problems.append(
                Problem(
                    "a capacity search runs without faults (a fault would pass for the "
                    "target's limit)",
                    expected="no faults with load.search",
                    got=f"{len(self.faults)} fault(s)",
                    path=("faults",),
                )
            )
        baseline = self.slo.baseline
        judged = ("p50", "p95", "p99", "max", "error_rate")
        if baseline is None or not (
            any(getattr(baseline, k) is not None for k in judged)
            or any(getattr(t, k) is not None for t in baseline.endpoints.values() for k in judged)
        ):
            problems.append(
                Problem(
                    "a capacity search stops once the SLOs break, and none are given",
                    expected="slo.baseline with a latency percentile or error_rate "
                    "(the whole target or an endpoint)",
                    got="no slo.baseline" if baseline is None else "no latency or error limit",
                    path=("slo", "baseline") if baseline is not None else ("load", "search"),
                )
            )
        return problems

    @model_validator(mode="after")
    def _hosts_allowed(self, info: ValidationInfo) -> Experiment:
        """Traffic stays on loopback unless the host is listed (``safety.allow_hosts``, or
        ``allow_hosts`` in the validation context: the CLI's ``--allow-host``)."""
        problems: list[Problem] = []
        context = info.context if isinstance(info.context, dict) else {}
        allowed = self.allowed_hosts(context.get("allow_hosts", ()))
        for path, url in self.addresses():
            host = url_host(url)
            if not is_loopback(host) and host not in allowed:
                problems.append(
                    Problem(
                        f"host {host!r} is off loopback and not allowed",
                        expected=allowed_hosts_hint(host, allowed),
                        got=url,
                        path=path,
                    )
                )
        raise_if(problems)
        return self

    # -- computed helpers

    def given_parts(self) -> dict[str, HttpPart | ToxiproxyPart | None]:
        """The user's own parts named in the file (None: the stack's)."""
        observe = self.observe or Observe()
        return {
            "toxiproxy": self.toxiproxy,
            "prometheus": observe.prometheus,
            "traces": observe.traces,
        }

    def allowed_hosts(self, extra: Iterable[str] = ()) -> set[str]:
        """Hosts off loopback that traffic may go to: the file's and ``extra``."""
        listed = self.safety.allow_hosts if self.safety is not None else []
        return {normalize_host(h) for h in (*listed, *extra)}

    def addresses(self) -> list[tuple[KeyPath, str]]:
        """(key path, URL) of every address the file makes the run connect to."""
        found: list[tuple[KeyPath, str]] = []
        if self.target is not None:
            found.append((("target", "url"), self.target.url))
        for i, job in enumerate(self.scrape_jobs()):
            found.append((("observe", "scrape", i, "url"), job.url))
        for name, part in self.given_parts().items():
            if part is None:
                continue
            if isinstance(part, HttpPart):
                found += [(_PART_PATHS[name] + path, url) for path, url in part.addresses()]
            else:
                found.append(((*_PART_PATHS[name], "url"), part.url))
        return found

    @property
    def builtin(self) -> bool:
        """True when the target is the built-in shop (no ``target`` given)."""
        return self.target is None

    @property
    def source(self) -> Path | None:
        """The file this experiment was loaded from, if any."""
        return self._source

    @property
    def profile(self) -> str | None:
        """The profile applied when loading, if any."""
        return self._profile

    @property
    def warnings(self) -> tuple[ErrorDetail, ...]:
        """What the loader accepted but the file may not mean (``experiment/advice.py``):
        too little load after the last heal to judge recovery, a bare-number timeout of a
        minute or more. Never an error; ``validate`` and ``run --dry-run`` show them."""
        return tuple(self._warnings)

    @property
    def total_duration(self) -> float:
        """Seconds from load start to load end."""
        return self.load.duration

    def _unknown_proxies(self, *, own_target: bool) -> list[Problem]:
        """Faults and ``depends_on`` naming a proxy the target does not pass: one not
        declared, unless the target is the built-in shop and it is one of the stack's."""
        declared = [p.name for p in self.proxies]
        known = declared if own_target else self.proxy_names()
        listed = ", ".join(known) or "(none declared)"
        problems: list[Problem] = []
        named: list[tuple[str, str, KeyPath]] = [
            (f.proxy, "fault", ("faults", i, "proxy")) for i, f in enumerate(self.faults)
        ]
        named += [
            (name, "depends_on", ("load", "workload", "requests", i, "depends_on", j))
            for i, request in enumerate(self.load.workload.requests or [])
            for j, name in enumerate(request.depends_on or [])
        ]
        for name, what, path in named:
            if name in known:
                continue
            shops = own_target and self.target is None and name in BUILTIN_PROXIES
            problems.append(
                Problem(
                    f"{what} names {name!r}, a proxy of the built-in shop, but the target "
                    "is your own service"
                    if shops
                    else f"{what} names an unknown proxy {name!r}",
                    expected=(
                        f"a proxy declared under proxies: ({', '.join(known) or 'none yet'}); "
                        f"declare the one your service reaches its {name} through"
                        if shops
                        else f"one of the {'declared ' if own_target else ''}proxies: {listed}"
                    ),
                    got=repr(name),
                    path=path,
                )
            )
        return problems

    def check_target_flag(self, option: str = "--target") -> None:
        """``ExperimentError`` (exit 2) when ``option`` points a file written without a
        ``target`` at a service of the user's while it has a ``shop`` section (the
        built-in shop's mode and options, which would test nothing of that service) or its
        faults or ``depends_on`` name the built-in shop's proxies, as ``target:`` in the
        file would be refused."""
        if self.target is not None:
            return
        problems: list[Problem] = []
        if self.shop is not None:
            problems.append(
                Problem(
                    "shop settings apply only to the built-in shop, and "
                    f"{option} tests your own service",
                    expected=f"no 'shop' key with {option} (remove it, or run without "
                    f"{option} to test the built-in shop)",
                    got="a shop section"
                    + (f" (mode {self.shop.mode})" if self.shop.mode is not None else ""),
                    path=("shop",),
                )
            )
        problems += self._unknown_proxies(own_target=True)
        if problems:
            raise self._located_error(problems, context=f"with {option}")

    def check_shop_mode_flag(self, option: str = "--shop-mode") -> None:
        """``ExperimentError`` (exit 2) when ``option`` sets the built-in shop's mode for a
        file whose ``target`` is the user's service: the mode would change nothing."""
        if self.target is None:
            return
        problem = Problem(
            f"{option} sets the built-in shop's mode, and this file tests its own target",
            expected=f"no {option} with a file that has a target (it is the built-in "
            "shop's option)",
            got=f"target {self.target.url}",
            path=("target",),
        )
        raise self._located_error([problem], context=f"with {option}")

    def _located_error(self, problems: list[Problem], *, context: str) -> ExperimentError:
        """Problems found after loading, at their lines in the file when it is known."""
        file = self.source.name if self.source is not None else None
        if self._locator is not None:
            problems = [self._locator(p) for p in problems]
        return experiment_error(file, problems, context=context)

    def proxy_names(self) -> list[str]:
        """Proxies faults may name: declared ones, plus the stack's for the built-in shop."""
        declared = [p.name for p in self.proxies]
        if self.target is None:
            return declared + [n for n in BUILTIN_PROXIES if n not in declared]
        return declared

    def scrape_jobs(self) -> list[ScrapeJob]:
        """The target's own scrape jobs (``observe.scrape``)."""
        return list(self.observe.scrape) if self.observe is not None else []

    def endpoints(self) -> list[str]:
        """Endpoint names of the request mix, in file order (empty with a locustfile)."""
        return self.load.workload.endpoints()

    def fault_windows(self) -> list[FaultWindow]:
        """Scheduled fault windows, ordered by start."""
        windows = [
            FaultWindow(i, f.proxy, f.type, f.at, f.end, dict(f.attributes))
            for i, f in enumerate(self.faults)
        ]
        return sorted(windows, key=lambda w: (w.start, w.index))

    def spike(self) -> Spike | None:
        """The load spike the run is phased by: none when the experiment has faults (they
        cut the phases; ``load.spike`` may not name a stage then)."""
        return None if self.faults else self.load.find_spike()

    def scheduled_phases(self) -> list[Phase]:
        """Baseline / fault / recovery as scheduled; baseline / spike / recovery for a load
        spike; otherwise one baseline phase."""
        spike = self.spike()
        if spike is not None:
            return phases_from_spike(spike.window, start=0.0, end=self.total_duration)
        return phases_from_faults(self.fault_windows(), start=0.0, end=self.total_duration)

    def summary(self) -> str:
        """One line: faults, load shape and length."""
        faults = len(self.faults)
        load = self.load
        search = load.search
        shape = (
            f"preset {load.preset}"
            if load.preset
            else f"search of {'users' if search.users else 'rps'} "
            f"{search.steps.from_:g} to {search.steps.ceiling:g}"
            if search
            else f"{len(load.arrival_rate or [])} arrival stage(s)"
            if load.arrival_rate
            else f"{len(load.stages or [])} stage(s)"
        )
        # In the order they start: the timeline as the run will play it.
        kinds = ", ".join(
            dict.fromkeys(f"{f.type} on {f.proxy}" for f in sorted(self.faults, key=lambda f: f.at))
        )
        text = f"{faults} fault{'s' if faults != 1 else ''}"
        if kinds:
            text += f": {kinds}"
        return f"{text}; load {format_duration(self.total_duration)} ({shape})"

    def secret_values(self) -> frozenset[str]:
        """The values that came from the environment (``${env:NAME}``), for redaction."""
        return self._env.secrets

    def to_data(self, *, include_profiles: bool = False) -> dict[str, Any]:
        """The experiment as plain data in the file's notation (what ``to_yaml`` dumps).

        Strings that were written with ``${env:NAME}`` are written so again (never the
        values they resolved to), unless they were changed since loading; any other ``${``
        is escaped as ``$${``.
        """
        data = self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            exclude=None if include_profiles else {"profiles"},
        )
        unresolved: dict[str, Any] = self._env.unresolve(data)
        return unresolved

    def to_yaml(self, *, include_profiles: bool = False) -> str:
        """The experiment as YAML that loads back to an equal experiment (``to_data``)."""
        data = self.to_data(include_profiles=include_profiles)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


_PART_PATHS: Final[dict[str, KeyPath]] = {
    "toxiproxy": ("toxiproxy",),
    "prometheus": ("observe", "prometheus"),
    "traces": ("observe", "traces"),
}


def experiment_schema() -> dict[str, Any]:
    """JSON Schema of an experiment file, for editors."""
    schema = Experiment.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "resilience experiment"
    return schema
