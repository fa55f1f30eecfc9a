"""The rig monitor: the run's own machinery watched every second, from a background thread.

Twice a second it polls each source's health (Prometheus ``/-/ready``, the trace backend's
service list, Toxiproxy ``/version``, the target's base URL), each with a short timeout and
in parallel, so a source that stops answering is noticed within a second — Toxiproxy lost
during the baseline no longer waits for the next fault to be found out. Once a second it
also reads /proc (``runner/procfs.py``): the host's CPU split (``/proc/stat``: busy, steal,
idle), the load average, and per watched process tree — every process of the built-in
stack (the shop's services as the target; PostgreSQL, Toxiproxy, Prometheus and the trace
backend as the stack), each load worker, and this process — its CPU, the cores it may use
(its cgroup quota), CPU throttling, memory, descriptors, established connections and, for
PostgreSQL, its client backends against ``max_connections``; whether every process of the
built-in stack is still alive; the users and requests in flight the load workers last
reported; and writes one ``RigSample`` line to ``rig.jsonl``.

The live loop never waits for it: transitions (a source lost or back, a stack process
gone, the generator saturated, the host overloaded) are queued as ``RigEvent``s and
drained by the orchestrator between ticks (``events()``), which journals them, tells the
console, and stops the run when Toxiproxy is lost (the faults and the target's
dependencies go through it). Everything here is bounded: polls time out in 0.5 s, the
thread stops within a second of ``stop()``.

Other CPU is the host's busy time minus the load workers', the target's and this process's
own: no scan of every process. For a target other than the built-in shop the target's processes are not
known, so its CPU counts as "other" (documented in docs/findings.md).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from resilience.analysis.rig import SOURCE_NAMES, generator_reasons, host_reasons
from resilience.redact import Redactor
from resilience.rundir.rig import ProcRole, ProcSample, RigSample, RigWriter, SourceState
from resilience.runner import procfs
from resilience.tls import system_tls
from resilience.vocabulary import Clock

logger = logging.getLogger(__name__)

POLL_EVERY = 0.5
POLL_TIMEOUT = 0.5
CALM_SECONDS = 5
"""A busy-rig warning is repeated only after this many calm seconds."""
_PROC = Path("/proc")


@dataclass(frozen=True)
class RigEvent:
    """A change the live loop should hear about."""

    kind: str
    """source_lost, source_back, process_died, generator_saturated, host_overloaded"""
    t: float
    text: str
    source: str | None = None


OURS_REFRESH_S = 5.0
"""How often the set of the experiment's processes is looked up again (a /proc scan)."""


@dataclass(frozen=True)
class Watched:
    """A process of the built-in stack: name, pid, start time (pid reuse check), log."""

    name: str
    pid: int
    start_ticks: int
    log: str | None = None
    target: bool = False
    single_core: bool = False
    """One event loop (a Python service, a load worker): it can use one core at most."""
    max_connections: int | None = None
    """PostgreSQL's ``max_connections``: its client backends are counted against it."""
    role: ProcRole | None = None
    """Default: ``target`` when ``target``, else ``stack``."""

    @property
    def kind(self) -> ProcRole:
        return self.role or ("target" if self.target else "stack")


@dataclass
class _Cpu:
    """Cumulative CPU readings from the previous sample."""

    at: float = 0.0
    host: tuple[int, int, int, int] | None = None


class ProcessSampler:
    """Per watched process tree, one ``ProcSample`` a second (``runner/procfs.py``).

    CPU is the tree's ticks since the previous sample (a child first seen counts its whole
    life: it was forked since); the cores a tree may use are its cgroup's quota, else one
    for a single event loop, else the host's; throttling is the share of the cgroup's CPU
    periods throttled since the previous sample, when a quota applies."""

    def __init__(self, cores: int, *, proc: Path = procfs.PROC) -> None:
        self.cores = cores
        self.proc = proc
        self.mounts = procfs.Mounts.read(proc)
        self._ticks: dict[int, tuple[int, int]] = {}
        self._throttle: dict[Path, tuple[int, int]] = {}
        self._fd_limits: dict[int, int | None] = {}
        self._at: float | None = None

    def sample(self, roots: Sequence[Watched], at: float) -> dict[str, ProcSample]:
        dt = None if self._at is None else max(1e-3, at - self._at)
        self._at = at
        established = procfs.established(self.proc)
        ticks: dict[int, tuple[int, int]] = {}
        out: dict[str, ProcSample] = {}
        for root in roots:
            sample = self._one(root, dt, established, ticks)
            if sample is not None:
                out[root.name] = sample
        self._ticks = ticks
        return out

    def _one(
        self,
        root: Watched,
        dt: float | None,
        established: set[int],
        ticks: dict[int, tuple[int, int]],
    ) -> ProcSample | None:
        head = procfs.read_stat(root.pid, self.proc)
        if head is None or head.state in ("Z", "X") or head.start_ticks != root.start_ticks:
            return None
        pids = procfs.tree(root.pid, self.proc)
        used = 0
        known = root.pid in self._ticks
        rss = fds = 0
        sockets_of_tree: set[int] = set()  # a forked child shares its parent's sockets
        fds_known = False
        alive: list[int] = []
        for pid in pids:
            stat = head if pid == root.pid else procfs.read_stat(pid, self.proc)
            if stat is None:
                continue
            alive.append(pid)
            ticks[pid] = (stat.start_ticks, stat.ticks)
            before = self._ticks.get(pid)
            if before is not None and before[0] == stat.start_ticks:
                used += max(0, stat.ticks - before[1])
            elif known:
                used += stat.ticks  # forked since the previous sample
            rss += stat.rss_pages * procfs.PAGE
            sockets = procfs.fd_sockets(pid, self.proc)
            if sockets is not None:
                fds_known = True
                fds += sockets[0]
                sockets_of_tree |= sockets[1]
        cgroup = procfs.cgroup_cpu(root.pid, self.mounts, self.proc)
        quota = cgroup.quota if cgroup is not None else None
        cores = 1.0 if root.single_core else float(self.cores)
        if quota is not None:
            cores = min(cores, quota)
        if root.pid not in self._fd_limits:
            self._fd_limits[root.pid] = procfs.fd_limit(root.pid, self.proc)
        backends = None
        if root.max_connections is not None:
            backends = procfs.postgres_backends(alive[1:], self.proc)
        return ProcSample(
            role=root.kind,
            cpu=None if dt is None or not known else round(used / procfs.TICKS / dt, 3),
            cores=round(cores, 3),
            throttled=self._throttled(cgroup) if quota is not None else None,
            rss=rss,
            mem_limit=procfs.cgroup_memory_limit(root.pid, self.mounts, self.proc),
            fds=fds if fds_known else None,
            fd_limit=self._fd_limits[root.pid],
            conns=len(sockets_of_tree & established) if fds_known else None,
            processes=len(alive),
            backends=backends,
            max_connections=root.max_connections,
        )

    def _throttled(self, cgroup: procfs.CgroupCpu | None) -> float | None:
        if cgroup is None:
            return None
        now = cgroup.throttling()
        if now is None:
            return None
        before = self._throttle.get(cgroup.path)
        self._throttle[cgroup.path] = now
        if before is None:
            return None
        periods = now[0] - before[0]
        if periods <= 0:
            return 0.0
        return round(max(0, now[1] - before[1]) / periods, 3)


def host_cores() -> int:
    """The cores this process may run on (what a CPU hog competes for)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def read_host_cpu() -> tuple[int, int, int, int] | None:
    """(total, idle incl. iowait, steal, busy) jiffies from /proc/stat's first line."""
    try:
        first = (_PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:9]] + [0] * max(0, 9 - len(first))
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total, idle + iowait, steal, total - idle - iowait - steal


def read_proc(pid: int) -> tuple[str, int, int] | None:
    """(state, utime+stime ticks, start ticks) of ``pid``, or None when it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[11]) + int(fields[12]), int(fields[19])


def process_tree(roots: Iterable[int]) -> set[int]:
    """``roots`` and every process descending from them (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid for pid in roots if pid > 0]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def listening_pids(ports: Iterable[int]) -> set[int]:
    """The processes holding a listening TCP socket on one of ``ports`` (this machine)."""
    wanted = {p for p in ports if p > 0}
    if not wanted:
        return set()
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) in wanted
            ):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return set()
    owners: set[int] = set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in inodes:
                    owners.add(int(entry.name))
                    break
            except OSError:
                continue
    return owners


def alive(watched: Watched) -> bool:
    info = read_proc(watched.pid)
    return info is not None and info[0] not in ("Z", "X") and info[2] == watched.start_ticks


def http_probe(client: httpx.Client, url: str) -> tuple[SourceState, str]:
    """One health poll: up on any HTTP answer below 500, slow on a timeout, else down."""
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        return "slow", f"no answer within {POLL_TIMEOUT:.1f} s"
    except httpx.ConnectError as exc:
        return "down", _short(exc) or "connection refused"
    except httpx.HTTPError as exc:
        return "down", _short(exc) or type(exc).__name__
    if response.status_code >= 500:
        return "down", f"HTTP {response.status_code}"
    return "up", ""


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    if "reset" in text.lower():
        return "connection reset"
    return text.splitlines()[0][:120] if text else ""


class RigMonitor:
    """Samples the rig into ``rig.jsonl`` and queues events (see the module doc)."""

    def __init__(
        self,
        run_dir: Path,
        clock: Clock,
        *,
        probes: Mapping[str, str],
        worker_pids: Callable[[], Sequence[int]],
        watched: Sequence[Watched] = (),
        cores: int | None = None,
        ports: Sequence[int] = (),
        redactor: Redactor | None = None,
        target_port: int | None = None,
        load_state: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.clock = clock
        self.probes = dict(probes)
        self.worker_pids = worker_pids
        self.watched = list(watched)
        self.ports = list(ports)
        """Ports of the target and its declared dependencies: whoever listens there is part
        of the experiment, not other load on the machine."""
        self.target_port = target_port
        """Whoever listens there (and is not the stack's) is sampled as the target."""
        self._ours: set[int] = set()
        self._ours_at = -math.inf
        self._listening: list[Watched] = []
        self.cores = cores or host_cores()
        self.load_state = load_state
        """(users, requests in flight) as the load workers last reported them."""
        self._procs = ProcessSampler(self.cores)
        self._own = _self_watched()
        self._writer = RigWriter(run_dir, redactor)
        self._events: queue.Queue[RigEvent] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=POLL_TIMEOUT, trust_env=False, verify=system_tls())
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.probes)), thread_name_prefix="rig-probe"
        )
        self._state: dict[str, SourceState] = {}
        self._dead: set[str] = set()
        self._cpu = _Cpu()
        self._calm: dict[str, int] = {"generator": CALM_SECONDS, "host": CALM_SECONDS}
        self._second: dict[str, tuple[SourceState, str]] = {}

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._cpu = self._read_cpu(time.monotonic())
        self._thread = threading.Thread(target=self._loop, name="rig-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
        self._writer.close()

    def events(self) -> list[RigEvent]:
        """What changed since the last call (never blocks)."""
        out: list[RigEvent] = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def state(self, source: str) -> SourceState | None:
        return self._state.get(source)

    # -- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        next_sample = self.clock.now()
        while not self._stop.is_set():
            try:
                self._poll_sources()
                now = self.clock.now()
                if now >= next_sample:
                    self._sample(now)
                    next_sample = float(int(now)) + 1.0
            except Exception:  # the monitor must never take the run down
                logger.exception("rig monitor: a sample failed")
            self._stop.wait(POLL_EVERY)

    def _poll_sources(self) -> None:
        if not self.probes:
            return
        futures = {
            name: self._pool.submit(http_probe, self._client, url)
            for name, url in self.probes.items()
        }
        for name, future in futures.items():
            try:
                state, why = future.result(timeout=POLL_TIMEOUT + 0.5)
            except Exception as exc:
                state, why = "down", type(exc).__name__
            self._note(name, state, why)

    def _note(self, name: str, state: SourceState, why: str) -> None:
        rank = {"up": 0, "slow": 1, "down": 2}
        held = self._second.get(name)
        if held is None or rank[state] > rank[held[0]]:
            self._second[name] = (state, why)
        previous = self._state.get(name)
        self._state[name] = state
        t = self.clock.now()
        label = SOURCE_NAMES.get(name, name)
        if state == "down" and previous is None:
            text = f"{label} does not answer ({why})"
            self._events.put(RigEvent("source_lost", t, text, name))
        elif state == "down" and previous != "down":
            text = f"{label} stopped answering at {t:.1f} s ({why})"
            self._events.put(RigEvent("source_lost", t, text, name))
        elif state == "up" and previous == "down":
            self._events.put(
                RigEvent("source_back", t, f"{label} answers again at {t:.1f} s", name)
            )

    def _sample(self, now: float) -> None:
        at = time.monotonic()
        cpu = _Cpu(at=at, host=read_host_cpu())
        procs = self._procs.sample(self._roots(at), at)
        sample = self._measure(now, cpu, procs)
        self._cpu = cpu
        self._writer.write(sample)
        self._warn(sample)

    def _listeners(self, at: float) -> list[Watched]:
        """The processes listening on the target's and its declared dependencies' ports that
        are not the stack's (a target other than the built-in shop, its own database):
        looked up again every few seconds (a scan of /proc)."""
        if at - self._ours_at >= OURS_REFRESH_S:
            self._ours_at = at
            covered = process_tree(w.pid for w in self.watched)
            found: list[Watched] = []
            for port in dict.fromkeys(self.ports):
                for pid in sorted(listening_pids([port]) - covered - {os.getpid()}):
                    info = read_proc(pid)
                    if info is None or any(w.pid == pid for w in found):
                        continue
                    role: ProcRole = "target" if port == self.target_port else "stack"
                    found.append(Watched(f"{_comm(pid)} :{port}", pid, info[2], role=role))
            self._ours = {w.pid for w in found}
            self._listening = found
        return self._listening

    def _read_cpu(self, at: float) -> _Cpu:
        self._procs.sample(self._roots(at), at)
        return _Cpu(at=at, host=read_host_cpu())

    def _roots(self, at: float) -> list[Watched]:
        """Every process tree to sample: the stack's, the target's found by its port, each
        load worker, this process."""
        roots = list(self.watched) + self._listeners(at)
        for index, pid in enumerate(self.worker_pids()):
            info = read_proc(pid)
            if info is not None:
                roots.append(
                    Watched(
                        f"load worker {index}", pid, info[2], single_core=True, role="generator"
                    )
                )
        if self._own is not None:
            roots.append(self._own)
        return roots

    def _measure(self, now: float, cpu: _Cpu, procs: Mapping[str, ProcSample]) -> RigSample:
        workers = [
            procs[name].cpu if name in procs else None
            for name in (f"load worker {i}" for i in range(len(self.worker_pids())))
        ]

        def total(role: str) -> float:
            return sum(p.cpu for p in procs.values() if p.role == role and p.cpu is not None)

        target_cpu = total("target") if self.watched else None
        stack_cpu = total("stack") if self.watched else None
        busy = steal = idle = other = None
        if cpu.host is not None and self._cpu.host is not None:
            total_jiffies = max(1, cpu.host[0] - self._cpu.host[0])
            idle = (cpu.host[1] - self._cpu.host[1]) / total_jiffies
            steal = (cpu.host[2] - self._cpu.host[2]) / total_jiffies
            busy = (cpu.host[3] - self._cpu.host[3]) / total_jiffies
            ours = sum(p.cpu for p in procs.values() if p.cpu is not None)
            other = max(0.0, busy * self.cores - ours)
        users = in_flight = None
        if self.load_state is not None:
            try:
                users, in_flight = self.load_state()
            except Exception:  # the recorder's numbers are a nicety; the sample goes on
                logger.debug("rig monitor: load state unavailable", exc_info=True)
        sources = {name: state for name, (state, _) in self._second.items()}
        why = {name: text for name, (state, text) in self._second.items() if state != "up"}
        self._second = {}
        return RigSample(
            t=round(now, 3),
            second=math.floor(now),
            cores=self.cores,
            load1=round(os.getloadavg()[0], 2),
            busy=_r(busy),
            steal=_r(steal),
            idle=_r(idle),
            workers=[_r(c) for c in workers],
            target_cpu=_r(target_cpu),
            stack_cpu=_r(stack_cpu),
            other_cpu=_r(other),
            users=users,
            in_flight=in_flight,
            procs=dict(procs),
            sources=sources,
            why=why,
            died=self._deaths(now),
        )

    def _deaths(self, now: float) -> list[str]:
        died: list[str] = []
        for watched in self.watched:
            if watched.name in self._dead or alive(watched):
                continue
            self._dead.add(watched.name)
            text = (
                f"{watched.name} (pid {watched.pid}) of the built-in stack died at {now:.1f} s "
                "(exit status unknown: the stack's processes are detached, not this run's "
                f"children){_last_line(watched.log)}"
            )
            died.append(text)
            self._events.put(RigEvent("process_died", now, text, watched.name))
        return died

    def _warn(self, sample: RigSample) -> None:
        if sample.t < 1.0:
            return  # the workers' start-up (importing Locust) is not load
        for kind, reasons in (
            ("generator", generator_reasons(sample)),
            ("host", host_reasons(sample)),
        ):
            if not reasons:
                self._calm[kind] += 1
                continue
            if self._calm[kind] >= CALM_SECONDS:
                what = (
                    "the load generator is saturated"
                    if kind == "generator"
                    else "the host is overloaded"
                )
                self._events.put(
                    RigEvent(
                        f"{'generator_saturated' if kind == 'generator' else 'host_overloaded'}",
                        sample.t,
                        f"{what} at {sample.t:.1f} s ({'; '.join(reasons)}): latencies measured "
                        "now are partly the rig's, not the target's",
                    )
                )
            self._calm[kind] = 0


def _comm(pid: int) -> str:
    """A process's short name (``/proc/<pid>/comm``)."""
    try:
        return (_PROC / str(pid) / "comm").read_text().strip() or f"pid {pid}"
    except OSError:
        return f"pid {pid}"


def _self_watched() -> Watched | None:
    info = read_proc(os.getpid())
    if info is None:
        return None
    return Watched("orchestrator", os.getpid(), info[2], single_core=True, role="rig")


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _last_line(log: str | None) -> str:
    if not log:
        return ""
    try:
        with Path(log).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 2048))
            lines = handle.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f"; last line of its log: {lines[-1][:200]!r}" if lines else ""
