"""A synthetic game-day session directory with known content, for tests and previews.

Two fault windows on a 70-second session of two endpoints (10 requests a second each),
recorded through the load engine's own collector and recorder with the session's phase
marks, so requests are placed by their [sent, ended] interval exactly as in a real
session:

- window 0, ``hang on postgres`` from 10 s to 18 s: orders fail after 50 ms; orders sent
  in the last half second before the heal hang past it; catalog is unaffected; everything
  is clean again right after the heal;
- window 1, ``latency on catalog`` from 40 s to 48 s: both endpoints fail, and keep failing
  until 53 s: a recovery of 5 s.

The journal holds the faults, the marks, people, notes (a hypothesis before each window,
an observation during the second) and a timeline, like a session's.
"""

from __future__ import annotations

import random
from pathlib import Path

from resilience.load.collector import C5XX, OK, Collector
from resilience.load.recorder import LoadRecorder
from resilience.load.samples import LoadEvent
from resilience.rundir.journal import FaultRecord, Journal, MarkRecord
from resilience.rundir.layout import RunDir, write_atomic

T0 = 1_764_081_000.0
END = 70.0
ORDERS, CATALOG = "GET /orders", "GET /catalog"
WINDOWS = ((10.0, 18.0, "postgres", "hang"), (40.0, 48.0, "catalog", "latency"))
SLOW_UNTIL = 53.0
"""Window 1's errors last until here: 5 s after its heal."""

EXPERIMENT = """name: sample-gameday
tags: [gameday]
target: {url: http://127.0.0.1:18000}
proxies:
  - {name: postgres, listen: 127.0.0.1:25432, upstream: 127.0.0.1:15432}
  - {name: catalog, listen: 127.0.0.1:28001, upstream: 127.0.0.1:18001}
load:
  stages: [{duration: 70s, users: 10, spawn_rate: 10}]
  workload:
    requests:
      - {name: GET /orders, path: /orders}
      - {name: GET /catalog, path: /catalog}
slo:
  baseline: {error_rate: 1%}
  fault: {endpoints: {GET /catalog: {error_rate: 1%}}}
  recovery: {within: 3s}
"""


def _outcome(endpoint: str, sent: float) -> tuple[float, int]:
    """(latency in seconds, outcome) of one request sent at ``sent``."""
    (a0, h0, _, _), (a1, _, _, _) = WINDOWS
    if endpoint == ORDERS and a0 <= sent < h0:
        return (h0 + 0.2 - sent, C5XX) if sent >= h0 - 0.5 else (0.05, C5XX)
    if a1 <= sent < SLOW_UNTIL:
        return 0.05, C5XX
    return 0.01, OK


def write_sample_session(session_dir: Path, *, marks: bool = True) -> Path:
    """Write the session into ``session_dir`` (see the module doc); ``marks=False`` writes
    one from before phase marks (placed by send time)."""
    layout = RunDir(session_dir).create()
    events: list[LoadEvent] = []
    collector = Collector(
        worker=0,
        emit=events.append,
        slow_threshold=10.0,
        trace_sample=0.0,
        trace_cap=10,
        rng=random.Random(1),
        track_phases=marks,
    )
    collector.start(0.0)
    for second in range(int(END)):
        for k in range(10):
            sent = second + k / 10
            for endpoint in (ORDERS, CATALOG):
                latency, outcome = _outcome(endpoint, sent)
                slot = collector.begin(sent)
                collector.end(
                    slot, endpoint, sent, sent + latency, outcome, status=200 if outcome == OK else 500,
                    trace_id="", span_id="",
                )  # fmt: skip
    times = [t for a, h, _, _ in WINDOWS for t in (a, h)]
    if marks:
        collector.set_marks(times, None)
    collector.finish(END + 1, users=0, last_second=int(END) - 1)
    with LoadRecorder(layout.path, t0=T0, workers=1, endpoints=[ORDERS, CATALOG]) as recorder:
        recorder.consume(events)
    write_atomic(layout.experiment, EXPERIMENT)
    journal = Journal.start(
        layout.journal,
        experiment="sample-gameday",
        profile=None,
        t0=T0,
        kind="gameday",
        target="http://127.0.0.1:18000",
        builtin=False,
        warmup=2.0,
    )
    faults = [
        FaultRecord(
            index=i, proxy=proxy, type=kind, scheduled_at=a, scheduled_end=h, applied_at=a,
            healed_at=h, label=f"{kind} on {proxy}",
        )
        for i, (a, h, proxy, kind) in enumerate(WINDOWS)
    ]  # fmt: skip
    mark_records = [
        MarkRecord(t=t, kind="apply" if n % 2 == 0 else "heal", fault=n // 2)
        for n, t in enumerate(times)
    ]
    notes = [
        _note(0, "hypothesis", 5.0, "Orders fail fast, catalog unaffected."),
        _note(1, "hypothesis", 30.0, "Catalog slows down, orders unaffected."),
        _note(2, "observation", 44.0, "Orders fail too."),
        _note(3, "action", 60.0, "Give orders a timeout on catalog calls."),
    ]
    journal.update(
        faults=faults,
        marks=mark_records if marks else [],
        load_end=END,
        people=[{"name": "Ada", "role": "facilitator", "joined": 1.0}],
        notes=notes,
        hypotheses=[n for n in notes if n["kind"] == "hypothesis"],
        observations=[n for n in notes if n["kind"] == "observation"],
        action_items=[n for n in notes if n["kind"] == "action"],
        timeline=[
            {"t": 0.0, "kind": "session", "text": "session started: 10 users", "detail": {}},
            *(
                {"t": t, "kind": "fault", "text": f"fault #{n // 2} {what}", "detail": {}}
                for n, (t, what) in enumerate(
                    (t, "applied" if n % 2 == 0 else "healed") for n, t in enumerate(times)
                )
            ),
            *({"t": n["t"], "kind": "note", "text": n["text"], "detail": {}} for n in notes),
        ],
    )
    journal.finish("passed", ended=T0 + END, exit_code=0, reason="ended by Ada")
    return layout.path


def _note(index: int, kind: str, t: float, text: str) -> dict[str, object]:
    return {"id": index, "kind": kind, "t": t, "text": text, "author": "Ada", "active_faults": []}
