"""Inside a worker process: Locust users, the stage shape and the open-model scheduler.

Importing this module imports Locust, which monkey-patches the process with gevent: only
``resilience.load.worker`` (the child's entry point) imports it. Three ways to make load:

- closed model, our workload: ``WorkloadUser`` (a ``FastHttpUser``) picks a weighted
  request its captured variables allow, renders it, and sends it with a fresh W3C
  ``traceparent``; a ``LoadTestShape`` holds this worker's share of each stage's users on
  the experiment clock.
- open model: a scheduler greenlet walks the worker's intended send times and starts each
  request in a pool bounded by ``max_in_flight`` (this worker's share). Latency is measured
  FROM THE INTENDED SEND TIME, so a request that waited behind a stalled server or for a
  free slot carries that wait: there is no coordinated omission. A request that cannot get
  a slot within the client timeout of its intended time is recorded as a timeout
  (``unsent``) and never sent.
- a locustfile: its User classes run under the same shape; their requests are recorded
  from Locust's request event, and their HTTP clients are wrapped so that every request
  carries a ``traceparent`` too.

Every request ends by the client timeout (connect plus the whole request): a gevent
timeout around it, and the socket timeouts set to the same value.
"""

from __future__ import annotations

import json
import logging
import math
import random
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.pool
from gevent import Timeout, getcurrent
from locust import FastHttpUser, LoadTestShape, User, between, constant, task
from locust.clients import HttpSession
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS as _BODY_FAILURES
from locust.contrib.fasthttp import FastHttpSession, FastResponse, LocustBadStatusCode
from locust.env import Environment
from locust.event import EventHook
from locust.exception import StopUser
from locust.util.load_locustfile import load_locustfile

from resilience.errors import LoadError
from resilience.experiment.captures import MISSING, parse_capture
from resilience.load.collector import (
    CONNECTION_ERROR,
    OK,
    TIMEOUT,
    UNEXPECTED,
    Collector,
    new_trace_ids,
    outcome_of_status,
    traceparent,
)
from resilience.load.plan import LoadPlan
from resilience.load.schedule import intended_times, rate_times, split_evenly, worker_target
from resilience.load.template import (
    Answer,
    OffTarget,
    Rendered,
    RequestTemplate,
    Send,
    StepFailure,
    Steps,
    TargetOrigin,
    UserState,
    WeightedChooser,
    capture_into,
    compile_captures,
    compile_request_templates,
    decode_json,
)
from resilience.vocabulary import JSONValue

logger = logging.getLogger(__name__)

_SILENT = EventHook()  # our users record directly; nobody needs Locust's request event

SETUP_ATTEMPTS = 3
"""A worker's shared ``setup`` steps are tried this often (a second apart) before the
worker gives up with an error: without their captures no request could be sent."""


class ClientDeadline(BaseException):
    """Raised into a greenlet whose request outlived the plan's client timeout.

    Our own BaseException on purpose. Raised as gevent's ``Timeout``, the deadline was
    caught twice on its way: geventhttpclient's retry loop treats a ``Timeout`` as a
    temporary error and Locust's FastHttpSession as an ordinary failure, so it came back
    wrapped, after the library had decided what to do with the half-read connection —
    and the next requests on that user's client failed within a millisecond, counted as
    timeouts (seen against a hung proxy, 2026-11-25). Nothing but ``send`` catches this.
    """


def _is_timeout(error: BaseException | None) -> bool:
    """A timeout, also when geventhttpclient wrapped it (RetriesExceeded keeps ``original``)."""
    for _ in range(5):
        if error is None:
            return False
        if isinstance(error, Timeout | socket.timeout | TimeoutError):
            return True
        error = getattr(error, "original", None) or error.__cause__
    return False


def _header_lookup(headers: Any) -> Callable[[str], str | None]:
    """A response header by name, any case (a repeated one: its first value)."""

    def header(name: str) -> str | None:
        value = headers.get(name) if headers is not None else None
        if isinstance(value, list):
            return str(value[0]) if value else None
        return None if value is None else str(value)

    return header


def send_request(
    client: FastHttpSession,
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    body: JSONValue,
    content: str | bytes | None,
) -> tuple[FastResponse, BaseException | None]:
    """Send one request through the session's transport and read the whole answer:
    (response, error). What ``FastHttpSession.request`` does, less what only Locust's
    statistics need (its timing, the request event and its arguments, the response's
    length); measured per request in benchmarks/RESULTS.md ("Generator throughput").
    ``headers`` is the caller's own dict and gains the defaults Locust would add: gzip
    accepted, the URL's credentials as basic auth (unless the request names its own
    ``Authorization``), and JSON's content type for a JSON body. A body that breaks off
    while being read is the request's error (Locust's own path reports it only to its
    statistics and hands back the response as if whole)."""
    if "Accept-Encoding" not in headers and "accept-encoding" not in headers:
        headers["Accept-Encoding"] = "gzip, deflate, br"
    auth = client.auth_header
    if auth and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = auth
    payload: str | bytes | None = content
    if not payload and body is not None:
        payload = json.dumps(body)
        if "Content-Type" not in headers and "content-type" not in headers:
            headers["Content-Type"] = "application/json"
        if "Accept" not in headers and "accept" not in headers:
            headers["Accept"] = "application/json"
    response: FastResponse = client._send_request_safe_mode(
        method, client._build_url(path), payload=payload, headers=headers
    )
    error: BaseException | None = getattr(response, "error", None)
    if error is None:
        try:
            response.content  # noqa: B018 (reads the body: the answer is whole, the connection free)
        except _BODY_FAILURES as exc:
            error = exc
    return response, error


class Clock:
    """The experiment clock inside a worker: seconds since t0, from a monotonic source."""

    def __init__(self, t0: float) -> None:
        self._origin = time.monotonic() - (time.time() - t0)

    def now(self) -> float:
        return time.monotonic() - self._origin


class Workload:
    """The compiled requests of a plan and the one function that sends a request."""

    def __init__(self, plan: LoadPlan, clock: Clock, collector: Collector) -> None:
        self.plan = plan
        self.clock = clock
        self.collector = collector
        self.templates: list[RequestTemplate] = compile_request_templates(
            plan.requests, plan.target
        )
        self.chooser = WeightedChooser(
            [r.weight for r in plan.requests], [t.needs for t in self.templates]
        )
        self.timeout = plan.client_timeout
        self._loop = gevent.get_hub().loop
        self._warned_ids: set[str] = set()
        self.setup = Steps.compile(plan.setup, plan.target)
        self.on_start = Steps.compile(plan.on_start, plan.target)
        self.shared: dict[str, JSONValue] = {}
        """What the setup steps captured: every user and scheduled request starts with it."""
        self.on_start_failed = 0
        self.on_start_errors: list[str] = []
        # Captures and write ids, parsed here once: a response only walks them.
        self.captures = [compile_captures(r.capture) for r in plan.requests]
        self.write_ids = [
            parse_capture(r.write.id_field) if r.write is not None else None for r in plan.requests
        ]
        self.url_ids = [
            r.write is not None and (r.write.read_back or "").startswith("{id}")
            for r in plan.requests
        ]
        self.needs_body = [
            any(c.from_body for _, c in caps) or (w is not None and w.from_body)
            for caps, w in zip(self.captures, self.write_ids, strict=True)
        ]
        self.origin = TargetOrigin.of(plan.target)
        self.capture_missed = 0
        """OK answers without a value to capture or a written id (still counted OK)."""
        self.capture_errors: list[str] = []
        self.refused: str | None = None
        """Why the load stopped itself: a captured URL led off the target's host."""
        self.on_refused: Callable[[str], None] = lambda message: None

    def choose(self, state: UserState) -> int | None:
        return self.chooser.choose(state.rng, state.captured)

    def new_state(self, rng: random.Random) -> UserState:
        """A user's (or the open model's) state, holding the setup's captures."""
        return UserState(rng=rng, variables=dict(self.shared))

    def step_sender(self, client: FastHttpSession) -> Send:
        """Send a setup or on_start step (not recorded as load), bounded by the client
        timeout like every request; raises on a connection error or the deadline."""

        def send(rendered: Rendered) -> Answer:
            deadline = self._loop.timer(self.timeout)
            deadline.start(getcurrent().throw, ClientDeadline, update=True)
            try:
                response, error = send_request(
                    client,
                    rendered.method,
                    rendered.path,
                    dict(rendered.headers),
                    body=rendered.json,
                    content=rendered.content,
                )
            except ClientDeadline:
                raise TimeoutError(f"no complete answer within {self.timeout:g}s") from None
            finally:
                deadline.stop()
                deadline.close()
            if error is not None and not isinstance(error, LocustBadStatusCode):
                raise ConnectionError(str(error) or type(error).__name__)
            return Answer(
                int(response.status_code or 0),
                decode_json(response.content),
                _header_lookup(response.headers),
            )

        return send

    def run_setup(self, stopped: Callable[[], bool] = lambda: False) -> None:
        """Run the shared setup steps once for this worker (``SETUP_ATTEMPTS`` tries);
        ``LoadError`` naming the step and the reason when they keep failing."""
        if not self.setup:
            return
        client = FastHttpSession(
            base_url=self.plan.target,
            request_event=_SILENT,
            user=None,
            network_timeout=self.timeout,
            connection_timeout=self.timeout,
            max_retries=0,
        )
        failure: StepFailure | None = None
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            state = UserState(rng=random.Random())
            try:
                failure = self.setup.run(state, self.step_sender(client))
            except OffTarget as exc:
                self.refuse("setup", str(exc))
                return
            if failure is None:
                self.shared = dict(state.variables)
                logger.info("setup done: captured %s", ", ".join(sorted(self.shared)) or "nothing")
                return
            logger.warning("setup attempt %d/%d failed: %s", attempt, SETUP_ATTEMPTS, failure)
            if stopped() or attempt == SETUP_ATTEMPTS:
                break
            gevent.sleep(1.0)
        raise LoadError(f"setup failed ({SETUP_ATTEMPTS} attempts): {failure}")

    def start_user(self, client: FastHttpSession, state: UserState) -> bool:
        """Run a user's on_start steps; False (counted and logged) when one failed."""
        if not self.on_start:
            return True
        try:
            failure = self.on_start.run(state, self.step_sender(client))
        except OffTarget as exc:
            self.refuse("on_start", str(exc))
            return False
        if failure is None:
            return True
        self.on_start_failed += 1
        reason = str(failure)
        if reason not in self.on_start_errors and len(self.on_start_errors) < 5:
            self.on_start_errors.append(reason)
        self._warn_once("on_start", f"a user's on_start failed, the user stops: {reason}")
        return False

    def send(
        self,
        client: FastHttpSession,
        state: UserState,
        index: int,
        *,
        send_t: float | None = None,
        second: int | None = None,
    ) -> None:
        """Send request ``index`` and record it. Closed model: sent at ``send_t`` (the
        user's clock reading just before; now when not given). Open model: the caller
        gives the intended time ``send_t`` and the ``second`` it already began.

        The client timeout bounds the whole request (connect, send, every read) with a
        fresh deadline per request; the socket-level timeouts of the session are the
        same length, so a silent peer ends as a socket timeout inside the library (which
        then discards the connection) and the deadline is the backstop for a peer that
        trickles. The deadline is a new event-loop timer every time, closed when the
        request ends: what ``gevent.Timeout`` does, without its wrapper (1 us instead of
        4-9 us). One ``Timeout`` reused per user, restarted after it had fired, fired again
        at once on the next start (measured: hundreds of "timeouts" of 0 ms after one
        stall; tests/integration/test_load_engine.py)."""
        template = self.templates[index]
        request = self.plan.requests[index]
        state.seq += 1
        rendered = self._render(template, state, second)
        if rendered is None:
            return
        trace_id, span_id = new_trace_ids(state.rng)
        headers = {"traceparent": traceparent(trace_id, span_id)}
        headers.update(rendered.headers)
        collector = self.collector
        if send_t is None:
            send_t = self.clock.now()
        if second is None:
            second = collector.begin(send_t)
        recorded = False
        try:
            response: FastResponse | None = None
            error: BaseException | None = None
            deadline = self._loop.timer(self.timeout)
            deadline.start(getcurrent().throw, ClientDeadline, update=True)
            try:
                response, error = send_request(
                    client,
                    request.method,
                    rendered.path,
                    headers,
                    body=rendered.json,
                    content=rendered.content,
                )
            except ClientDeadline:
                error = TimeoutError(f"no complete answer within {self.timeout:g}s")
            finally:
                deadline.stop()
                deadline.close()
            done_t = self.clock.now()
            status = 0
            if response is not None:
                status = response.status_code or 0
            if error is not None and not isinstance(error, LocustBadStatusCode):
                outcome = TIMEOUT if _is_timeout(error) else CONNECTION_ERROR
            elif status:
                outcome = outcome_of_status(status, request.expects(status))
            else:
                outcome = CONNECTION_ERROR
            recorded = True
            collector.end(
                second,
                template.name,
                send_t,
                done_t,
                outcome,
                status=status,
                trace_id=trace_id,
                span_id=span_id,
            )
            if outcome == OK and response is not None and (request.capture or request.write):
                self._after_success(state, index, response, send_t, status)
        finally:
            if not recorded:
                collector.abandon(second)

    def _render(
        self, template: RequestTemplate, state: UserState, second: int | None
    ) -> Rendered | None:
        """The request, or None (never sent) when a captured URL leads off the target."""
        try:
            return template.render(state)
        except OffTarget as exc:
            if second is not None:  # begun by the open model's scheduler
                self.collector.abandon(second)
            self.refuse(template.name, str(exc))
            return None

    def _after_success(
        self, state: UserState, index: int, response: FastResponse, send_t: float, status: int
    ) -> None:
        """Captures and the written id of an OK answer. A value the answer lacks leaves the
        request OK (the service answered as expected) and is counted as a capture miss."""
        request = self.plan.requests[index]
        data: JSONValue = None
        if self.needs_body[index]:
            data = decode_json(response.content)
        header = _header_lookup(response.headers)
        captures = self.captures[index]
        if captures:
            for missing in capture_into(state, captures, data, header):
                self._missed(request.name, missing, data)
        write_id = self.write_ids[index]
        if request.write is None or write_id is None:
            return
        record_id = write_id.read(data, header)
        if record_id is MISSING or record_id is None:
            self._missed(request.name, f"{write_id.describe()} (the written id)", data)
            return
        if self.url_ids[index]:
            try:
                self.origin.resolve(str(record_id))
            except OffTarget as exc:
                self.refuse(request.name, f"write.id_field: {exc}")
                return
        self.collector.write_ack(record_id, request.name, send_t, status)

    def _missed(self, endpoint: str, what: str, data: JSONValue) -> None:
        self.capture_missed += 1
        why = "the answer is not JSON" if data is None and what.startswith("field") else ""
        reason = f"{endpoint}: no {what} in the answer" + (f" ({why})" if why else "")
        if reason not in self.capture_errors and len(self.capture_errors) < 5:
            self.capture_errors.append(reason)
        self._warn_once(endpoint, f"nothing captured: no {what} in the answer")

    def refuse(self, endpoint: str, reason: str) -> None:
        """Stop this worker's load: a captured URL leads off the target's host."""
        if self.refused is None:
            self.refused = f"{endpoint}: {reason}"
            logger.error("refused: %s", self.refused)
            self.on_refused(self.refused)

    def _warn_once(self, endpoint: str, message: str) -> None:
        key = f"{endpoint}: {message}"
        if key not in self._warned_ids:
            self._warned_ids.add(key)
            logger.warning("%s", key)


class StageShape(LoadTestShape):
    """This worker's share of the plan's stages, on the experiment clock (not Locust's).

    With ``hold_at_end`` the last stage's target stays after the end instead of Locust's
    stop: our own users stop themselves after their last request, which never kills one in
    the middle of a request (Locust's stop can, when a user's wait ends as it is stopped).

    ``set_target`` (a ``SetUsers`` command) replaces the stages from then on until the
    plan's end; Locust's shape worker picks the new target up within a second and adds or
    stops users without restarting the runner.
    """

    def __init__(self, plan: LoadPlan, clock: Clock, *, hold_at_end: bool) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Locust's LoadTestShape
        self._plan = plan
        self._clock = clock
        self._hold = hold_at_end
        self._last: tuple[int, float] | None = None
        self._override: tuple[int, float] | None = None

    def set_target(self, users: int, spawn_rate: float) -> None:
        """This worker's users and spawn rate from now on (its share of a SetUsers)."""
        self._override = (users, spawn_rate)

    def tick(self) -> tuple[int, float] | None:
        now = self._clock.now()
        if self._override is not None and now < self._plan.duration:
            self._last = self._override
            return self._last
        target = worker_target(self._plan.stages, now, self._plan.worker, self._plan.workers)
        if target is None:
            return self._last if self._hold else None
        self._last = (target.users, target.spawn_rate)
        return self._last


def workload_user_class(workload: Workload, seed_source: random.Random) -> type[User]:
    """A FastHttpUser class bound to one worker's workload."""
    plan = workload.plan
    wait = between(plan.wait_min, plan.wait_max) if plan.wait_max > 0 else constant(0)
    end = plan.duration

    class WorkloadUser(FastHttpUser):
        host = plan.target
        wait_time = wait
        network_timeout = plan.client_timeout
        connection_timeout = plan.client_timeout

        def __init__(self, environment: Environment) -> None:
            super().__init__(environment)
            self.client.request_event = _SILENT
            self.state = workload.new_state(random.Random(seed_source.getrandbits(64)))
            self.started = True

        def on_start(self) -> None:
            # A user whose on_start failed stops at its first task (counted and logged
            # once by the workload): it never loops without what it needed to capture.
            self.started = workload.start_user(self.client, self.state)

        @task
        def step(self) -> None:
            now = workload.clock.now()
            if now >= end or not self.started:
                raise StopUser  # the plan is over: stop between requests, never inside one
            index = workload.choose(self.state)
            if index is None:  # cannot happen for a validated plan; do not spin
                gevent.sleep(1.0)
                return
            workload.send(self.client, self.state, index, send_t=now)

    return WorkloadUser


class OpenScheduler:
    """Sends at this worker's intended times; latency counts from those times."""

    def __init__(self, workload: Workload, seed_source: random.Random) -> None:
        plan = workload.plan
        self.workload = workload
        self.plan = plan
        self.limit = max(1, split_evenly(plan.max_in_flight, plan.workers, plan.worker))
        self.pool = gevent.pool.Pool(self.limit)
        self.client = FastHttpSession(
            base_url=plan.target,
            request_event=_SILENT,
            user=None,
            network_timeout=plan.client_timeout,
            connection_timeout=plan.client_timeout,
            concurrency=self.limit,
            # A retry would send a second request and time it as one; never.
            max_retries=0,
        )
        # One shared state: in the open model there are no users, only requests.
        self.state = workload.new_state(random.Random(seed_source.getrandbits(64)))
        self.next_t = 0.0
        self.done = False
        self._stopped = False
        # A SetRate command: (rps, from) replaces the plan's stages from that moment on.
        self._rate_change: tuple[float, float] | None = None
        self._wake = gevent.event.Event()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def set_rate(self, rps: float, at: float) -> None:
        """Send ``rps`` requests per second in total (all workers) from ``at`` on."""
        self._rate_change = (rps, at)
        self._wake.set()

    def _take_change(self) -> tuple[float, float] | None:
        change, self._rate_change = self._rate_change, None
        return change

    def _change_pending(self) -> bool:
        return self._rate_change is not None

    def _times(self, start: float) -> Iterator[float]:
        """Intended times: the plan's stages, replaced by each rate change as it arrives."""
        plan = self.plan
        times: Iterator[float] = intended_times(
            plan.arrival, plan.worker, plan.workers, start_at=start
        )
        while True:
            change = self._take_change()
            if change is not None:
                rps, at = change
                times = rate_times(rps, at, plan.duration, plan.worker, plan.workers)
            t = next(times, None)
            if t is None:
                if self._change_pending():
                    continue
                # Nothing more to send (rate 0, or the end): wait for a change or the end.
                wait = plan.duration - self.workload.clock.now()
                if wait <= 0 or self._stopped:
                    return
                self.next_t = math.inf  # nothing is due: every past second may be final
                self._wake.clear()
                self._wake.wait(timeout=min(wait, 1.0))
                if not self._change_pending() and self.workload.clock.now() >= plan.duration:
                    return
                times = iter(())
                continue
            yield t

    def run(self) -> None:
        clock = self.workload.clock
        collector = self.workload.collector
        timeout = self.plan.client_timeout
        # A worker a little late still sends what was due (measured from when it was due);
        # one that starts much later skips the past rather than sending it in one burst.
        start = clock.now()
        if start < 1.0:
            start = 0.0
        else:
            logger.warning("started %.1fs after t0: the intended times before are skipped", start)
        behind = 0
        try:
            for t in self._times(start):
                self.next_t = t
                delay = t - clock.now()
                if delay > 0:
                    self._wake.clear()
                    if self._wake.wait(timeout=delay) and self._change_pending():
                        continue  # a new rate: this time is no longer intended
                    behind = 0
                else:
                    behind += 1
                    if behind % 32 == 0:
                        gevent.sleep(0)  # let responses in while catching up
                if self._stopped:
                    break
                index = self.workload.choose(self.state)
                if index is None:
                    continue
                second = collector.begin(t)
                if self.pool.full():
                    self.pool.wait_available(timeout=max(0.0, t + timeout - clock.now()))
                if self.pool.full():
                    self._unsent(second, index, t)
                    continue
                self.pool.spawn(
                    self.workload.send, self.client, self.state, index, send_t=t, second=second
                )
        finally:
            self.next_t = math.inf
            self.done = True

    def _unsent(self, second: int, index: int, t: float) -> None:
        trace_id, span_id = new_trace_ids(self.state.rng)
        self.workload.collector.end(
            second,
            self.workload.templates[index].name,
            t,
            self.workload.clock.now(),
            TIMEOUT,
            status=0,
            trace_id=trace_id,
            span_id=span_id,
            unsent=True,
        )

    @property
    def in_flight(self) -> int:
        return len(self.pool)

    def kill(self) -> None:
        self._stopped = True
        self.pool.kill(block=True, timeout=2.0)


# -- locustfile users --------------------------------------------------------------------


def _with_traceparent(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a session's ``request`` so every request carries a fresh traceparent whose ids
    reach the request event through its context."""
    rng = random.Random()

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        headers = dict(kwargs.get("headers") or {})
        if not any(k.lower() == "traceparent" for k in headers):
            trace_id, span_id = new_trace_ids(rng)
            headers["traceparent"] = traceparent(trace_id, span_id)
            kwargs["headers"] = headers
            context = dict(kwargs.get("context") or {})
            context["resilience_trace"] = (trace_id, span_id)
            kwargs["context"] = context
        return original(self, method, url, *args, **kwargs)

    return request


def load_user_classes(plan: LoadPlan) -> list[type[User]]:
    """The locustfile's User classes (those named in the plan, or all of them)."""
    assert plan.locustfile is not None
    try:
        found, _shapes = load_locustfile(plan.locustfile)
    except (SystemExit, Exception) as exc:
        raise LoadError(f"cannot import locustfile {plan.locustfile}: {exc}") from exc
    if plan.user_classes:
        missing = [name for name in plan.user_classes if name not in found]
        if missing:
            raise LoadError(
                f"locustfile {plan.locustfile} has no User class {', '.join(missing)} "
                f"(it has {', '.join(sorted(found)) or 'none'})"
            )
        classes = [found[name] for name in plan.user_classes]
    else:
        classes = list(found.values())
    if not classes:
        raise LoadError(f"locustfile {plan.locustfile} defines no User class")
    for cls in classes:
        if issubclass(cls, FastHttpUser):
            # Only the library defaults are tightened; a timeout the user chose stays.
            if cls.network_timeout == FastHttpUser.network_timeout:
                cls.network_timeout = plan.client_timeout
            if cls.connection_timeout == FastHttpUser.connection_timeout:
                cls.connection_timeout = plan.client_timeout
    FastHttpSession.request = _with_traceparent(FastHttpSession.request)  # type: ignore[method-assign]
    HttpSession.request = _with_traceparent(HttpSession.request)  # type: ignore[method-assign]
    return classes


def locust_request_listener(
    plan: LoadPlan, clock: Clock, collector: Collector
) -> Callable[..., None]:
    """Record Locust request events (locustfile users) like our own requests."""

    def on_request(
        *,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        context: dict[str, Any] | None = None,
        response: object = None,
        start_time: float | None = None,
        **_: object,
    ) -> None:
        done_t = clock.now()
        latency = max(0.0, float(response_time or 0.0) / 1000.0)
        send_t = (start_time - plan.t0) if start_time else done_t - latency
        status = int(getattr(response, "status_code", 0) or 0)
        if exception is None:
            outcome = OK
        elif _is_timeout(exception) or _is_timeout(getattr(response, "error", None)):
            outcome = TIMEOUT
        elif status >= 400:
            outcome = outcome_of_status(status, False)
        elif status == 0:
            outcome = CONNECTION_ERROR
        else:
            outcome = UNEXPECTED
        # A request that did not go through a wrapped HTTP session carried no trace id.
        trace_id, span_id = (context or {}).get("resilience_trace") or ("", "")
        collector.end(
            int(send_t) if send_t > 0 else 0,
            f"{request_type} {name}",
            send_t,
            send_t + latency,
            outcome,
            status=status,
            trace_id=trace_id,
            span_id=span_id,
            begun=False,
        )

    return on_request
