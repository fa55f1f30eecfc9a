"""``run_experiment``: one experiment, one clock, one run directory, one verdict.

The order of things: the signal handlers are in place before anything (``InterruptGate``);
the run directory, the resolved experiment and a journal with status ``starting`` come
first, then this run is marked active on the stack; sweep leftovers and get the target
ready; start the load workers and wait until they are ready; fix t0 (status ``running``);
run the live loop (load, faults, guards, the rig's health); then — on every path — heal
every fault first, stop the load, and only then analyse, report and take down what the run
started.

Exit paths and what they leave in the journal:
    normal end            passed (0), failed (1) or inconclusive (3), decided by the analysis
    guard tripped         aborted (1): faults healed at once, analysis of what was recorded
    SIGINT / SIGTERM      aborted (130): faults healed within a second, no analysis, reports;
                          a second signal only hurries the shutdown
    invalid input         no run directory if it happens before; else error (2)
    stack/load trouble    error (3), also Toxiproxy lost mid-run (noticed within a second)
    SIGKILL               starting/running; the next start's sweep heals and marks it
                          aborted; the load workers die with the process (parent-death signal)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from resilience.errors import (
    EXIT_INTERRUPTED,
    ExperimentError,
    GuardTripped,
    Interrupted,
    ResilienceError,
    StackError,
)
from resilience.experiment.model import (
    Experiment,
    Safety,
    check_http_url,
    is_loopback,
    normalize_host,
)
from resilience.faults.catalogue import specs_from_model
from resilience.faults.timeline import FaultTimeline
from resilience.load.distributed import DEFAULT_BIND, DEFAULT_WAIT_S, Distributed, parse_address
from resilience.load.engine import LoadEngine
from resilience.load.plan import plan_from_experiment
from resilience.load.recorder import LoadRecorder
from resilience.load.samples import LoadEvent, RemoteWorker, WorkerExit
from resilience.observe.guards import GuardMonitor, PromqlGuard, guard_of
from resilience.observe.prometheus import HttpPrometheusSource
from resilience.rundir.journal import Journal, JournalData, Status
from resilience.rundir.layout import RunDir
from resilience.runner.files import RunFiles
from resilience.runner.live import LiveRun, stop_engine
from resilience.runner.live_export import LiveExport, start_for_run
from resilience.runner.marks import FaultMoments, PhaseMarker
from resilience.runner.observer import RunObserver
from resilience.runner.parts import Parts, check_parts, resolve_parts, stack_parts
from resilience.runner.procfs import postgres_max_connections
from resilience.runner.rig import RigMonitor, Watched
from resilience.runner.search import LiveSearch
from resilience.runner.signals import InterruptGate
from resilience.runner.target import (
    PreparedTarget,
    active_run,
    clear_active,
    dependencies,
    mark_active,
    prepare_target,
    release_target,
    sweep_abandoned_runs,
)
from resilience.stack import StackConfig
from resilience.vocabulary import SHOP_MODES, MonotonicClock, ShopMode, iso_utc

if TYPE_CHECKING:
    # The analysis, the evidence and the own spans are imported when the load is over:
    # a run's first request does not wait for them (docs/architecture.md, "Start-up").
    from resilience.analysis.analyse import Verdict

logger = logging.getLogger(__name__)

START_LEAD = 0.05
"""Seconds between every worker having said it is ready (Locust and the worker's modules
imported) and t0: the journal's update, then the plan down a pipe and parsed (a
millisecond). The rest of the set-up (phase marks, fault timeline, recorder, guards, rig)
follows the start: nothing of it is needed before the first fault or the first event."""
HEAL_BUDGET = 0.9
POSTGRES_DEFAULT_CONNECTIONS = 100
"""PostgreSQL's own default, when its configuration files do not say."""


@dataclass(frozen=True)
class RunOptions:
    """How to run (the experiment says what). Checked when made: a bad value raises
    ``ExperimentError`` naming the option, whoever builds it (the CLI or a library user)."""

    out: Path | None = None
    runs_root: Path = Path("runs")
    shop_mode: ShopMode | None = None
    target: str | None = None
    workers: int | None = None
    manage_stack: bool = True
    config: StackConfig | None = None
    reports: bool = True
    prometheus: str | None = None
    """The user's Prometheus (``--prometheus``); replaces the file's ``observe.prometheus.url``."""
    traces: str | None = None
    """The user's trace backend (``--traces``); replaces ``observe.traces.url``."""
    toxiproxy: str | None = None
    """The user's Toxiproxy API (``--toxiproxy``); replaces ``toxiproxy.url``."""
    allow_hosts: tuple[str, ...] = ()
    """Hosts off loopback that traffic may go to, besides the file's ``safety.allow_hosts``
    (``--allow-host``). Whether a URL's host is allowed is decided when the run starts."""
    expect_workers: int | None = None
    """A distributed run: this many ``resilience worker`` processes join its master (wins
    over the experiment's ``load.distributed.workers``)."""
    master_bind: str | None = None
    """Where the master listens, ``HOST[:PORT]`` (default 127.0.0.1 and the stack's
    ``load_master`` port); another interface only when the user names it."""

    def __post_init__(self) -> None:
        if self.shop_mode is not None and self.shop_mode not in SHOP_MODES:
            raise ExperimentError(
                "invalid --shop-mode",
                expected=" or ".join(SHOP_MODES),
                got=repr(self.shop_mode),
            )
        if self.shop_mode is not None and self.target is not None:
            raise ExperimentError(
                "--shop-mode does not go with --target: the mode is the built-in shop's, and "
                "with --target the service tested is yours, as it runs",
                expected="one of --shop-mode (the built-in shop) or --target URL (your service)",
            )
        for name in ("target", "prometheus", "traces", "toxiproxy"):
            value = getattr(self, name)
            if value is not None:
                checked = check_http_url(value, option=f"--{name}", part=name != "target")
                object.__setattr__(self, name, checked)
        hosts = tuple(self.allow_hosts)
        object.__setattr__(self, "allow_hosts", tuple(normalize_host(h) for h in hosts))
        if self.workers is not None and not 1 <= self.workers <= 1024:
            raise ExperimentError(
                "invalid --workers",
                expected="1 to 1024",
                got=str(self.workers),
            )
        if self.expect_workers is not None and not 1 <= self.expect_workers <= 1024:
            raise ExperimentError(
                "invalid --expect-workers",
                expected="1 to 1024",
                got=str(self.expect_workers),
            )
        if self.master_bind is not None:
            parse_address(self.master_bind, default_port=1, option="--master-bind")
        if self.workers is not None and self.expect_workers is not None:
            raise ExperimentError(
                "--workers and --expect-workers do not go together: a distributed run's "
                "load runs in the workers that join it",
                expected="one of them",
                got=f"--workers {self.workers} --expect-workers {self.expect_workers}",
            )
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise ExperimentError(
                "invalid --out: it names a file",
                expected="a directory (new or existing)",
                got=str(self.out),
            )

    def parts_for(self, experiment: Experiment, config: StackConfig) -> Parts:
        """Whose Prometheus, trace backend and Toxiproxy: these options' flags over the
        experiment file over the stack. A host off loopback and not allowed, or the user's
        parts with the built-in shop, is ``ExperimentError``. Sends nothing."""
        return resolve_parts(
            experiment,
            config=config,
            target=self.target,
            flags={
                "prometheus": self.prometheus,
                "traces": self.traces,
                "toxiproxy": self.toxiproxy,
            },
            allow_hosts=self.allow_hosts,
        )


@dataclass(frozen=True)
class RunResult:
    """What a run ended with: its directory (None when it failed before making one), the
    final status, the exit code and why, the journal as written, and the report files."""

    run_dir: Path | None
    status: Status
    exit_code: int
    reason: str
    journal: JournalData | None = None
    report_files: tuple[Path, ...] = ()


def prepare_with_parts(
    experiment: Experiment,
    options: RunOptions,
    parts: Parts,
    config: StackConfig,
    *,
    say: Callable[[str], None],
) -> PreparedTarget:
    """Before anything starts or is sent, the user's parts answer (exit 3); then the
    target is made ready (``prepare_target``). A run's and a game day's first steps."""
    source = experiment.source
    check_parts(parts, file=source.name if source else None, say=say)
    return prepare_target(
        experiment,
        config=config,
        target_url=options.target,
        shop_mode=options.shop_mode,
        manage_stack=options.manage_stack,
        say=say,
        parts=parts,
    )


def rig_probes(parts: Parts, target_url: str) -> dict[str, str]:
    """The health poll of each source (the stack's or the user's): cheap GETs that any live
    instance answers (only a 5xx or no answer counts as down, so a part behind auth that
    answers 401 to a bare GET is up)."""
    health = "/api/echo" if parts.traces.kind == "tempo" else "/api/v3/services"
    return {
        "prometheus": f"{parts.prometheus.url}/-/ready",
        "traces": f"{parts.traces.url}{health}",
        "toxiproxy": f"{parts.toxiproxy.url}/version",
        "target": target_url,
    }


def watched_processes(prepared: PreparedTarget, config: StackConfig) -> list[Watched]:
    """The local stack's processes; the shop's marked as the target's when it is the target:
    each shop service is one asyncio event loop (one core at most); PostgreSQL's client
    backends are counted against its ``max_connections``."""
    shop = {"gateway", "orders", "catalog"} if prepared.builtin else set()
    pg_limit = postgres_max_connections(config.paths.pgdata) or POSTGRES_DEFAULT_CONNECTIONS
    return [
        Watched(
            name,
            record.pid,
            record.start_ticks,
            record.log,
            target=name in shop,
            single_core=name in shop,
            max_connections=pg_limit if name == "postgres" else None,
        )
        for name, record in sorted(prepared.stack.records().items())
    ]


def experiment_ports(experiment: Experiment, target_url: str) -> list[int]:
    """The ports the target and its declared dependencies listen on (this machine): the
    processes behind them are the experiment's, not other load (the rig's health)."""
    parts = urlsplit(target_url)
    ports = []
    if is_loopback(parts.hostname or ""):
        ports.append(parts.port or (443 if parts.scheme == "https" else 80))
    for proxy in experiment.proxies:
        host, _, port = proxy.upstream.rpartition(":")
        if is_loopback(host) and port.isdigit():
            ports.append(int(port))
    return ports


def target_port(target_url: str) -> int | None:
    """The port the target listens on, when it is on this machine."""
    parts = urlsplit(target_url)
    if not is_loopback(parts.hostname or ""):
        return None
    return parts.port or (443 if parts.scheme == "https" else 80)


def default_run_dir(root: Path, name: str, now: float | None = None) -> Path:
    stamp = datetime.fromtimestamp(now or time.time(), tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = root / f"{stamp}-{name}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{stamp}-{name}-{suffix}"
    return candidate


class _Run:
    """The state of one run, so that ``finally`` can undo exactly what was done."""

    def __init__(
        self,
        experiment: Experiment,
        options: RunOptions,
        observer: RunObserver,
        gate: InterruptGate,
    ) -> None:
        self.experiment = experiment
        self.options = options
        self.observer = observer
        self.gate = gate
        self.config = options.config or StackConfig.from_env()
        self.stop = gate.stop
        self._marked_active = False
        self.rig: RigMonitor | None = None
        self.prepared: PreparedTarget | None = None
        self.run_dir: Path | None = None
        self.journal: Journal | None = None
        self.timeline: FaultTimeline | None = None
        self.engine: LoadEngine | None = None
        self.recorder: LoadRecorder | None = None
        self.guards: GuardMonitor | None = None
        self.guard_source: HttpPrometheusSource | None = None
        self.parts: Parts | None = None
        self.clock: MonotonicClock | None = None
        self.export: LiveExport | None = None
        self.marker: PhaseMarker | None = None
        self.moments: FaultMoments | None = None
        self.load_end = experiment.total_duration
        self.spike_phases = experiment.scheduled_phases() if experiment.spike() else None
        """A run phased by a load spike: its scheduled phases, so the live display and
        metrics say spike and recovery as the analysis will."""
        self.stopped_early = False
        """A capacity search ended its load before its plan did (no drain: the workers
        would go on sending until their plan's end)."""
        self._load_stopped = False
        self.files = RunFiles(experiment)
        """The run directory's redactor, log and file modes (runner/files.py)."""
        self.redactor = self.files.redactor

    # -- set-up ---------------------------------------------------------------------

    def open(self) -> None:
        """Whose parts and where traffic may go (exit 2: invalid input, no run directory);
        then the run directory, the resolved experiment and a ``starting`` journal, first
        of all; then this run is marked active on the stack (a killed run's marker swept
        first), and a signal that came meanwhile takes effect."""
        self.parts = self.options.parts_for(self.experiment, self.config)
        self.run_dir = self.options.out or default_run_dir(
            self.options.runs_root, self.experiment.name
        )
        layout = self.files.create(self.run_dir, recorded=self._recorded_experiment())
        self.journal = Journal.start(
            layout.journal,
            experiment=self.experiment.name,
            profile=self.experiment.profile,
            t0=time.time(),
            redactor=self.redactor,
            status="starting",
        )
        self.gate.arm()
        for line in sweep_abandoned_runs(self.config):
            self.observer.message(line)
        other = active_run(self.config)
        if other is not None:
            raise StackError(
                f"another run is in progress on this stack (pid {other[0]}, {other[1]}): "
                "two runs would fault each other's target; wait for it or stop it",
                component="run",
            )
        mark_active(self.config, self.journal.path)
        self._marked_active = True

    def prepare(self) -> None:
        assert self.parts is not None
        self.prepared = prepare_with_parts(
            self.experiment, self.options, self.parts, self.config, say=self.observer.message
        )
        # The process's files private from here on (the workers' logs, anything else), not
        # before: the stack writes files that PostgreSQL, another user, must read. The run
        # directory's own writers make their files private whenever they write.
        self.files.private()

    def _recorded_experiment(self) -> Experiment:
        """The experiment as run: hosts allowed by --allow-host join ``safety.allow_hosts``,
        so that the copy in the run directory loads again (``resilience analyse``)."""
        if not self.options.allow_hosts:
            return self.experiment
        hosts = sorted(self.experiment.allowed_hosts(self.options.allow_hosts))
        return self.experiment.model_copy(update={"safety": Safety(allow_hosts=hosts)})

    def start_load(self) -> None:
        assert self.prepared is not None and self.run_dir is not None
        assert self.journal is not None
        plan = plan_from_experiment(
            self.experiment, self.prepared.url, workers=self.options.workers
        )
        distributed = self._distributed()
        self.engine = LoadEngine(
            plan,
            workers=self.options.workers,
            log_dir=RunDir(self.run_dir).logs,
            distributed=distributed,
            progress=self.observer.message,
        )
        if distributed is None:
            self.observer.message(f"starting {self.engine.workers} load worker(s)")
        else:
            self.observer.message(
                f"distributed load: a master on {distributed.address} for "
                f"{distributed.workers} worker(s)"
            )
        self.engine.prepare()
        t0 = time.time() + START_LEAD
        self.clock = MonotonicClock(origin_epoch=t0)
        self.journal.update(
            status="running",
            t0=t0,
            started_at=iso_utc(t0),
            target=self.prepared.url,
            shop_mode=self.prepared.shop_mode,
            builtin=self.prepared.builtin,
            dependencies=dependencies(self.experiment, self.prepared.builtin, self.config),
            duration=self.load_end,
            workers=self.engine.workers,
            distributed=(
                {"address": self.engine.address, "workers": self.engine.workers}
                if distributed is not None
                else None
            ),
            sweep=self.prepared.sweep.summary() if self.prepared.sweep else None,
            parts=self.parts.to_journal() if self.parts is not None else {},
        )
        self.engine.start(t0)
        if self.experiment.faults:
            journal = self.journal
            self.marker = PhaseMarker(
                self.clock, self.engine.send, lambda marks: journal.update(marks=marks)
            )
        moments = self.moments = FaultMoments(
            self.journal, self.marker, then=self.observer.fault_event
        )
        self.timeline = FaultTimeline(
            specs_from_model(self.experiment.faults),
            self.prepared.toxiproxy,
            self.clock,
            moments.event,
            ledger=self.config.paths.fault_ledger,
            on_before_apply=moments.before_apply,
        )
        moments.records = self.timeline.records
        moments.sync()
        self.recorder = LoadRecorder(
            self.run_dir,
            t0=t0,
            workers=self.engine.workers,
            endpoints=plan.endpoints(),
            redactor=self.redactor,
            plan=self.engine.plan,
        )
        if distributed is not None:
            self.recorder.add_listener(self._on_remote_event)
        self.guards = self._guard_monitor()
        self.export = start_for_run(
            self.config.ports.load_metrics,
            self.run_dir.name,
            experiment=self.experiment.name,
            profile=self.experiment.profile,
            timeline=self.timeline,
            recorder=self.recorder,
            names=self.redactor.redact_text,
            scheduled=self.spike_phases,
            clock=self.clock,
        )
        self.rig = self._rig_monitor()
        self.rig.start()
        if self.guards is not None:
            self.guards.start()
        self.observer.started(self.run_dir, self.experiment, self.load_end)

    def _distributed(self) -> Distributed | None:
        """The distributed setting of this run (None: local workers)."""
        spec = self.experiment.load.distributed
        count = self.options.expect_workers or (spec.workers if spec is not None else None)
        if count is None:
            return None
        host, port = parse_address(
            self.options.master_bind or DEFAULT_BIND,
            default_port=self.config.ports.load_master,
            option="--master-bind",
        )
        distributed = Distributed(
            workers=count,
            bind=host,
            port=port,
            wait=spec.wait if spec is not None else DEFAULT_WAIT_S,
        )
        if not distributed.loopback:
            self.observer.message(
                f"the master listens on {distributed.address}: Locust's ZeroMQ channel has "
                "no authentication and no encryption, and the plan (headers, secrets) "
                "travels on it; keep it on a private network or a tunnel (docs/security.md)"
            )
        return distributed

    def _on_remote_event(self, event: LoadEvent) -> None:
        """A distributed run's workers in the journal: who ran which share, who was lost."""
        if self.journal is None:
            return
        if isinstance(event, RemoteWorker) and event.state == "assigned":
            self.journal.event(
                "load_worker_assigned",
                self._now(),
                worker=event.worker,
                host=event.host,
                pid=event.pid,
                clock_offset=event.offset,
                round_trip=event.rtt,
            )
        elif isinstance(event, WorkerExit) and event.reason == "lost" and self.recorder:
            lost = next((w for w in self.recorder.lost if w.worker == event.worker), None)
            if lost is None:
                return
            self.journal.event(
                "load_worker_lost",
                event.at if event.at is not None else self._now(),
                text=f"{lost.text()}: missing load, not the target's failure",
                **lost.to_dict(),
            )
            self.observer.rig_event(
                f"{lost.text()}: missing load, not the target's failure", severe=True
            )

    def live(self) -> None:
        assert self.clock and self.engine and self.recorder and self.timeline
        search = LiveSearch.of(self.experiment)
        live = LiveRun(
            self.clock,
            self.engine,
            self.recorder,
            self.timeline,
            self.guards,
            self.observer,
            self.load_end,
            self.stop,
            between=self.check_rig,
            marker=self.marker,
            search=search,
            spike_phases=self.spike_phases,
        )
        try:
            live.run()
        finally:
            if search is not None and search.broke_at is not None:
                self._search_stopped(search, live.end)

    def _search_stopped(self, search: LiveSearch, end: float) -> None:
        """A capacity search whose SLOs broke ends its load early: journal when and why."""
        self.stopped_early = end < self.load_end
        self.load_end = min(self.load_end, end)
        if self.journal is not None and search.broke_at is not None:
            self.journal.event(
                "search_slo_broke",
                search.broke_at,
                text=search.message(),
                breaches=list(search.why),
                stop_at=round(end, 3),
            )

    # -- the rig ----------------------------------------------------------------------

    def _rig_monitor(self) -> RigMonitor:
        assert self.prepared is not None and self.run_dir is not None and self.clock is not None
        engine, recorder = self.engine, self.recorder
        assert engine is not None and recorder is not None

        def load_state() -> tuple[int, int]:
            live = recorder.live(window_s=1)
            return live.users, live.in_flight

        return RigMonitor(
            self.run_dir,
            self.clock,
            probes=rig_probes(self.parts or stack_parts(self.config), self.prepared.url),
            worker_pids=lambda: engine.pids,
            watched=watched_processes(self.prepared, self.config),
            ports=experiment_ports(self.experiment, self.prepared.url),
            redactor=self.redactor,
            target_port=target_port(self.prepared.url),
            load_state=load_state,
        )

    def check_rig(self, now: float) -> None:
        """Between live ticks: journal and tell what the rig monitor noticed; Toxiproxy
        lost ends the run (exit 3): the faults and the target's dependencies go through
        it, so nothing measured from then on means anything."""
        if self.rig is None:
            return
        for event in self.rig.events():
            if self.journal is not None:
                self.journal.event(f"rig_{event.kind}", event.t, text=event.text)
            severe = event.kind in ("source_lost", "process_died") or "overloaded" in event.kind
            self.observer.rig_event(event.text, severe=severe or "saturated" in event.kind)
            if event.kind == "source_lost" and event.source == "toxiproxy":
                raise StackError(
                    f"{event.text}: the faults and the target's dependencies go through it, "
                    "so the run cannot go on",
                    component="toxiproxy",
                )
        del now

    def _guard_monitor(self) -> GuardMonitor | None:
        guards = [guard_of(g) for g in self.experiment.guards]
        if not guards:
            return None
        if any(isinstance(g, PromqlGuard) for g in guards):
            assert self.parts is not None
            self.guard_source = self.parts.prometheus_source(timeout=2.0)
        recorder = self.recorder
        assert recorder is not None
        return GuardMonitor(
            guards,
            source=self.guard_source,
            live_stats=lambda endpoint: recorder.live(window_s=5, endpoint=endpoint),
            clock=self.clock,
        )

    # -- faults -----------------------------------------------------------------------

    def heal(self) -> None:
        """Heal everything, first thing on every exit path."""
        if self.timeline is None:
            return
        report = self.timeline.heal_all(budget=HEAL_BUDGET)
        if self.marker is not None:
            self.marker.finish()
        if self.journal is not None:
            if self.moments is not None:
                self.moments.sync()
            if report.failed:
                self.journal.event(
                    "heal_failed", self._now(), failed=[f"{i}: {why}" for i, why in report.failed]
                )

    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    # -- tear-down -------------------------------------------------------------------

    def stop_load(self, *, drain: bool) -> None:
        if self._load_stopped:
            return
        self._load_stopped = True
        if self.guards is not None:
            self.guards.stop(join_timeout=3.0)
        if self.guard_source is not None:
            self.guard_source.close()
        if self.engine is None:
            self._stop_rig()
            return
        hurried = self.gate.hurry.is_set()
        try:
            drain = drain and not self.stopped_early
            if drain and not hurried and self.recorder is not None and self.clock is not None:
                live = LiveRun(
                    self.clock,
                    self.engine,
                    self.recorder,
                    self.timeline,  # type: ignore[arg-type]
                    None,
                    self.observer,
                    self.load_end,
                    self.stop,
                    marker=self.marker,
                )
                live.drain(self.experiment.load.client_timeout + 3.0)
        finally:
            stop_engine(
                self.engine,
                self.recorder,
                grace=0.5 if hurried else 2.0 if drain else 1.0,
                files=self.files,
            )
            self._report_setup_failures()
            self._report_capture_misses()
            self._stop_rig()

    def _stop_rig(self) -> None:
        if self.rig is not None:
            self.rig.stop()
            for event in self.rig.events():  # noticed while the load stopped
                if self.journal is not None:
                    self.journal.event(f"rig_{event.kind}", event.t, text=event.text)

    def _report_capture_misses(self) -> None:
        """OK answers that lacked a value to capture (or a written id): say so (terminal and
        journal); the requests stay OK, the requests that needed the value were not sent."""
        recorder = self.recorder
        if recorder is not None:
            self._report_dropped(
                "capture_missed", "answers", recorder.capture_missed, recorder.capture_errors,
                f"nothing captured from {recorder.capture_missed} OK answer(s)",
            )  # fmt: skip

    def _report_setup_failures(self) -> None:
        """Users whose on_start steps failed stopped: say so (terminal and journal)."""
        recorder = self.recorder
        if recorder is not None:
            self._report_dropped(
                "setup_failed", "users", recorder.setup_failed, recorder.setup_errors,
                f"setup failed for {recorder.setup_failed} user(s) (they stopped)",
            )  # fmt: skip

    def _report_dropped(
        self, kind: str, counted: str, count: int, errors: list[str], headline: str
    ) -> None:
        """Load the workers did not send or could not use: a warning, a terminal line and a
        journal event ``kind`` with the count (as ``counted``) and the errors."""
        if not count:
            return
        message = f"{headline}: " + "; ".join(errors)
        logger.warning("%s", message)
        self.observer.message(message)
        if self.journal is not None:
            self.journal.event(kind, self._now(), **{counted: count}, errors=list(errors))

    def finish(self, status: Status, exit_code: int, reason: str) -> RunResult:
        """Final status in the journal, then the reports (bounded), then the machine back."""
        self.gate.disarm()
        journal_data = None
        reason = self.redactor.redact_text(reason)
        if self.journal is not None:
            self.journal.finish(status, ended=time.time(), exit_code=exit_code, reason=reason)
            journal_data = self.journal.written()  # what the caller shows: masked
        self._close_export()  # served until now: Prometheus has the last seconds
        files: list[Path] = []
        if self.options.reports and self.run_dir is not None and self.journal is not None:
            files = self._reports()
        self.finish_quietly()
        return RunResult(self.run_dir, status, exit_code, reason, journal_data, tuple(files))

    def _close_export(self) -> None:
        if self.export is not None:
            self.export.close()
            self.export = None

    def finish_quietly(self) -> None:
        """Everything ``finish`` does besides the journal and reports (also for a run that
        never got a journal): the active marker, the file modes, what the run started, the
        run log."""
        self.files.close_private()
        if self._marked_active:
            clear_active(self.config)
            self._marked_active = False
        self._close_export()
        if self.prepared is not None:
            try:
                release_target(self.prepared)
            except ResilienceError as exc:
                logger.warning("could not take down what the run started: %s", exc)
            self.prepared = None
        self.files.close()

    def _reports(self) -> list[Path]:
        """The reports, written in a thread the run waits for at most ``REPORT_BUDGET``
        seconds (``HURRIED_REPORT_BUDGET`` after a second signal): a slow report never
        keeps an interrupted run from exiting."""
        assert self.run_dir is not None
        run_dir = self.run_dir
        written: list[Path] = []

        def write() -> None:
            from resilience.report import write_reports

            try:
                paths = write_reports(run_dir, redactor=self.redactor)
            except Exception as exc:  # a report bug must not hide the verdict
                logger.exception("could not write the reports: %s", exc)
                return
            written.extend(p for p in (paths.html, paths.junit, paths.markdown) if p is not None)

        thread = threading.Thread(target=write, name="reports", daemon=True)
        thread.start()
        budget = HURRIED_REPORT_BUDGET if self.gate.hurry.is_set() else REPORT_BUDGET
        thread.join(budget)
        if thread.is_alive():
            logger.warning("the reports took longer than %.0f s; the run ends without them", budget)
            return []
        return written


REPORT_BUDGET = 60.0
"""Seconds the reports may take before the run ends without them (5 s when hurried)."""
HURRIED_REPORT_BUDGET = 5.0


def run_experiment(
    experiment: Experiment,
    options: RunOptions | None = None,
    observer: RunObserver | None = None,
    *,
    interrupts: InterruptGate | None = None,
) -> RunResult:
    """Run ``experiment`` end to end and return its verdict. Heals every fault on every path.

    ``interrupts``: a gate the caller installed early (the CLI, before loading the
    experiment), so a signal that came before the run directory existed still ends in a
    journal; without one the run installs its own and restores the handlers at the end."""
    gate = interrupts or InterruptGate()
    gate.install()
    run = _Run(experiment, options or RunOptions(), observer or RunObserver(), gate)
    result: RunResult | None = None
    try:
        result = _run_to_end(run)
        return result
    finally:
        run.files.close_private()  # every path gives the process its umask back
        if interrupts is None:
            gate.restore()
        if result is not None:
            run.observer.finished(result)


def _run_to_end(run: _Run) -> RunResult:
    """Every exit path of a run in one place, so that each heals first."""
    try:
        run.open()
        run.prepare()
        run.start_load()
        run.live()
    except GuardTripped as trip:
        return _after_guard(run, trip)
    except Interrupted as exc:
        return _after_interrupt(run, exc.signal_name)
    except ResilienceError as exc:
        return _after_error(run, exc)
    except BaseException as exc:
        _after_crash(run, exc)
        raise
    if run.gate.signal_name is not None:
        # The signal's Interrupted was swallowed on its way (a broad ``except`` in a
        # listener it interrupted): the stop event still tells.
        return _after_interrupt(run, run.gate.signal_name)
    return _after_load(run)


def _after_load(run: _Run) -> RunResult:
    """The load ended by itself: heal, stop the load, judge."""
    try:
        run.heal()
        run.stop_load(drain=not run.gate.hurry.is_set())
        run.observer.load_finished()
        verdict = _analyse(run)
    except Interrupted as exc:
        return _after_interrupt(run, exc.signal_name)
    except ResilienceError as exc:
        return _after_error(run, exc)
    assert verdict is not None
    return run.finish(verdict.status, verdict.exit_code, verdict.reason)


def _after_guard(run: _Run, trip: GuardTripped) -> RunResult:
    try:
        run.heal()
        run.load_end = run._now()
        if run.journal is not None:
            run.journal.event("guard_tripped", run.load_end, message=str(trip))
        run.stop_load(drain=False)
        run.observer.load_finished()
        verdict = _analyse(run)
    except Interrupted as exc:
        return _after_interrupt(run, exc.signal_name)
    reason = f"aborted by a guard: {trip}"
    if verdict is not None and verdict.exit_code == 1:
        reason += f"; {verdict.reason}"
    return run.finish("aborted", 1, reason)


def _after_interrupt(run: _Run, signal_name: str) -> RunResult:
    run.gate.disarm()
    run.heal()
    run.stop_load(drain=False)
    if run.journal is not None:
        run.journal.event("interrupted", run._now(), signal=signal_name)
    return run.finish("aborted", EXIT_INTERRUPTED, f"interrupted by {signal_name}")


def _after_error(run: _Run, exc: ResilienceError) -> RunResult:
    run.gate.disarm()
    run.heal()
    run.stop_load(drain=False)
    if run.journal is None:
        run.finish_quietly()
        raise exc
    return run.finish("error", exc.exit_code, str(exc))


def _after_crash(run: _Run, exc: BaseException) -> None:
    run.gate.disarm()
    run.heal()
    run.stop_load(drain=False)
    if run.journal is not None:
        run.finish("error", 3, f"{type(exc).__name__}: {exc}")
    else:
        run.finish_quietly()


def _analyse(run: _Run) -> Verdict | None:
    """Gather the evidence, judge the run from its directory, record the verdict."""
    from resilience.analysis.analyse import analyse, run_phases_of
    from resilience.runner.evidence import gather_from_parts

    if run.journal is None or run.run_dir is None or run.prepared is None:
        return None
    assert run.parts is not None
    run.journal.update(load_end=round(run.load_end, 4))
    gather_from_parts(
        run.run_dir,
        run.experiment,
        run.journal,
        run_phases_of(run.journal.data, run.experiment),
        run.parts,
        config=run.config,
        target_url=run.prepared.url,
        say=run.observer.message,
        redactor=run.redactor,
    )
    verdict = analyse(run.run_dir, experiment=run.files.judged, say=run.observer.message)
    run.journal.record_verdict(**verdict.journal_fields())
    return verdict
