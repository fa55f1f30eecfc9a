"""The native stack supervisor: start the components in order, check them, record them, stop them.

``Stack(config).up()`` starts what is missing (in dependency order, each polled healthy
before the next), ``down()`` stops whole process groups and waits until every port is
free, ``status()`` probes each component once. The record of what runs is
``<state>/stack.json`` (see ``state``); a port bound by anything not in that record is
someone else's and stops ``up`` with an error naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from resilience.errors import ExperimentError, ResilienceError, StackError
from resilience.stack._process import (
    ProcInfo,
    family,
    is_alive,
    port_is_free,
    proc_info,
    spawn_detached,
    tail,
    wait_until,
)
from resilience.stack.components import (
    COMPONENT_NAMES,
    COMPONENTS,
    GROUPS,
    Component,
    Context,
    by_name,
    start_waves,
)
from resilience.stack.config import Ports, StackConfig
from resilience.stack.generate import separate_shop_metrics
from resilience.stack.programs import Programs
from resilience.stack.state import (
    ComponentRecord,
    StackState,
    load_scrape_jobs,
    load_state,
    locked,
    now_iso,
    save_scrape_jobs,
    save_state,
)
from resilience.tls import system_tls
from resilience.vocabulary import SHOP_MODES

logger = logging.getLogger(__name__)

FaultSweeper = Callable[[StackConfig], object]
"""Heals faults a crashed run left behind; called by ``status`` when Toxiproxy is up."""

_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PORT_FREE_TIMEOUT = 15.0


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did. ``started`` includes ``restarted`` (shop services whose mode changed)."""

    started: tuple[str, ...]
    already_running: tuple[str, ...]
    restarted: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class DownResult:
    """What ``down`` did."""

    stopped: tuple[str, ...]
    not_running: tuple[str, ...]


@dataclass(frozen=True)
class ComponentStatus:
    """One component as ``status`` sees it.

    ``state`` is ``running`` (healthy), ``unhealthy`` (its process runs, the probe
    fails), ``dead`` (recorded, but its process is gone) or ``stopped`` (not recorded).
    """

    name: str
    state: str
    port: int
    pid: int | None = None
    pgid: int | None = None
    version: str | None = None
    mode: str | None = None
    detail: str = ""
    log: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class PlannedComponent:
    """What ``up`` would do with one component, as ``Stack.plan_up`` found it.

    ``state`` is ``running`` (its recorded process is alive; health is not probed),
    ``running elsewhere`` (alive, but on another port than this configuration's: a stack
    started with another ``RESILIENCE_PORT_OFFSET``), ``dead`` (recorded, process gone) or
    ``stopped``; ``action`` is ``keep``, ``start`` or ``restart`` (a shop service in another
    mode or with other options); ``blocker`` says why starting it would fail (a program
    missing, its port taken by a stranger) or, running elsewhere, why it cannot be used.
    """

    name: str
    state: str
    action: str
    port: int
    mode: str | None = None
    blocker: str | None = None


def resolve_components(names: Iterable[str] | None) -> tuple[str, ...]:
    """Component names (or groups: all, infra, shop) in start order; None means all."""
    if names is None:
        return COMPONENT_NAMES
    wanted: set[str] = set()
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name in GROUPS:
                wanted.update(GROUPS[name])
            elif name in COMPONENT_NAMES:
                wanted.add(name)
            else:
                raise ExperimentError(
                    f"unknown stack component {name!r}",
                    expected=", ".join((*GROUPS, *COMPONENT_NAMES)),
                    got=name,
                )
    return tuple(name for name in COMPONENT_NAMES if name in wanted)


def parse_shop_options(pairs: Iterable[str]) -> dict[str, str]:
    """``NAME=VALUE`` strings (from ``--shop-option``) as a dict."""
    options: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _OPTION_NAME.match(name):
            raise ExperimentError(
                "invalid --shop-option", expected="NAME=VALUE with NAME like pool_size", got=pair
            )
        options[name.lower()] = value
    return options


class Stack:
    """The native stack of one configuration (one state directory, one set of ports)."""

    def __init__(
        self,
        config: StackConfig,
        *,
        sweeper: FaultSweeper | None = None,
        start_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.programs = Programs(config)
        self.sweeper = sweeper
        self.start_timeout = start_timeout

    # -- the public operations -------------------------------------------------------

    def up(
        self,
        *,
        shop_mode: str = "fragile",
        shop_options: Mapping[str, str] | None = None,
        components: Iterable[str] | None = None,
    ) -> UpResult:
        """Start what is missing of ``components`` (default all) and check what runs.

        Shop services running in another mode or with other options are restarted. If a
        component cannot start, everything this call started is stopped again and a
        StackError (with the log tail) is raised.
        """
        if shop_mode not in SHOP_MODES:
            raise ExperimentError(
                "invalid shop mode", expected=" or ".join(SHOP_MODES), got=shop_mode
            )
        options = {k.lower(): v for k, v in (shop_options or {}).items()}
        names = resolve_components(components)
        began = time.monotonic()
        started: list[str] = []
        already: list[str] = []
        self._make_state_dir()
        with self._lock(), self._context(shop_mode, options) as ctx:
            state = self._forget_dead(load_state(self.config.paths.stack_file))
            moved = self.moved(state)
            if moved is not None:
                raise StackError(moved)
            ctx.separate_shop_metrics = self._shop_metrics_separate(state, ctx, names)
            restarted = self._stop_shop_in_other_mode(state, ctx, names)
            state = load_state(self.config.paths.stack_file)
            wanted = set(names) | set(restarted)
            try:
                # Components of one wave do not depend on each other: they start together.
                for wave in start_waves(wanted):
                    missing = []
                    for component in wave:
                        record = state.components.get(component.name)
                        if record is None:
                            missing.append(component)
                            continue
                        self._check_running(component, record, ctx)
                        already.append(component.name)
                    for record in self._start_wave(missing, ctx):
                        state = state.with_record(record)
                        save_state(self.config.paths.stack_file, state)
                        started.append(record.name)
                # E.g. Prometheus follows the shop's metrics to the ports they are on now.
                for component in COMPONENTS:
                    if component.name in state.components:
                        component.refresh(ctx, state.components[component.name])
            except BaseException:
                # Ctrl-C included: what this call started must not outlive it unrecorded.
                self._roll_back(started, ctx)
                raise
        return UpResult(
            started=tuple(started),
            already_running=tuple(already),
            restarted=tuple(restarted),
            seconds=time.monotonic() - began,
        )

    def down(self, components: Iterable[str] | None = None) -> DownResult:
        """Stop ``components`` (default: everything recorded), whole process groups.

        Returns when their processes are gone and their ports are free.
        """
        stopped: list[str] = []
        not_running: list[str] = []
        with self._lock(), self._context() as ctx:
            state = load_state(self.config.paths.stack_file)
            names = (
                tuple(n for n in COMPONENT_NAMES if n in state.components)
                if components is None
                else resolve_components(components)
            )
            for name in reversed(names):
                record = state.components.get(name)
                if record is not None and self._stop(by_name(name), record, ctx):
                    stopped.append(name)
                else:
                    not_running.append(name)
                state = state.without(name)
                save_state(self.config.paths.stack_file, state)
            if "prometheus" in names:
                # A Prometheus started afresh scrapes the stack's own jobs only.
                save_scrape_jobs(self.config.paths.scrape_jobs_file, {})
        return DownResult(stopped=tuple(stopped), not_running=tuple(not_running))

    def scrape_jobs(self) -> dict[str, str]:
        """The experiments' own scrape jobs in the generated prometheus.yml (job -> URL)."""
        return load_scrape_jobs(self.config.paths.scrape_jobs_file)

    def set_scrape_jobs(self, jobs: Mapping[str, str]) -> bool:
        """Make ``jobs`` the experiments' scrape jobs: kept in the state directory (so a
        later ``up`` keeps them), written into prometheus.yml and, when Prometheus runs,
        reloaded (SIGHUP). True when a running Prometheus took the change."""
        self._make_state_dir()
        with self._lock(), self._context() as ctx:
            save_scrape_jobs(self.config.paths.scrape_jobs_file, dict(jobs))
            ctx.scrape_jobs = dict(jobs)
            state = self._forget_dead(load_state(self.config.paths.stack_file))
            ctx.separate_shop_metrics = self._shop_metrics_separate(state, ctx, ())
            record = state.components.get("prometheus")
            if record is None:
                return False
            by_name("prometheus").refresh(ctx, record)
            return True

    def status(self) -> list[ComponentStatus]:
        """Every component, probed once; runs the fault sweeper if one is registered."""
        result = self._statuses(COMPONENT_NAMES)
        toxiproxy_up = any(s.name == "toxiproxy" and s.healthy for s in result)
        if self.sweeper is not None and toxiproxy_up:
            # The CLI passes resilience.faults.sweeper's entry point here (the lead wires it).
            try:
                self.sweeper(self.config)
            except ResilienceError as exc:
                logger.warning("the fault sweeper failed: %s", exc)
        return result

    def plan_up(
        self,
        *,
        shop_mode: str = "fragile",
        shop_options: Mapping[str, str] | None = None,
        components: Iterable[str] | None = None,
    ) -> list[PlannedComponent]:
        """What ``up`` with these arguments would keep, start or restart; changes nothing.

        Read-only: it reads the stack record and /proc, checks the programs and ports of
        what would start, and starts no process (no health probe either: ``pg_isready``
        is one), creates no file and sends no request.
        """
        options = {k.lower(): v for k, v in (shop_options or {}).items()}
        names = resolve_components(components)
        state = load_state(self.config.paths.stack_file)
        planned: list[PlannedComponent] = []
        with self._context(shop_mode, options) as ctx:
            for component in COMPONENTS:
                if component.name not in names:
                    continue
                record = state.components.get(component.name)
                port = next(iter(component.ports(self.config.ports).values()))
                if record is not None and is_alive(record.pid, record.start_ticks):
                    stale = component.name in GROUPS["shop"] and (record.mode, record.options) != (
                        shop_mode,
                        options,
                    )
                    action = "restart" if stale else "keep"
                    here = record.port == port
                    planned.append(
                        PlannedComponent(
                            component.name,
                            "running" if here else "running elsewhere",
                            action,
                            record.port,
                            record.mode,
                            None if here else f"this command's port for it is {port}",
                        )
                    )
                    continue
                blocker = None
                try:
                    self._check_startable(component, ctx)
                except ResilienceError as exc:
                    blocker = str(exc)
                planned.append(
                    PlannedComponent(
                        component.name,
                        "stopped" if record is None else "dead",
                        "start",
                        port,
                        shop_mode if component.name in GROUPS["shop"] else None,
                        blocker,
                    )
                )
        return planned

    def moved(self, state: StackState | None = None) -> str | None:
        """Why this configuration cannot use the stack its record describes, or None.

        The record (``stack.json`` in the state directory) and the ports (from
        ``RESILIENCE_PORT_OFFSET`` and ``RESILIENCE_PORT_<NAME>``) are read separately: a
        stack started with an offset and a command run without it share the record but
        not the ports, so the command would "keep" the running stack and then talk to
        ports where nothing of it listens. Every command that uses the stack asks this
        first (``up``, ``plan_up``, a ``--no-stack`` run)."""
        state = state or load_state(self.config.paths.stack_file)
        defaults = Ports()
        moved: list[str] = []
        guess: int | None = None
        for component in COMPONENTS:
            record = state.components.get(component.name)
            if record is None or not is_alive(record.pid, record.start_ticks):
                continue
            port = next(iter(component.ports(self.config.ports).values()))
            if record.port == port:
                continue
            moved.append(f"{component.name} on {record.port} (this command: {port})")
            if guess is None:
                guess = record.port - next(iter(component.ports(defaults).values()))
        if not moved:
            return None
        return (
            f"the stack recorded in {self.config.paths.stack_file} runs on other ports than "
            f"this command's: {', '.join(moved)}; it was started with other port settings "
            f"(RESILIENCE_PORT_OFFSET={guess}?): run with the same RESILIENCE_PORT_OFFSET "
            "(or RESILIENCE_PORT_<NAME>) to use it, or give a second stack its own "
            "RESILIENCE_STATE_DIR"
        )

    def describe(self) -> str:
        """Which stack this is, for people: its state directory and Toxiproxy's API."""
        return f"the stack in {self.config.paths.state}, Toxiproxy at {self.config.toxiproxy_url}"

    def is_up(self, components: Iterable[str] | None = None) -> bool:
        """Whether every one of ``components`` (default all) runs and answers its probe."""
        return all(s.healthy for s in self._statuses(resolve_components(components)))

    def shop_mode(self) -> str | None:
        """The mode of the running shop services, or None when none runs (or they disagree)."""
        modes = {r.mode for name, r in self.records().items() if name in GROUPS["shop"]}
        return modes.pop() if len(modes) == 1 else None

    def records(self) -> dict[str, ComponentRecord]:
        """The recorded components whose processes are alive."""
        state = load_state(self.config.paths.stack_file)
        return {
            name: record
            for name, record in state.components.items()
            if is_alive(record.pid, record.start_ticks)
        }

    def processes(self) -> list[ProcInfo]:
        """Every live process of the stack (process groups and their descendants)."""
        return family(record.pgid for record in self.records().values())

    # -- the work --------------------------------------------------------------------

    def _make_state_dir(self) -> None:
        state = self.config.paths.state
        if not state.exists():
            state.mkdir(parents=True)
            # Whatever the umask: PostgreSQL's user must traverse it to reach pgdata.
            state.chmod(0o755)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with locked(self.config.paths.state / ".lock"):
            yield

    @contextlib.contextmanager
    def _context(
        self, shop_mode: str = "fragile", shop_options: dict[str, str] | None = None
    ) -> Iterator[Context]:
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture 127.0.0.1.
        with httpx.Client(timeout=httpx.Timeout(2.0), trust_env=False, verify=system_tls()) as http:
            yield Context(
                config=self.config,
                programs=self.programs,
                http=http,
                shop_mode=shop_mode,
                shop_options=shop_options or {},
                scrape_jobs=load_scrape_jobs(self.config.paths.scrape_jobs_file),
            )

    def _statuses(self, names: tuple[str, ...]) -> list[ComponentStatus]:
        state = load_state(self.config.paths.stack_file)
        with self._context() as ctx:
            return [
                self._status_of(c, state.components.get(c.name), ctx)
                for c in COMPONENTS
                if c.name in names
            ]

    def _status_of(
        self, component: Component, record: ComponentRecord | None, ctx: Context
    ) -> ComponentStatus:
        port = next(iter(component.ports(self.config.ports).values()))
        if record is None:
            return ComponentStatus(name=component.name, state="stopped", port=port)
        recorded = ComponentStatus(
            name=component.name,
            state="dead",
            port=record.port,
            version=record.version,
            mode=record.mode,
            detail="recorded, but its process is gone",
            log=record.log,
        )
        if not is_alive(record.pid, record.start_ticks):
            return recorded
        problem = component.probe(ctx, record)
        return dataclasses.replace(
            recorded,
            state="running" if problem is None else "unhealthy",
            pid=record.pid,
            pgid=record.pgid,
            detail=problem or "",
        )

    def _forget_dead(self, state: StackState) -> StackState:
        dead = [
            name
            for name, record in state.components.items()
            if not is_alive(record.pid, record.start_ticks)
        ]
        for name in dead:
            logger.warning(
                "%s is recorded in %s but no longer runs", name, self.config.paths.stack_file
            )
            state = state.without(name)
        if dead:
            save_state(self.config.paths.stack_file, state)
        return state

    def _shop_metrics_separate(
        self, state: StackState, ctx: Context, names: tuple[str, ...]
    ) -> bool:
        """Whether the shop's /metrics are on their own ports once this ``up`` is done."""
        if set(names) & set(GROUPS["shop"]):
            # ExperimentError (exit 2) for a bad option, before anything starts.
            return separate_shop_metrics(ctx.shop_mode, ctx.shop_options)
        for name in GROUPS["shop"]:
            record = state.components.get(name)
            if record is None or record.mode is None:
                continue
            try:
                return separate_shop_metrics(record.mode, record.options)
            except ExperimentError as exc:
                logger.warning("the running %s has options this version rejects: %s", name, exc)
        return False

    def _stop_shop_in_other_mode(
        self, state: StackState, ctx: Context, names: tuple[str, ...]
    ) -> list[str]:
        """Stop running shop services whose mode or options differ from the request."""
        if not set(names) & set(GROUPS["shop"]):
            return []
        stale = [
            name
            for name in GROUPS["shop"]
            if name in state.components
            and (state.components[name].mode, state.components[name].options)
            != (ctx.shop_mode, ctx.shop_options)
        ]
        if stale:
            logger.info("restarting %s in mode %s", ", ".join(stale), ctx.shop_mode)
            for name in reversed(stale):
                self._stop(by_name(name), state.components[name], ctx)
                state = state.without(name)
                save_state(self.config.paths.stack_file, state)
        return stale

    def _timeout(self, component: Component) -> float:
        return self.start_timeout if self.start_timeout is not None else component.start_timeout

    def _check_running(self, component: Component, record: ComponentRecord, ctx: Context) -> None:
        problem: list[str | None] = [None]

        def healthy() -> bool:
            problem[0] = component.probe(ctx, record)
            return problem[0] is None

        if not wait_until(healthy, timeout=self._timeout(component), interval=0.2):
            raise StackError(
                f"{component.name} runs (pid {record.pid}) but is not healthy: {problem[0]}; "
                "`resilience stack down` then `up` restarts it",
                component=component.name,
                log_tail=tail(ctx.log(component.name)),
            )
        component.ensure(ctx)

    def _start_wave(self, components: list[Component], ctx: Context) -> list[ComponentRecord]:
        """Start ``components`` together; on any failure stop all of them and raise."""
        for component in components:
            self._check_startable(component, ctx)
        launched: list[_Launched] = []
        try:
            for component in components:
                launched.append(self._launch(component, ctx))
            self._await_healthy(launched, ctx)
            return [self._complete(item, ctx) for item in launched]
        except BaseException:
            for item in launched:
                item.component.stop(ctx, item.record)
            raise

    def _check_startable(self, component: Component, ctx: Context) -> None:
        component.check_programs(ctx)
        for port_name, port in component.bound_ports(ctx).items():
            if not port_is_free(port, self.config.host):
                raise StackError(
                    f"port {port} ({port_name}) that {component.name} needs is already in use "
                    f"by a process that is not part of this stack ({self.config.paths.state}); "
                    "stop that process or move the stack with RESILIENCE_PORT_OFFSET",
                    component=component.name,
                )

    def _launch(self, component: Component, ctx: Context) -> _Launched:
        name = component.name
        self.config.paths.logs.mkdir(parents=True, exist_ok=True)
        log = ctx.log(name)
        with log.open("ab") as handle:
            handle.write(f"\n=== resilience: starting {name} at {now_iso()} ===\n".encode())
            offset = handle.tell()
        try:
            component.prepare(ctx)
        except OSError as exc:
            raise StackError(f"could not prepare {name}: {exc}", component=name) from exc
        launch = component.launch(ctx)
        logger.info("starting %s: %s", name, " ".join(launch.argv))
        pid = spawn_detached(launch)
        info = proc_info(pid)
        if info is None:
            raise StackError(
                f"{name} exited at once", component=name, log_tail=tail(log, start=offset)
            )
        ports = component.bound_ports(ctx)
        shop = component.kind == "shop"
        record = ComponentRecord(
            name=name,
            pid=pid,
            pgid=info.pgid,
            start_ticks=info.start_ticks,
            port=next(iter(ports.values())),
            ports=ports,
            mode=ctx.shop_mode if shop else None,
            options=dict(ctx.shop_options) if shop else {},
            log=str(log),
            started_at=now_iso(),
        )
        timeout = self._timeout(component)
        return _Launched(component, record, log, offset, timeout, time.monotonic() + timeout)

    def _await_healthy(self, launched: list[_Launched], ctx: Context) -> None:
        """Poll every launched component until healthy; StackError for the first that fails."""
        waiting = list(launched)
        while waiting:
            for item in list(waiting):
                record = item.record
                if not is_alive(record.pid, record.start_ticks):
                    raise item.failure("it exited during start-up")
                problem = item.component.probe(ctx)
                if problem is None:
                    waiting.remove(item)
                elif time.monotonic() > item.deadline:
                    raise item.failure(f"not healthy after {item.timeout:.0f}s: {problem}")
            if waiting:
                time.sleep(0.1)

    def _complete(self, item: _Launched, ctx: Context) -> ComponentRecord:
        try:
            item.component.ensure(ctx)
            version = item.component.version(ctx)
        except StackError as exc:
            raise item.failure(str(exc)) from exc
        return item.record.model_copy(update={"version": version})

    def _stop(self, component: Component, record: ComponentRecord, ctx: Context) -> bool:
        """Stop one recorded component; False when it was not running. Waits for its ports."""
        if not is_alive(record.pid, record.start_ticks):
            return False
        logger.info("stopping %s (pid %d)", component.name, record.pid)
        if not component.stop(ctx, record):
            raise StackError(
                f"{component.name} (process group {record.pgid}) survived SIGKILL",
                component=component.name,
            )
        busy: list[int] = []

        def ports_free() -> bool:
            busy[:] = [p for p in record.ports.values() if not port_is_free(p, self.config.host)]
            return not busy

        if not wait_until(ports_free, timeout=PORT_FREE_TIMEOUT, interval=0.1):
            raise StackError(
                f"{component.name} stopped but port(s) {busy} are still bound "
                f"after {PORT_FREE_TIMEOUT:.0f}s",
                component=component.name,
            )
        return True

    def _roll_back(self, started: list[str], ctx: Context) -> None:
        state = load_state(self.config.paths.stack_file)
        for name in reversed(started):
            record = state.components.get(name)
            if record is None:
                continue
            try:
                self._stop(by_name(name), record, ctx)
            except StackError as exc:
                logger.error("could not stop %s while rolling back: %s", name, exc)
            state = state.without(name)
            save_state(self.config.paths.stack_file, state)


@dataclass(frozen=True)
class _Launched:
    """A component whose process runs but has not passed its checks yet."""

    component: Component
    record: ComponentRecord
    log: Path
    offset: int
    timeout: float
    deadline: float

    def failure(self, problem: str) -> StackError:
        name = self.component.name
        return StackError(
            f"{name} could not start: {problem} (log: {self.log})",
            component=name,
            log_tail=tail(self.log, start=self.offset),
        )
