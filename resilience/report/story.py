"""What a run's numbers say in words: "what happened", who was hurt, what was expected.

The HTML report leads with these sentences and puts each finding's evidence in the words
and units a person reads ("GET /catalog/items p95 12 ms → 4719 ms during the fault")
instead of key dumps. Everything here is plain text; the HTML escapes it.

Intended behaviour is stated as such: when the experiment sets fault-phase SLOs on some
endpoints and not on others, the others are allowed to suffer during the fault, and an
endpoint that touches the faulted dependency (or whose footprint is unknown) and breaks
then is labelled ``expected: fails fast`` (errors, answered quickly) or ``expected:
degraded`` rather than left to read as a surprise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resilience.analysis.data import WindowStats, window_stats
from resilience.report.summary import (
    finding_endpoints,
    fmt_ms,
    fmt_ratio,
    fmt_seconds,
    is_spike_run,
    recovered_from,
)
from resilience.rundir.journal import FindingRecord, JournalData
from resilience.rundir.load import LoadView
from resilience.vocabulary import STRESS_PHASES, Phase, phase_named, stress_phase

HURT_ERROR_POINTS = 0.01
"""An endpoint is hurt when its error rate rose by more than this (1 percentage point) ..."""
HURT_P95_FACTOR = 2.0
HURT_P95_MIN_MS = 50.0
"""... or its p95 more than doubled and grew by more than 50 ms."""
FAST_FAIL_MS = 1000.0
"""An endpoint that errs with a p95 below this fails fast (it does not hang)."""
MAX_LIST = 20

_PHASE_WORDS = ("baseline", "fault", "spike", "recovery")


@dataclass(frozen=True)
class Shift:
    """One endpoint's numbers before (baseline) and during the fault."""

    endpoint: str
    before: WindowStats
    during: WindowStats

    @property
    def error_before(self) -> float:
        return self.before.error_rate or 0.0

    @property
    def error_during(self) -> float:
        return self.during.error_rate or 0.0

    @property
    def errors_rose(self) -> bool:
        return self.error_during - self.error_before > HURT_ERROR_POINTS

    @property
    def slowed(self) -> bool:
        a, b = self.before.p95, self.during.p95
        if a is None or b is None:
            return False
        return b > a * HURT_P95_FACTOR and b - a > HURT_P95_MIN_MS

    @property
    def hurt(self) -> bool:
        return self.during.requests > 0 and (self.errors_rose or self.slowed)

    @property
    def fails_fast(self) -> bool:
        p95 = self.during.p95
        return self.errors_rose and p95 is not None and p95 < FAST_FAIL_MS

    def words(self) -> str:
        """``p95 12 ms → 4719 ms`` and/or ``error rate 0% → 17%``."""
        parts = []
        if self.slowed or not self.errors_rose:
            parts.append(f"p95 {fmt_ms(self.before.p95)} → {fmt_ms(self.during.p95)}")
        if self.errors_rose:
            parts.append(
                f"error rate {fmt_ratio(self.error_before)} → {fmt_ratio(self.error_during)}"
            )
        return ", ".join(parts)


def shifts(load: LoadView | None, phases: Sequence[Phase]) -> list[Shift]:
    """Baseline against fault (or spike) for every endpoint (empty without load data or
    phases)."""
    baseline, fault = phase_named(phases, "baseline"), stress_phase(phases)
    if load is None or baseline is None or fault is None:
        return []
    before_s, during_s = list(baseline.seconds()), list(fault.seconds())
    return [
        Shift(e, window_stats(load, e, before_s), window_stats(load, e, during_s))
        for e in load.endpoints
    ]


def footprint(journal: JournalData) -> dict[str, bool]:
    """Endpoint -> whether it touches a faulted dependency, where a detector decided it."""
    found: dict[str, bool] = {}
    for finding in journal.findings:
        raw = finding.evidence.get("footprint")
        if isinstance(raw, Mapping):
            for endpoint, value in raw.items():
                if isinstance(value, Mapping) and isinstance(value.get("touches"), bool):
                    found.setdefault(str(endpoint), bool(value["touches"]))
    return found


def faulted_names(journal: JournalData) -> list[str]:
    return list(dict.fromkeys(f.proxy for f in journal.faults if f.applied_at is not None))


def allowed_in_fault(journal: JournalData, endpoints: Sequence[str]) -> set[str]:
    """Endpoints the experiment lets suffer during the fault: it sets fault-phase SLOs on
    other endpoints and none on these (and none on all endpoints together)."""
    fault_slos = [s for s in journal.slo if s.phase in STRESS_PHASES]
    if not fault_slos or any(s.endpoint is None for s in fault_slos):
        return set()
    constrained = {s.endpoint for s in fault_slos}
    touches = footprint(journal)
    return {e for e in endpoints if e not in constrained and touches.get(e, True)}


def expected_labels(journal: JournalData, all_shifts: Sequence[Shift]) -> dict[str, str]:
    """Endpoint -> ``expected: fails fast`` / ``expected: degraded`` for the intended breaches."""
    allowed = allowed_in_fault(journal, [s.endpoint for s in all_shifts])
    labels: dict[str, str] = {}
    for shift in all_shifts:
        if shift.endpoint in allowed and shift.hurt:
            labels[shift.endpoint] = (
                "expected: fails fast" if shift.fails_fast else "expected: degraded"
            )
    return labels


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def fault_sentence(journal: JournalData) -> str:
    applied = [f for f in journal.faults if f.applied_at is not None]
    spike = next((p for p in journal.phases if p.name == "spike"), None)
    if spike is not None and spike.end is not None:
        return (
            f"No fault was scheduled: a load spike from {spike.start:.1f} s to {spike.end:.1f} s "
            f"({spike.end - spike.start:.1f} s, until the load was back down) was the stress."
        )
    if not journal.faults:
        return "No fault was scheduled: this run measured the target under load alone."
    if not applied:
        return "The scheduled fault was never applied."
    parts = []
    for f in applied:
        assert f.applied_at is not None
        if f.healed_at is None:
            parts.append(f"a {f.type} of {f.proxy} from {f.applied_at:.1f} s (never healed)")
        else:
            length = f.healed_at - f.applied_at
            parts.append(
                f"a {f.type} of {f.proxy} from {f.applied_at:.1f} s to {f.healed_at:.1f} s "
                f"({length:.1f} s)"
            )
    text = _join(parts)
    return text[0].upper() + text[1:] + "."


def hurt_sentence(journal: JournalData, all_shifts: Sequence[Shift]) -> str:
    if not all_shifts:
        return "There is no load data to tell who was hurt."
    labels = expected_labels(journal, all_shifts)
    touches = footprint(journal)
    faulted = _join(faulted_names(journal)) or "the faulted dependency"
    during = "the spike" if is_spike_run(journal) else "the fault"
    cascaded = {e for f in journal.findings if f.kind == "cascading_failure" and f.status == "found"
                for e in finding_endpoints(f)}  # fmt: skip
    surprise = [s for s in all_shifts if s.hurt and s.endpoint not in labels]
    expected = [s for s in all_shifts if s.endpoint in labels]
    sentences = []
    if surprise:
        described = _join([f"{s.endpoint} ({s.words()})" for s in surprise])
        clean = [s.endpoint for s in surprise if touches.get(s.endpoint) is False]
        why = ""
        if clean:
            verb = "does" if len(clean) == 1 else "do"
            why = f", although {_join(clean)} {verb} not touch {faulted}"
            if cascaded & set(clean):
                why += " (a cascading failure)"
        sentences.append(f"During {during} {described} suffered{why}.")
    for label in sorted({labels[s.endpoint] for s in expected}):
        group = [s for s in expected if labels[s.endpoint] == label]
        described = _join([f"{s.endpoint} ({s.words()})" for s in group])
        verb = "failed" if label.endswith("fails fast") else "degraded"
        sentences.append(f"As the experiment allows, {described} {verb} during {during} — {label}.")
    if not sentences:
        sentences.append(f"No endpoint degraded beyond its baseline during {during}.")
    return " ".join(sentences)


def recovery_sentence(journal: JournalData) -> str:
    r = journal.recovery
    budget = f" (budget {fmt_seconds(r.budget_seconds)})" if r.budget_seconds is not None else ""
    if r.recovered is None and r.seconds is None:
        return "Recovery was not measured (no recovery phase)."
    if r.recovered:
        return f"The target recovered {fmt_seconds(r.seconds)} after {recovered_from(journal)}{budget}."
    extra = r.model_extra or {}
    watched = _number(extra.get("heal_time"))
    end = _number(journal.load_end)
    after = (
        f" {end - watched:.1f} s after {recovered_from(journal)}"
        if watched is not None and end
        else ""
    )
    return f"The target had not recovered{after} when the run ended{budget}."


def what_happened(journal: JournalData, all_shifts: Sequence[Shift]) -> list[str]:
    """Two or three sentences: the fault, who was hurt, how long the recovery took."""
    if not journal.faults and not is_spike_run(journal):
        return [fault_sentence(journal)]
    return [fault_sentence(journal), hurt_sentence(journal, all_shifts), recovery_sentence(journal)]


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# -- evidence in words ----------------------------------------------------------------------

_PAIR = re.compile(r"^(?P<who>.*?)\s*\b(?P<phase>baseline|fault|spike|recovery)\b\s*(?P<what>.*)$")


def fmt_number(key: str, value: Any) -> str:
    """A number in the unit its key names: ``... error rate`` → %, ``... ms`` → ms, ``... s``."""
    number = _number(value)
    if number is None:
        return "—" if value is None else str(value)
    low = key.lower().strip()
    if "rate" in low and "rps" not in low:
        return fmt_ratio(number)
    if low.endswith(" ms") or low.endswith("_ms"):
        return fmt_ms(number)
    if low.endswith(" s") or low.endswith(" seconds") or low.endswith("_s"):
        return f"{int(number)} s" if number == int(number) else fmt_seconds(number)
    if number == int(number):
        return str(int(number))
    return f"{number:.3g}"


def _unit_free(key: str) -> str:
    return re.sub(r"(?:\s+|_)(ms|s)$", "", key.strip())


def number_lines(numbers: Mapping[str, Any]) -> list[str]:
    """``numbers`` as lines; ``X baseline Y`` and ``X fault Y`` pairs become ``X Y: a → b``."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple[str, str] | str] = []
    for key, value in numbers.items():
        match = _PAIR.match(str(key))
        if match and match.group("what") and match.group("who").strip():
            ident = (match.group("who").strip(), match.group("what").strip())
            if ident not in groups:
                groups[ident] = {}
                order.append(ident)
            groups[ident][match.group("phase")] = fmt_number(str(key), value)
        else:
            order.append(str(key))
    lines: list[str] = []
    for item in order:
        if isinstance(item, tuple):
            who, what = item
            label = " ".join(p for p in (who, _unit_free(what)) if p)
            values = groups[item]
            phases = [p for p in _PHASE_WORDS if p in values]
            if len(phases) == 1:
                lines.append(f"{label} during the {phases[0]}: {values[phases[0]]}")
            else:
                arrow = " → ".join(values[p] for p in phases)
                lines.append(f"{label}: {arrow} ({' → '.join(phases)})")
        else:
            lines.append(f"{_unit_free(item)}: {fmt_number(item, numbers[item])}")
    return lines


def _seconds_text(raw: Any) -> str:
    if not isinstance(raw, list):
        return str(raw)
    secs = sorted({int(s) for s in raw if _number(s) is not None})
    ranges: list[list[int]] = []
    for s in secs:
        if ranges and ranges[-1][1] == s - 1:
            ranges[-1][1] = s
        else:
            ranges.append([s, s])
    spans = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges]
    return f"{len(secs)} second{'s' if len(secs) != 1 else ''} ({', '.join(spans)} s)"


def _listed(items: Sequence[Any]) -> str:
    shown = [str(i) for i in items[:MAX_LIST]]
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


_SKIP = {
    "trace_id", "trace_ids", "span", "series", "numbers", "per_endpoint", "reasons",
    "resource_series",  # per-second points: drawn, not listed
}  # fmt: skip


def evidence_lines(finding: FindingRecord) -> list[str]:
    """A finding's evidence as short lines a person reads (trace ids and series are drawn
    elsewhere: the waterfall, the chart)."""
    ev = finding.evidence
    lines: list[str] = []
    numbers = ev.get("numbers")
    if isinstance(numbers, Mapping):
        lines.extend(number_lines(numbers))
    for key, value in ev.items():
        if key in _SKIP:
            continue
        lines.extend(_evidence_item(key, value))
    return lines


def _evidence_item(key: str, value: Any) -> list[str]:  # noqa: PLR0911 (one wording per key)
    if key == "seconds":
        return [f"affected: {_seconds_text(value)}"] if value else []
    if key == "footprint" and isinstance(value, Mapping):
        yes = [str(e) for e, v in value.items() if isinstance(v, Mapping) and v.get("touches")]
        no = [str(e) for e, v in value.items() if isinstance(v, Mapping) and not v.get("touches")]
        lines = []
        if yes:
            lines.append(f"touch the faulted dependency: {_listed(yes)}")
        if no:
            lines.append(f"do not touch it: {_listed(no)}")
        return lines
    if key == "out_of_band" and isinstance(value, list):
        parts = [
            f"{item[0]} s {item[1]}" if isinstance(item, list) and len(item) == 2 else str(item)
            for item in value
        ]
        return [f"outside the baseline band: {_listed(parts)}"]
    if key in ("endpoint", "endpoints"):
        items = value if isinstance(value, list) else [value]
        return [f"endpoints: {_listed(items)}"] if items else []
    if key == "notes" and isinstance(value, list):
        return [str(n) for n in value]
    if isinstance(value, bool):
        return [f"{key.replace('_', ' ')}: {'yes' if value else 'no'}"]
    if isinstance(value, list):
        return [f"{key.replace('_', ' ')}: {_listed(value)}"] if value else []
    if isinstance(value, Mapping):
        inner = "; ".join(f"{k}: {fmt_number(str(k), v)}" for k, v in value.items())
        return [f"{key.replace('_', ' ')}: {inner}"]
    return [f"{key.replace('_', ' ')}: {fmt_number(key, value)}"]


def span_reason(finding: FindingRecord) -> str | None:
    """The one-line explanation a detector gave for its example trace's span."""
    span = finding.evidence.get("span")
    if isinstance(span, Mapping) and span.get("reason"):
        who = " ".join(str(span[k]) for k in ("service", "name") if span.get(k))
        return f"{who}: {span['reason']}" if who else str(span["reason"])
    return None
