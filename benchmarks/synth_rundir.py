"""Make a long synthetic run directory from a real (smoke) run directory, in its own formats.

    python benchmarks/synth_rundir.py SOURCE_RUN_DIR DEST --duration 7200 --rate 1000

The source run's timeline is stretched to ``--duration`` seconds (its fault stamps, phase
marks, phases, events and gathered Prometheus series scaled in time) and its load scaled to
``--rate`` requests per second. Every synthetic second copies the shape of the source second
it maps to: per endpoint, requests in the source's proportion, outcomes drawn from that
second's outcome mix, latencies drawn from that second's histogram with a log-normal jitter
(sigma 0.2), so a second at 1,000 req/s fills hundreds of buckets as a real one does. A
second holding a scaled phase mark splits its requests into segment parts, as the load
workers do. Per-request files follow the load engine's rules: trace ids of failed and slow
requests and a sample of the rest (``load.trace_sample``), at most ``trace_cap`` per second;
one acknowledged write per OK response of a write endpoint. Saved traces are copied with
their span times moved to their request's stretched send time, and the read-back lists every
acknowledged write (nothing lost).

``latency.hlog`` and ``load.jsonl`` are written by the run directory's own writer
(``resilience.rundir.load.LoadFiles``); the per-request files as the recorder writes them.
Deterministic for a given ``--seed``. Used by ``benchmarks/analysis_scale.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from resilience.histogram import Histogram
from resilience.load.plan import DEFAULT_TRACE_CAP
from resilience.rundir.layout import RunDir
from resilience.rundir.load import LoadData, LoadFiles, Segment, read_trace_refs, read_writes
from resilience.vocabulary import OUTCOMES

STATUS = {"ok": 200, "4xx": 404, "5xx": 500, "timeout": 0, "connection_error": 0, "unexpected": 302}


def _scale_time(value: Any, k: float) -> Any:
    return None if value is None else round(float(value) * k, 4)


def _iso_plus(iso: str, seconds: float) -> str:
    stamp = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Second:
    """One synthetic second as it is made: what LoadFiles writes, and the kept trace ids."""

    writes: TextIO
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    segments: dict[str, dict[str, Segment]] = field(default_factory=dict)
    kept: list[dict[str, Any]] = field(default_factory=list)


class Synth:
    def __init__(self, source: Path, dest: Path, duration: int, rate: float, seed: int) -> None:
        self.source = RunDir(source)
        self.dest = RunDir(dest)
        self.duration = duration
        self.rate = rate
        self.rng = np.random.default_rng(seed)
        self.journal: dict[str, Any] = json.loads(self.source.journal.read_text())
        self.experiment: dict[str, Any] = yaml.safe_load(self.source.experiment.read_text())
        self.load = LoadData.read(source)
        src_end = self.journal.get("load_end") or (self.load.seconds[-1] + 1)
        self.src_len = float(src_end)
        self.k = duration / self.src_len
        self.t0 = float(self.journal["t0"])
        load_cfg = self.experiment.get("load", {})
        warmup = _seconds(load_cfg.get("warmup", "2s"))
        busy = [s for s in self.load.seconds if warmup <= s < self.src_len]
        per_second = [sum(self.load.counts(None, s).values()) for s in busy]
        self.factor = rate / max(1e-9, float(np.mean(per_second)))
        self.sample = float(str(load_cfg.get("trace_sample", "1%")).rstrip("%")) / 100.0
        self.slow_s = _seconds(load_cfg.get("slow_threshold", "1s"))
        self.cap = int(load_cfg.get("trace_cap", DEFAULT_TRACE_CAP))
        self.marks = sorted(float(m["t"]) * self.k for m in self.journal.get("marks", []))
        writes = read_writes(source)
        self.write_endpoints = sorted({w.endpoint for w in writes})
        self.next_id = 1 + max((int(w.id) for w in writes if str(w.id).isdigit()), default=0)
        self.source_refs = read_trace_refs(source)

    # -- load -------------------------------------------------------------------------

    def _source_second(self, second: int) -> int:
        return min(int(second / self.k), int(self.src_len) - 1)

    def _placement(self, second: int, n: int) -> list[tuple[str, int]]:
        """(segment key, requests) of a synthetic second against the scaled marks."""
        before = sum(1 for m in self.marks if m <= second)
        inside = [m for m in self.marks if second < m < second + 1]
        if not inside:
            return [(f"{before}-{before}", n)]
        sent_before = round((inside[0] - second) * n)
        after = before + 1
        return [(f"{before}-{after}", sent_before), (f"{after}-{after}", n - sent_before)]

    def _latencies(self, source: Histogram | None, n: int) -> np.ndarray:
        if source is None or not source.total:
            base = np.full(n, 1_000.0)
        else:
            weights = source.counts / source.total
            base = self.rng.choice(source.highest_values_us().astype(np.float64), n, p=weights)
        jitter = np.exp(self.rng.normal(0.0, 0.2, n))
        return np.maximum(1, base * jitter).astype(np.int64)

    def write_load(self) -> dict[str, int]:
        files = LoadFiles(self.dest.path, t0=self.t0)
        traces = self.dest.trace_ids.open("w", encoding="utf-8")
        writes = self.dest.writes.open("w", encoding="utf-8")
        totals = {"requests": 0, "trace_ids": 0, "writes": 0}
        endpoints = list(self.load.endpoints)
        try:
            for second in range(self.duration):
                src = self._source_second(second)
                out = _Second(writes)
                for endpoint in endpoints:
                    totals["writes"] += self._endpoint_second(second, src, endpoint, out)
                totals["requests"] += files.write_second(
                    second, out.counts, out.histograms, dict.fromkeys(out.counts, 0), out.segments
                )
                for ref in self._capped(out.kept):
                    traces.write(json.dumps(ref) + "\n")
                    totals["trace_ids"] += 1
        finally:
            traces.close()
            writes.close()
        files.write_meta(
            {
                "t0": self.t0,
                "workers": 1,
                "endpoints": endpoints,
                "seconds": self.duration,
                **totals,
                "dropped_trace_ids": 0,
                "abandoned": 0,
                "setup_failed": 0,
                "setup_errors": [],
                "outcomes": list(OUTCOMES),
                "closed": True,
            }
        )
        files.close()
        return totals

    def _endpoint_second(self, second: int, src: int, endpoint: str, out: _Second) -> int:
        source_counts = self.load.counts(endpoint, src)
        total = sum(source_counts.values())
        if not total:
            return 0
        expected = total * self.factor
        n = int(expected) + (1 if self.rng.random() < expected - int(expected) else 0)
        if n == 0:
            return 0
        mix = np.array([source_counts.get(k, 0) for k in OUTCOMES], dtype=np.float64) / total
        outcome_of = self.rng.choice(len(OUTCOMES), n, p=mix)
        latencies = self._latencies(self.load.histogram(endpoint, src), n)
        counts = out.counts[endpoint] = {
            k: int((outcome_of == i).sum()) for i, k in enumerate(OUTCOMES)
        }
        histogram = out.histograms[endpoint] = Histogram.from_values(latencies)
        placed = self._placement(second, n)
        if len(placed) > 1:
            parts: dict[str, Segment] = {}
            start = 0
            for key, size in placed:
                chunk = slice(start, start + size)
                start += size
                if size:
                    part_counts = {
                        k: int((outcome_of[chunk] == i).sum()) for i, k in enumerate(OUTCOMES)
                    }
                    parts[key] = Segment(part_counts, Histogram.from_values(latencies[chunk]))
            out.segments[endpoint] = parts
        else:
            out.segments[endpoint] = {placed[0][0]: Segment(counts, histogram)}
        sent = second + self.rng.random(n)
        for i in np.flatnonzero(outcome_of != 0)[: self.cap]:
            out.kept.append(
                self._ref(endpoint, sent[i], latencies[i], int(outcome_of[i]), "failed")
            )
        ok = np.flatnonzero(outcome_of == 0)
        for i in ok[latencies[ok] > self.slow_s * 1e6][: self.cap]:
            out.kept.append(self._ref(endpoint, sent[i], latencies[i], 0, "slow"))
        for i in ok[self.rng.random(len(ok)) < self.sample][: self.cap // 2]:
            out.kept.append(self._ref(endpoint, sent[i], latencies[i], 0, "sampled"))
        if endpoint not in self.write_endpoints:
            return 0
        lines = []
        for i in ok:
            lines.append(
                f'{{"worker": 0, "id": {self.next_id}, "endpoint": {json.dumps(endpoint)}, '
                f'"t": {round(float(sent[i]), 6)}, "status": 201}}\n'
            )
            self.next_id += 1
        out.writes.write("".join(lines))
        return len(lines)

    def _ref(
        self, endpoint: str, sent: float, latency_us: int, outcome: int, reason: str
    ) -> dict[str, Any]:
        name = OUTCOMES[outcome]
        return {
            "worker": 0,
            "trace_id": f"{int(self.rng.integers(1, 2**63)):016x}{int(self.rng.integers(1, 2**63)):016x}",
            "span_id": f"{int(self.rng.integers(1, 2**63)):016x}",
            "endpoint": endpoint,
            "t": round(float(sent), 6),
            "latency": round(latency_us / 1e6, 6),
            "outcome": name,
            "status": 201 if name == "ok" and endpoint in self.write_endpoints else STATUS[name],
            "reason": reason,
        }

    def _capped(self, kept: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        order = {"failed": 0, "slow": 1, "sampled": 2}
        yield from sorted(kept, key=lambda r: order[r["reason"]])[: self.cap]

    # -- the rest of the directory ------------------------------------------------------

    def write_journal(self) -> None:
        j = json.loads(json.dumps(self.journal))
        k = self.k
        for fault in j.get("faults", []):
            for key in ("scheduled_at", "scheduled_end", "applied_at", "healed_at"):
                fault[key] = _scale_time(fault.get(key), k)
        for mark in j.get("marks", []):
            mark["t"] = _scale_time(mark["t"], k)
        for phase in j.get("phases", []):
            phase["start"] = _scale_time(phase["start"], k)
            phase["end"] = _scale_time(phase.get("end"), k)
        for event in j.get("events", []):
            event["t"] = _scale_time(event["t"], k)
        for key in ("load_end", "duration"):
            j[key] = _scale_time(j.get(key), k)
        if j.get("ended_at") and j.get("started_at"):
            ended = datetime.fromisoformat(j["ended_at"].replace("Z", "+00:00")).timestamp()
            j["ended_at"] = _iso_plus(j["started_at"], (ended - self.t0) * k)
        self.dest.journal.write_text(json.dumps(j, indent=2))

    def write_experiment(self) -> None:
        e = json.loads(json.dumps(self.experiment))
        load = e.get("load", {})
        for stage in (load.get("stages") or []) + (load.get("arrival_rate") or []):
            stage["duration"] = f"{_seconds(stage['duration']) * self.k:.0f}s"
        for fault in e.get("faults") or []:
            for key in ("at", "duration"):
                if fault.get(key) is not None:
                    fault[key] = f"{_seconds(fault[key]) * self.k:.0f}s"
        self.dest.experiment.write_text(yaml.safe_dump(e, sort_keys=False))

    def write_series(self) -> None:
        src, dest = self.source.prometheus, self.dest.prometheus
        if not src.is_dir():
            return
        dest.mkdir(parents=True, exist_ok=True)
        for path in src.glob("*.json"):
            doc = json.loads(path.read_text())
            if path.name == "index.json":
                for entry in doc.get("series", {}).values():
                    entry["end"] = self.t0 + (entry["end"] - self.t0) * self.k
                (dest / path.name).write_text(json.dumps(doc, indent=1))
                continue
            end = self.t0 + (doc["end"] - self.t0) * self.k
            times = np.arange(doc["start"], end + 0.5, doc.get("step", 1.0))
            for series in doc.get("series", []):
                points = series["points"]
                if not points:
                    continue
                src_t = np.array([p[0] for p in points])
                src_v = [p[1] for p in points]
                back = self.t0 + (times - self.t0) / self.k
                nearest = np.clip(np.searchsorted(src_t, back), 0, len(src_t) - 1)
                series["points"] = [
                    [round(float(t), 3), src_v[i]] for t, i in zip(times, nearest, strict=True)
                ]
            doc["end"] = end
            (dest / path.name).write_text(json.dumps(doc, indent=1))

    def write_traces(self) -> None:
        """Saved traces, each moved to its request's stretched time; their refs appended."""
        src = self.source.traces
        if not src.is_dir():
            return
        dest = self.dest.traces
        dest.mkdir(parents=True, exist_ok=True)
        by_id = {r.trace_id.lower(): r for r in self.source_refs}
        extra: list[dict[str, Any]] = []
        for path in src.glob("*.json"):
            if path.name == "index.json":
                shutil.copy(path, dest / path.name)
                continue
            ref = by_id.get(path.stem.lower())
            shift_s = 0.0 if ref is None else ref.t * (self.k - 1)
            text = path.read_text()
            (dest / path.name).write_text(json.dumps(_shifted(json.loads(text), shift_s)))
            if ref is not None:
                moved = {**ref.__dict__, "t": round(ref.t * self.k, 6)}
                extra.append(moved)
        with self.dest.trace_ids.open("a", encoding="utf-8") as handle:
            for ref_doc in sorted(extra, key=lambda r: r["t"]):
                handle.write(json.dumps(ref_doc) + "\n")

    def write_readback(self, acknowledged: int) -> None:
        path = self.source.readback
        if not path.is_file():
            return
        doc = json.loads(path.read_text())
        first = self.next_id - acknowledged
        for endpoint in doc.get("endpoints", {}).values():
            if endpoint.get("listed_ids") is not None:
                endpoint["listed_ids"] = list(range(first, self.next_id))
            planned = [str(i) for i in range(first, min(self.next_id, first + 2000))]
            if endpoint.get("planned"):
                endpoint["planned"] = planned
                endpoint["reads"] = {
                    key: {"status": 200, "error": "", "record_id": int(key), "client_ref": None}
                    for key in planned
                }
        self.dest.readback.write_text(json.dumps(doc, indent=1))

    def copy_rest(self) -> None:
        for name in ("evidence.json", "logs"):
            src = self.source.path / name
            if src.is_dir():
                shutil.copytree(src, self.dest.path / name, dirs_exist_ok=True)
            elif src.is_file():
                shutil.copy(src, self.dest.path / name)
        rig = self.source.path / "rig.jsonl"
        if rig.is_file():
            samples = [json.loads(line) for line in rig.read_text().splitlines() if line.strip()]
            with (self.dest.path / "rig.jsonl").open("w", encoding="utf-8") as handle:
                for second in range(self.duration):
                    sample = samples[min(len(samples) - 1, int(second / self.k))]
                    handle.write(json.dumps({**sample, "t": float(second)}) + "\n")

    def run(self) -> dict[str, Any]:
        if self.dest.path.exists():
            shutil.rmtree(self.dest.path)
        self.dest.path.mkdir(parents=True)
        totals = self.write_load()
        self.write_journal()
        self.write_experiment()
        self.write_series()
        self.write_traces()
        self.write_readback(totals["writes"])
        self.copy_rest()
        return {
            "duration_s": self.duration,
            "rate": self.rate,
            "stretch": round(self.k, 2),
            **totals,
        }


def _shifted(node: Any, shift_s: float) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("startTimeUnixNano", "endTimeUnixNano", "timeUnixNano"):
                moved = int(value) + int(shift_s * 1e9)
                out[key] = str(moved) if isinstance(value, str) else moved
            else:
                out[key] = _shifted(value, shift_s)
        return out
    if isinstance(node, list):
        return [_shifted(v, shift_s) for v in node]
    return node


def _seconds(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a real run directory (a smoke run)")
    parser.add_argument("dest", type=Path, help="where to write the synthetic run directory")
    parser.add_argument("--duration", type=int, default=600, help="seconds (default 600)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    made = Synth(args.source, args.dest, args.duration, args.rate, args.seed).run()
    print(json.dumps({"dest": str(args.dest), **made}))


if __name__ == "__main__":
    main()
