"""Getting the target ready for a run, and putting the machine back afterwards.

The built-in shop: bring up whatever of the local stack is not running (in the requested
shop mode; only the shop restarts when the mode or options differ) and remember what this
run started, so that only that is taken down at the end. Any other target (``--target`` or
``target:`` in the file): the local Toxiproxy, Prometheus and Jaeger are brought up the
same way, except those the user gives (``runner/parts.py``), and the experiment's declared
proxies are created in the Toxiproxy the run uses if missing.

Before anything runs, leftovers of a killed run are swept: ``resilience-`` toxics deleted,
proxies it disabled re-enabled, and its journal marked ``aborted``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from resilience.errors import DependencyUnavailable, ExperimentError, FaultError, StackError
from resilience.experiment.model import Experiment, Readiness
from resilience.faults.catalogue import TOXIC_PREFIX
from resilience.faults.sweeper import SweepReport, sweep
from resilience.faults.toxiproxy import Proxy, ToxiproxyApi, ToxiproxyClient
from resilience.rundir.journal import mark_abandoned
from resilience.runner.parts import Parts, stack_parts
from resilience.stack import PlannedComponent, Stack, StackConfig
from resilience.stack.components import COMPONENT_NAMES
from resilience.stack.topology import stack_proxies
from resilience.vocabulary import BUILTIN_SERVICES, Clock, MonotonicClock, ShopMode

logger = logging.getLogger(__name__)

INFRA = ("postgres", "toxiproxy", "jaeger", "prometheus")
EXTERNAL_INFRA = ("toxiproxy", "jaeger", "prometheus")
ACTIVE_RUN_FILE = "active-run.json"


@dataclass
class PreparedTarget:
    """Where the load goes and what this run changed on the machine."""

    url: str
    builtin: bool
    config: StackConfig
    stack: Stack
    toxiproxy: ToxiproxyClient
    proxies: list[str]
    shop_mode: ShopMode | None = None
    shop_options: dict[str, str] = field(default_factory=dict)
    started: tuple[str, ...] = ()
    sweep: SweepReport | None = None
    abandoned_runs: list[str] = field(default_factory=list)
    scrape_added: dict[str, str] = field(default_factory=dict)
    """Scrape jobs this run added to the stack's Prometheus (removed at the end)."""
    scrape_replaced: dict[str, str] = field(default_factory=dict)
    """Jobs of the same name that were there before, with their URLs (put back at the end)."""


def _options(experiment: Experiment) -> dict[str, str]:
    if experiment.shop is None:
        return {}
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in experiment.shop.options.items()
    }


def _choose(
    stack: Stack,
    experiment: Experiment,
    target_url: str | None,
    shop_mode: ShopMode | None,
    parts: Parts,
) -> tuple[str | None, bool, ShopMode | None, dict[str, str], tuple[str, ...] | None]:
    """The target URL (None: the built-in shop), whether it is built in, the shop's mode and
    options, and the stack components the run needs (None: all; empty: none, every part
    is the user's)."""
    url = target_url or (experiment.target.url if experiment.target else None)
    if shop_mode is not None:
        experiment.check_shop_mode_flag()
    if url is not None:
        needed = parts.stack_components()
        return url, False, None, {}, tuple(n for n in EXTERNAL_INFRA if n in needed)
    mode = shop_mode or (experiment.shop.mode if experiment.shop else None)
    if mode is None:
        mode = "fragile" if stack.shop_mode() == "fragile" else "hardened"
    return None, True, mode, _options(experiment), None


def prepare_target(
    experiment: Experiment,
    *,
    config: StackConfig,
    target_url: str | None,
    shop_mode: ShopMode | None,
    manage_stack: bool = True,
    say: Callable[[str], None] = lambda _m: None,
    parts: Parts | None = None,
) -> PreparedTarget:
    """Make the target reachable and the fault proxies ready; sweep leftovers first.

    ``parts`` (default: all the stack's) says which of Toxiproxy, Prometheus and the trace
    backend are the user's: those are never started here."""
    parts = parts or stack_parts(config)
    stack = Stack(config)
    url, builtin, mode, options, components = _choose(
        stack, experiment, target_url, shop_mode, parts
    )
    started: tuple[str, ...] = ()
    if components == ():
        say("every part is yours: the local stack is not needed")
    elif manage_stack:
        say(f"checking the local stack ({stack.describe()})")
        result = stack.up(shop_mode=mode or "hardened", shop_options=options, components=components)
        # Restarted shop services were running before this run: they stay up afterwards.
        started = tuple(n for n in result.started if n not in result.restarted)
        if result.started:
            say(f"started {', '.join(result.started)} in {result.seconds:.1f}s")
    else:
        _require_running(stack, builtin, say, parts)
    if builtin:
        url = config.gateway_url
    assert url is not None
    other = active_run(config)
    if other is not None:
        raise StackError(
            f"another run is in progress on this stack (pid {other[0]}, {other[1]}): "
            "two runs would fault each other's target; wait for it or stop it",
            component="run",
        )
    client = parts.toxiproxy_client()
    known = [p.name for p in stack_proxies(config.ports)] if builtin else []
    declared = _ensure_declared_proxies(client, experiment)
    prepared = PreparedTarget(
        url=url,
        builtin=builtin,
        config=config,
        stack=stack,
        toxiproxy=client,
        proxies=sorted(set(known) | set(declared)),
        shop_mode=mode,
        shop_options=options,
        started=started,
    )
    _check_fault_proxies(client, experiment)
    if not parts.prometheus.own:
        add_scrape_jobs(prepared, experiment, say)
    elif experiment.scrape_jobs():
        jobs = ", ".join(f"{j.job} ({j.url})" for j in experiment.scrape_jobs())
        message = (
            f"observe.scrape configures the stack's Prometheus, not yours at "
            f"{parts.prometheus.url}: scrape {jobs} in its own configuration"
        )
        logger.warning("%s", message)
        say(message)
    prepared.sweep = _sweep(client, config, prepared.proxies)
    prepared.abandoned_runs = sweep_abandoned_runs(config)
    for line in prepared.abandoned_runs:
        say(line)
    if prepared.sweep is not None and not prepared.sweep.clean:
        say(prepared.sweep.summary())
    if builtin:
        wait_for_settled_shop(config, say)
    elif experiment.target is not None and experiment.target.ready is not None:
        where = experiment.source.name if experiment.source is not None else "the experiment"
        wait_until_ready(url, experiment.target.ready, say, where=where)
    return prepared


def _poll(
    settled: Callable[[], bool],
    *,
    limit: float,
    poll: float,
    clock: Clock,
    waiting: Callable[[], None],
) -> tuple[bool, float]:
    """Ask ``settled`` every ``poll`` seconds until it says yes or ``limit`` seconds have
    passed: (whether it did, the seconds waited). ``waiting`` is called once, before the
    first wait, so that only a wait is said."""
    started = clock.now()
    first = True
    while True:
        if settled():
            return True, clock.now() - started
        waited = clock.now() - started
        if waited >= limit:
            return False, waited
        if first:
            waiting()
            first = False
        clock.sleep(poll)


READY_POLL_S = 0.25
"""How often a run asks a target that declares ``target.ready`` whether it is ready."""


def wait_until_ready(
    url: str,
    ready: Readiness,
    say: Callable[[str], None] = lambda _m: None,
    *,
    where: str = "the experiment",
    poll: float = READY_POLL_S,
    clock: Clock | None = None,
) -> float:
    """Wait until a GET of ``ready.path`` on the target answers as ready; the seconds
    waited. ``DependencyUnavailable`` (exit 3) when it has not within ``ready.within``:
    a service still starting or recovering from an earlier run would break the baseline,
    and the verdict would blame the service for it. TLS is not verified (as the load does
    not); nothing of the URL but the path is said (it may hold credentials)."""
    probe = url.rstrip("/") + ready.path
    what = f"GET {ready.path}"
    last = "did not answer"
    status = 0
    said = False

    def answered_ready() -> bool:
        nonlocal last, status
        try:
            status = client.get(probe).status_code
        except httpx.HTTPError as exc:
            last = f"did not answer ({type(exc).__name__})"
            return False
        last = f"answered {status}"
        return ready.accepts(status)

    def waiting() -> None:
        nonlocal said
        message = f"waiting for the target to be ready: {what} {last} (at most {ready.within:g}s)"
        logger.info("%s", message)
        say(message)
        said = True

    timeout = httpx.Timeout(min(2.0, ready.within))
    with httpx.Client(timeout=timeout, trust_env=False, verify=False) as client:
        done, waited = _poll(
            answered_ready,
            limit=ready.within,
            poll=poll,
            clock=clock or MonotonicClock(),
            waiting=waiting,
        )
    if done:
        if said:
            say(f"the target is ready after {waited:.1f}s ({what} answered {status})")
        return waited
    wanted = " or ".join(str(s) for s in ready.expect) if ready.expect else "a 2xx status"
    raise DependencyUnavailable(
        f"the target is not ready: {what} {last} for {ready.within:g}s "
        f"(target.ready in {where} expects {wanted})",
        fix=(
            "start the service, or let it finish recovering, and run again; or "
            f"correct target.ready in {where} (path, expect, within)"
        ),
        component="target",
    )


SETTLE_LIMIT_S = 15.0
"""How long a run waits for the built-in shop to settle before its load starts."""


def wait_for_settled_shop(
    config: StackConfig,
    say: Callable[[str], None] = lambda _m: None,
    *,
    limit: float = SETTLE_LIMIT_S,
    poll: float = 0.2,
    clock: Clock | None = None,
) -> float:
    """Wait, at most ``limit`` seconds, while the built-in shop's orders service says it is
    reconnecting to its database; the seconds waited.

    The fragile shop pauses 10 s before reconnecting once a database connection was lost
    (an earlier run's fault, or a swept one): a run that started in that pause judged a
    baseline broken before its own fault (seen in the suite, 2026-12-04: the ground-truth
    db-outage cell began 1.5 s into a pause left by the test before it). A service that
    does not answer is not waited for: the stack's own check has judged it."""
    url = f"{config.url('orders')}/health"
    said = silent = False

    def settled() -> bool:
        nonlocal silent
        try:
            body = client.get(url).json()
        except (httpx.HTTPError, ValueError):
            silent = True  # not the shop's answer: not waited for, nothing to say
            return True
        return not (isinstance(body, dict) and body.get("db_reconnecting") is True)

    def waiting() -> None:
        nonlocal said
        say(
            "orders is reconnecting to its database after an earlier fault: "
            f"waiting for it (at most {limit:g}s)"
        )
        said = True

    with httpx.Client(timeout=2.0, trust_env=False) as client:
        done, waited = _poll(
            settled, limit=limit, poll=poll, clock=clock or MonotonicClock(), waiting=waiting
        )
    if not done:
        message = (
            f"orders is still reconnecting to its database after {limit:g}s; "
            "starting anyway (the baseline will show it)"
        )
        logger.warning("%s", message)
        say(message)
    elif said and not silent:
        say(f"orders reconnected after {waited:.1f}s")
    return waited


OBSERVERS = ("prometheus", "jaeger")


@dataclass(frozen=True)
class PlannedProxy:
    """A Toxiproxy proxy the run needs, and what preparing the target would do with it."""

    name: str
    listen: str
    upstream: str
    action: str
    """``keep`` (exists as wanted), ``create``, ``conflict`` (a declared proxy exists with
    other addresses: the run would stop with exit 2, as ``proxies up`` does) or ``update``
    (one of the stack's own, with other addresses)."""


@dataclass(frozen=True)
class TargetPreview:
    """What ``prepare_target`` would do, found without changing anything (``run --dry-run``)."""

    url: str
    builtin: bool
    shop_mode: ShopMode | None
    shop_options: dict[str, str]
    manage_stack: bool
    components: list[PlannedComponent]
    proxies: list[PlannedProxy]
    leftovers: list[str]
    """Toxics and disabled proxies a killed run left, which the run's sweep would heal."""
    problems: list[str]
    """What would stop the run (exit 3 or 2) before any load is sent."""
    notes: list[str]
    parts: dict[str, dict[str, object]] = field(default_factory=dict)
    """Toxiproxy, Prometheus and the trace backend: where, and whose (the journal's ``parts``)."""
    stack: str = ""
    """Which local stack the run would use (``Stack.describe``: state directory, Toxiproxy)."""


def preview_target(
    experiment: Experiment,
    *,
    config: StackConfig,
    target_url: str | None,
    shop_mode: ShopMode | None,
    manage_stack: bool = True,
    parts: Parts | None = None,
) -> TargetPreview:
    """``prepare_target`` without its effects: what would start, which proxies would be made.

    Read-only: the stack record, /proc, the programs on disk, and Toxiproxy's proxy list
    (one GET, when Toxiproxy runs or is the user's). Starts no process, writes no file,
    changes no proxy.
    """
    parts = parts or stack_parts(config)
    stack = Stack(config)
    url, builtin, mode, options, needed = _choose(stack, experiment, target_url, shop_mode, parts)
    planned = (
        []
        if needed == ()
        else stack.plan_up(shop_mode=mode or "hardened", shop_options=options, components=needed)
    )
    toxiproxy_runs = parts.toxiproxy.own or any(
        p.name == "toxiproxy" and p.state == "running" for p in planned
    )
    problems: list[str] = []
    notes: list[str] = [
        f"your {p.name} at {p.url} ({p.where()}): not started, health-checked before the run"
        for p in parts.own()
    ]
    ready = experiment.target.ready if experiment.target is not None else None
    if ready is not None:
        notes.append(
            f"waits for the target to be ready before the load: GET {ready.path} "
            f"(at most {ready.within:g}s)"
        )
    moved = stack.moved() if needed != () else None
    if moved is not None:
        problems.append(moved)
    if manage_stack:
        problems += [
            f"{p.name} cannot start: {p.blocker}"
            for p in planned
            if p.blocker and p.state != "running elsewhere"
        ]
    else:
        planned, more_problems, more_notes = _without_starting(planned, builtin, mode, parts)
        problems += more_problems
        notes += more_notes
    other = active_run(config)
    if other is not None:
        problems.append(f"another run is in progress on this stack (pid {other[0]}, {other[1]})")
    wanted = (
        [(p.name, p.listen, p.upstream) for p in stack_proxies(config.ports)] if builtin else []
    )
    wanted += [(p.name, p.listen, p.upstream) for p in experiment.proxies]
    declared = {p.name for p in experiment.proxies}
    existing: dict[str, Proxy] = {}
    if toxiproxy_runs:
        try:
            with parts.toxiproxy_client(timeout=2.0, retries=0) as client:
                existing = client.proxies()
        except FaultError as exc:
            problems.append(f"Toxiproxy runs but does not answer: {exc}")
    managed = {name for name, _listen, _upstream in wanted}
    leftovers = [
        f"{name}/{toxic.name}"
        for name, proxy in sorted(existing.items())
        for toxic in proxy.toxics
        if toxic.name.startswith(TOXIC_PREFIX)
    ] + [
        f"{name} disabled"
        for name, proxy in sorted(existing.items())
        if name in managed and not proxy.enabled
    ]
    proxies: list[PlannedProxy] = []
    for name, listen, upstream in dict.fromkeys(wanted):
        current = existing.get(name)
        if current is None:
            action = "create"
        elif _same_address(current.listen, listen) and _same_address(current.upstream, upstream):
            action = "keep"
        elif name not in declared:
            action = "update"  # the stack's own: its supervisor owns it
        else:
            action = "conflict"
            problems.append(
                f"proxy {name!r} exists as {current.listen} -> {current.upstream}, the file "
                f"wants {listen} -> {upstream}"
            )
        proxies.append(PlannedProxy(name, listen, upstream, action))
    return TargetPreview(
        url=url or config.gateway_url,
        builtin=builtin,
        shop_mode=mode,
        shop_options=options,
        manage_stack=manage_stack,
        components=planned,
        proxies=proxies,
        leftovers=leftovers,
        problems=problems,
        notes=notes,
        parts=parts.to_journal(),
        stack=stack.describe(),
    )


def _required(builtin: bool, parts: Parts) -> list[str]:
    """Stack components a --no-stack run cannot do without (observers it can)."""
    if builtin:
        return [n for n in COMPONENT_NAMES if n not in OBSERVERS]
    return [] if parts.toxiproxy.own else ["toxiproxy"]


def _without_starting(
    planned: list[PlannedComponent], builtin: bool, mode: ShopMode | None, parts: Parts
) -> tuple[list[PlannedComponent], list[str], list[str]]:
    """--no-stack: nothing starts; what ``_require_running`` would refuse, as problems."""
    required = _required(builtin, parts)
    down = [p.name for p in planned if p.state != "running"]
    problems: list[str] = []
    missing = [n for n in down if n in required]
    if missing:
        problems.append(
            f"--no-stack was given but {', '.join(missing)} is not running "
            "(start it with `resilience stack up`)"
        )
    notes: list[str] = []
    restart = [p.name for p in planned if p.action == "restart"]
    if restart:
        # The run itself goes on against the running shop (prepare_target does the same).
        notes.append(
            f"{', '.join(restart)} runs in another mode or with other options than this run "
            f"asks ({mode}); --no-stack does not restart it"
        )
    observers = [n for n in down if n in OBSERVERS]
    if observers:
        notes.append(
            f"{' and '.join(observers)} not running: what needs it will be 'not evaluated'"
        )
    running = [dataclasses.replace(p, action="keep") for p in planned if p.state == "running"]
    return running, problems, notes


def _require_running(stack: Stack, builtin: bool, say: Callable[[str], None], parts: Parts) -> None:
    """--no-stack: the target and Toxiproxy must run; observers may be missing (the run
    then marks what needs them as not evaluated). The user's parts are not the stack's."""
    wanted = set(COMPONENT_NAMES) if builtin else set(parts.stack_components())
    if not wanted:
        return
    moved = stack.moved()
    if moved is not None:
        raise StackError(moved)
    not_healthy = [s.name for s in stack.status() if not s.healthy and s.name in wanted]
    required = _required(builtin, parts)
    down = [name for name in not_healthy if name in required]
    if down:
        raise StackError(
            f"--no-stack was given but {', '.join(down)} is not running "
            "(start it with `resilience stack up`)",
            component=down[0],
        )
    missing = [name for name in not_healthy if name in OBSERVERS]
    if missing:
        say(f"{' and '.join(missing)} not running: what needs it will be 'not evaluated'")


ProxyAction = Literal["created", "kept", "enabled", "deleted", "absent", "left"]


@dataclass(frozen=True)
class ProxyChange:
    """What ``proxies_up`` / ``proxies_down`` did with one declared proxy."""

    name: str
    listen: str
    upstream: str
    action: ProxyAction
    note: str = ""


def _same_address(a: str, b: str) -> bool:
    """host:port equality where localhost and 127.0.0.1 are one host."""

    def norm(address: str) -> str:
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]").lower()
        return f"{'127.0.0.1' if host == 'localhost' else host}:{port}"

    return norm(a) == norm(b)


def _conflicts(experiment: Experiment, existing: dict[str, Proxy]) -> list[str]:
    problems: list[str] = []
    for wanted in experiment.proxies:
        current = existing.get(wanted.name)
        if current is not None and not (
            _same_address(current.listen, wanted.listen)
            and _same_address(current.upstream, wanted.upstream)
        ):
            problems.append(
                f"proxy {wanted.name!r} exists as {current.listen} -> {current.upstream}, the "
                f"file wants {wanted.listen} -> {wanted.upstream}"
            )
        for other in existing.values():
            if other.name != wanted.name and _same_address(other.listen, wanted.listen):
                problems.append(
                    f"{wanted.listen} (proxy {wanted.name!r}) is already the listen address of "
                    f"proxy {other.name!r}"
                )
    return problems


def proxies_up(experiment: Experiment, client: ToxiproxyApi) -> list[ProxyChange]:
    """Create the experiment's declared proxies in Toxiproxy, before the service that uses
    them starts. Idempotent: a proxy that exists as declared is kept (enabled again if a
    killed run left it disabled); one of the same name or listen address but other
    addresses is a conflict, refused before anything changes (``ExperimentError``)."""
    existing = client.proxies()
    problems = _conflicts(experiment, existing)
    if problems:
        raise ExperimentError(
            "the file's proxies conflict with Toxiproxy's: " + "; ".join(problems),
            expected="no proxy of the same name or listen address with other addresses "
            "(remove it, e.g. with `resilience proxies down` for the file that made it)",
            got="; ".join(problems),
        )
    changes: list[ProxyChange] = []
    for wanted in experiment.proxies:
        current = existing.get(wanted.name)
        if current is None:
            client.create_proxy(wanted.name, wanted.listen, wanted.upstream)
            action: ProxyAction = "created"
        elif not current.enabled:
            client.set_enabled(wanted.name, True)
            action = "enabled"
        else:
            action = "kept"
        changes.append(ProxyChange(wanted.name, wanted.listen, wanted.upstream, action))
    return changes


def proxies_down(
    experiment: Experiment, client: ToxiproxyApi, config: StackConfig
) -> list[ProxyChange]:
    """Delete the experiment's declared proxies that exist as declared. The stack's own
    proxies (postgres, orders, catalog) are left, as is a proxy of the same name with
    other addresses (not the file's)."""
    existing = client.proxies()
    stack_own = {(p.name, p.listen) for p in stack_proxies(config.ports)}
    changes: list[ProxyChange] = []
    for wanted in experiment.proxies:
        current = existing.get(wanted.name)
        action: ProxyAction
        note = ""
        if current is None:
            action = "absent"
        elif not (
            _same_address(current.listen, wanted.listen)
            and _same_address(current.upstream, wanted.upstream)
        ):
            action, note = "left", f"it is {current.listen} -> {current.upstream}, not the file's"
        elif any(n == wanted.name and _same_address(a, wanted.listen) for n, a in stack_own):
            action, note = "left", "the stack's own proxy (the built-in shop uses it)"
        else:
            client.delete_proxy(wanted.name)
            action = "deleted"
        changes.append(ProxyChange(wanted.name, wanted.listen, wanted.upstream, action, note))
    return changes


def _ensure_declared_proxies(client: ToxiproxyClient, experiment: Experiment) -> list[str]:
    """The run creates what ``proxies up`` would (and refuses the same conflicts: a run
    never re-points a proxy someone else's service uses)."""
    return [change.name for change in proxies_up(experiment, client)]


def _check_fault_proxies(client: ToxiproxyClient, experiment: Experiment) -> None:
    wanted = {f.proxy for f in experiment.faults}
    if not wanted:
        return
    existing = set(client.proxies())
    missing = sorted(wanted - existing)
    if missing:
        raise ExperimentError(
            f"faults name proxies that Toxiproxy does not have: {', '.join(missing)}",
            expected=f"a proxy declared under 'proxies:' or one of {', '.join(sorted(existing))}",
            got=", ".join(missing),
        )


def _sweep(client: ToxiproxyClient, config: StackConfig, proxies: list[str]) -> SweepReport | None:
    try:
        report = sweep(client, config.paths.fault_ledger, proxies)
    except FaultError as exc:
        logger.warning("could not sweep leftover faults: %s", exc)
        return None
    if not report.clean:
        logger.warning("%s", report.summary())
    return report


def active_run(config: StackConfig) -> tuple[int, str] | None:
    """(pid, journal) of a run in progress on this stack, if its process is alive."""
    marker = config.paths.state / ACTIVE_RUN_FILE
    try:
        raw = json.loads(marker.read_text(encoding="utf-8"))
        pid = int(raw.get("pid", 0))
    except (OSError, ValueError, TypeError):
        return None
    if pid and pid != os.getpid() and process_alive(pid):
        return pid, str(raw.get("journal", ""))
    return None


def sweep_leftovers(config: StackConfig) -> list[str]:
    """What `stack status` runs: heal a killed run's faults and mark its journal aborted.

    Does nothing while a run is in progress (its faults are not leftovers).
    """
    running = active_run(config)
    if running is not None:
        return [f"a run is in progress (pid {running[0]}); not sweeping its faults"]
    with ToxiproxyClient(config.toxiproxy_url) as client:
        report = _sweep(client, config, [p.name for p in stack_proxies(config.ports)])
    messages = [] if report is None or report.clean else [report.summary()]
    return messages + sweep_abandoned_runs(config)


def sweep_abandoned_runs(config: StackConfig) -> list[str]:
    """Mark the journal of a run that was killed (its process is gone) as aborted."""
    marker = config.paths.state / ACTIVE_RUN_FILE
    try:
        raw = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    pid = int(raw.get("pid", 0))
    if pid and process_alive(pid):
        return []
    messages: list[str] = []
    journal = Path(str(raw.get("journal", "")))
    if journal.name and mark_abandoned(
        journal, "killed before it finished (swept at the next start)"
    ):
        messages.append(f"marked the killed run {journal.parent} as aborted")
    marker.unlink(missing_ok=True)
    return messages


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_active(config: StackConfig, journal: Path) -> None:
    marker = config.paths.state / ACTIVE_RUN_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "journal": str(journal.resolve())}), "utf-8")
    tmp.replace(marker)


def clear_active(config: StackConfig) -> None:
    (config.paths.state / ACTIVE_RUN_FILE).unlink(missing_ok=True)


def add_scrape_jobs(
    prepared: PreparedTarget, experiment: Experiment, say: Callable[[str], None]
) -> None:
    """Write the experiment's ``observe.scrape`` jobs into the stack's Prometheus
    configuration and reload it; remember what was added so the end of the run takes
    exactly that out again (jobs that were already there as wanted stay untouched)."""
    wanted = {job.job: job.url for job in experiment.scrape_jobs()}
    if not wanted:
        return
    before = prepared.stack.scrape_jobs()
    added = {job: url for job, url in wanted.items() if before.get(job) != url}
    if not added:
        return
    reloaded = prepared.stack.set_scrape_jobs({**before, **added})
    prepared.scrape_added = added
    prepared.scrape_replaced = {job: before[job] for job in added if job in before}
    where = "Prometheus reloaded" if reloaded else "Prometheus is not running"
    say(f"scraping {', '.join(f'{j} ({u})' for j, u in sorted(added.items()))}: {where}")


def remove_scrape_jobs(prepared: PreparedTarget) -> None:
    """Take the run's scrape jobs out of the stack's Prometheus again (its series are
    saved in the run directory); jobs it replaced get their old URL back."""
    if not prepared.scrape_added:
        return
    jobs = prepared.stack.scrape_jobs()
    for job, url in prepared.scrape_added.items():
        if jobs.get(job) == url:
            jobs.pop(job)
    jobs.update(prepared.scrape_replaced)
    prepared.stack.set_scrape_jobs(jobs)
    prepared.scrape_added = {}


def release_target(prepared: PreparedTarget) -> None:
    """Take down only what this run started, and take out the scrape jobs it added."""
    try:
        remove_scrape_jobs(prepared)
    except StackError as exc:
        logger.warning("could not remove the run's scrape jobs: %s", exc)
    if prepared.started:
        logger.info("stopping what this run started: %s", ", ".join(prepared.started))
        prepared.stack.down(prepared.started)
    prepared.toxiproxy.close()


def dependencies(
    experiment: Experiment, builtin: bool, config: StackConfig
) -> dict[str, list[str]]:
    """Per proxy the run may fault: the peer addresses and service names behind it, as the
    target's spans name them (kept in the journal for the cascade's footprint)."""
    deps: dict[str, set[str]] = {}
    if builtin:
        for proxy in stack_proxies(config.ports):
            deps[proxy.name] = {
                proxy.listen,
                f"localhost:{proxy.listen_port}",
                BUILTIN_SERVICES[proxy.name],
            }
    for declared in experiment.proxies:
        deps.setdefault(declared.name, set()).add(declared.listen)
    return {name: sorted(peers) for name, peers in deps.items()}
