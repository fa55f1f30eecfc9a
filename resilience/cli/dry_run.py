"""``resilience run --dry-run``: the resolved plan of a run, and what it would start.

Everything here is read-only: the experiment is loaded (profile and ``--set`` applied),
the load plan is resolved as the run would resolve it (stages or arrival-rate stages,
worker count), and the target is previewed (``runner.target.preview_target``: the stack
record, /proc, programs on disk, Toxiproxy's proxy list). No process is started, no
directory created, no proxy touched. Times are seconds on the experiment clock.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from resilience.cli._common import console, print_warnings
from resilience.errors import ErrorDetail

if TYPE_CHECKING:
    from resilience.experiment import Experiment, Thresholds
    from resilience.load.plan import LoadPlan
    from resilience.runner.target import TargetPreview

_METRICS = ("p50", "p95", "p99", "max", "error_rate", "min_rps")


def _thresholds(limits: Thresholds) -> dict[str, float]:
    return {m: float(v) for m in _METRICS if (v := getattr(limits, m)) is not None}


def _load(experiment: Experiment, plan: LoadPlan) -> dict[str, Any]:
    load = experiment.load
    start = 0.0
    stages: list[dict[str, Any]] = []
    for stage in plan.stages:
        stages.append(
            {"start": start, "duration": stage.duration, "users": stage.users,
             "spawn_rate": stage.spawn_rate}
        )  # fmt: skip
        start += stage.duration
    start = 0.0
    arrival: list[dict[str, Any]] = []
    for step in plan.arrival:
        arrival.append({"start": start, "duration": step.duration, "rps": step.rps})
        start += step.duration
    workload = load.workload
    return {
        "model": load.model,
        "preset": load.preset,
        "stages": stages,
        "arrival_rate": arrival,
        "duration": experiment.total_duration,
        "workers": plan.workers,
        "client_timeout": plan.client_timeout,
        "max_in_flight": plan.max_in_flight,
        "warmup": load.warmup,
        "requests": [
            {"endpoint": r.endpoint, "weight": r.weight} for r in (workload.requests or [])
        ],
        "locustfile": plan.locustfile,
    }


def plan_document(
    experiment: Experiment, plan: LoadPlan, preview: TargetPreview, overrides: list[str]
) -> dict[str, Any]:
    """The dry run's answer as data (``--json`` prints it; the text view renders it)."""
    slo: dict[str, Any] = {}
    for phase, limits in experiment.slo.phases().items():
        entry: dict[str, Any] = {
            "all": _thresholds(limits),
            "endpoints": {name: _thresholds(t) for name, t in limits.endpoints.items()},
        }
        within = getattr(limits, "within", None)
        if within is not None:
            entry["within"] = float(within)
        slo[phase] = entry
    capacity = experiment.slo.capacity
    if capacity is not None:
        slo["capacity"] = {"rps": capacity.rps, "users": capacity.users}
    return {
        "dry_run": True,
        "experiment": experiment.name,
        "source": str(experiment.source) if experiment.source else None,
        "profile": experiment.profile,
        "overrides": overrides,
        "load": _load(experiment, plan),
        "faults": [
            {
                "index": i,
                "at": f.at,
                "duration": f.duration,
                "end": f.end,
                "proxy": f.proxy,
                "type": f.type,
                "stream": f.stream,
                "toxicity": f.toxicity,
                "attributes": dict(f.attributes),
            }
            for i, f in enumerate(experiment.faults)
        ],
        "phases": [
            {"name": p.name, "start": p.start, "end": p.end} for p in experiment.scheduled_phases()
        ],
        "slo": slo,
        "checks": [
            {
                "name": c.name,
                "phase": c.phase,
                "promql": c.promql,
                "expect": str(c.expect),
                "severity": c.severity,
            }
            for c in experiment.checks
        ],
        "guards": [
            {
                "name": g.name,
                "promql": g.promql,
                "load": g.load,
                "endpoint": g.endpoint,
                "expect": str(g.expect),
                "for": g.for_,
                "grace": g.grace,
            }
            for g in experiment.guards
        ],
        "parts": preview.parts,
        "target": {
            "url": preview.url,
            "builtin": preview.builtin,
            "shop_mode": preview.shop_mode,
            "shop_options": preview.shop_options,
        },
        "stack": {
            "managed": preview.manage_stack,
            "uses": preview.stack,
            "components": [
                {
                    "name": c.name,
                    "state": c.state,
                    "action": c.action,
                    "port": c.port,
                    "mode": c.mode,
                    "blocker": c.blocker,
                }
                for c in preview.components
            ],
        },
        "proxies": [
            {"name": p.name, "listen": p.listen, "upstream": p.upstream, "action": p.action}
            for p in preview.proxies
        ],
        "leftovers": preview.leftovers,
        "problems": preview.problems,
        "notes": preview.notes,
        "warnings": [asdict(w) for w in experiment.warnings],
        "ready": not preview.problems,
    }


def _s(seconds: float | None) -> str:
    from resilience.experiment import format_duration

    return "-" if seconds is None else format_duration(round(float(seconds), 6))


def _limit(metric: str, value: float) -> str:
    from resilience.experiment import format_percent

    if metric == "error_rate":
        return format_percent(value)
    if metric == "min_rps":
        return f"{value:g} req/s"
    return _s(value)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title or None, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def show_plan(doc: dict[str, Any]) -> None:  # noqa: PLR0912 (one optional block per plan section)
    """The plan for people: one table per part, then what would be started."""
    profile = f" with profile {doc['profile']}" if doc["profile"] else ""
    console.print(
        Text(f"dry run: {doc['experiment']}{profile}", style="bold")
        + Text(f" ({doc['source'] or 'built in'}); nothing was started or changed"),
        soft_wrap=True,
    )
    if doc["overrides"]:
        console.print(Text(f"overrides: {', '.join(doc['overrides'])}"), soft_wrap=True)
    load = doc["load"]
    head = (
        f"load: {load['model']} model{' (preset ' + load['preset'] + ')' if load['preset'] else ''}, "
        f"{_s(load['duration'])}, {load['workers']} worker(s), client timeout "
        f"{_s(load['client_timeout'])}, warm-up {_s(load['warmup'])} not judged"
    )
    console.print(Text(head, style="bold"), soft_wrap=True)
    if load["stages"]:
        table = _table("", "from", "for", "users", "spawn rate")
        for st in load["stages"]:
            table.add_row(_s(st["start"]), _s(st["duration"]), str(st["users"]),
                          f"{st['spawn_rate']:g}/s")  # fmt: skip
    else:
        table = _table("", "from", "for", "arrival rate")
        for st in load["arrival_rate"]:
            table.add_row(_s(st["start"]), _s(st["duration"]), f"{st['rps']:g} req/s")
    console.print(table)
    if load["requests"]:
        mix = ", ".join(f"{r['endpoint']} (weight {r['weight']})" for r in load["requests"])
        console.print(Text(f"request mix: {mix}"), soft_wrap=True)
    elif load["locustfile"]:
        console.print(Text(f"locustfile: {load['locustfile']}"), soft_wrap=True)
    if doc["faults"]:
        table = _table("fault timeline", "at", "for", "until", "proxy", "type", "attributes")
        for f in doc["faults"]:
            attributes = ", ".join(f"{k}={v}" for k, v in f["attributes"].items())
            if f["toxicity"] < 1:
                attributes = ", ".join(filter(None, (attributes, f"toxicity={f['toxicity']:g}")))
            table.add_row(_s(f["at"]), _s(f["duration"]), _s(f["end"]), f["proxy"], f["type"],
                          Text(attributes or "-"))  # fmt: skip
        console.print(table)
    else:
        console.print("fault timeline: no faults (a load test)")
    phases = ", ".join(f"{p['name']} {_s(p['start'])}-{_s(p['end'])}" for p in doc["phases"])
    console.print(Text(f"phases as scheduled: {phases}"), soft_wrap=True)
    _show_slo(doc["slo"])
    if doc["checks"]:
        table = _table("checks", "name", "phase", "expect", "severity", "promql")
        for c in doc["checks"]:
            table.add_row(Text(c["name"]), c["phase"], Text(c["expect"]), c["severity"],
                          Text(c["promql"]))  # fmt: skip
        console.print(table)
    if doc["guards"]:
        table = _table("guards (abort the run, faults healed first)", "name", "watches", "expect",
                       "for", "grace")  # fmt: skip
        for g in doc["guards"]:
            watches = g["promql"] or f"load {g['load']}" + (
                f" {g['endpoint']}" if g["endpoint"] else ""
            )
            table.add_row(Text(g["name"]), Text(watches), Text(g["expect"]), _s(g["for"]),
                          _s(g["grace"]))  # fmt: skip
        console.print(table)
    _show_target(doc)


def _show_slo(slo: dict[str, Any]) -> None:
    if not slo:
        console.print("SLOs: none")
        return
    table = _table("SLOs", "phase", "endpoint", "limits")
    for phase, entry in slo.items():
        if phase == "capacity":
            held = [f"{entry['rps']:g} req/s"] if entry["rps"] else []
            held += [f"{entry['users']} users"] if entry["users"] else []
            table.add_row(phase, "", "breaking point at least " + " and ".join(held))
            continue
        rows = [("all endpoints", entry["all"]), *entry["endpoints"].items()]
        for endpoint, limits in rows:
            if limits:
                text = ", ".join(f"{m} {_limit(m, v)}" for m, v in limits.items())
                table.add_row(phase, Text(endpoint), text)
        if "within" in entry:
            table.add_row(phase, "", f"recovered within {_s(entry['within'])}")
    console.print(table)


def _show_target(doc: dict[str, Any]) -> None:
    target = doc["target"]
    what = (
        f"the built-in shop at {target['url']} in mode {target['shop_mode']}"
        if target["builtin"]
        else f"{target['url']}"
    )
    console.print(Text(f"target: {what}"), soft_wrap=True)
    stack = doc["stack"]
    title = "stack" if stack["managed"] else "stack (--no-stack: nothing is started)"
    if stack["uses"]:
        title += f": {stack['uses']}"
    table = _table(title, "component", "now", "the run would", "port", "detail")
    style = {"keep": "green", "start": "yellow", "restart": "yellow"}
    style_of = {"running elsewhere": "bold red"}
    for c in stack["components"]:
        detail = c["blocker"] or (f"mode {c['mode']}" if c["mode"] else "")
        table.add_row(c["name"], Text(c["state"], style=style_of.get(c["state"], "")),
                      Text(c["action"], style=style[c["action"]]),
                      str(c["port"]), Text(detail))  # fmt: skip
    console.print(table)
    table = _table("Toxiproxy proxies", "proxy", "listen", "upstream", "the run would")
    for p in doc["proxies"]:
        table.add_row(p["name"], p["listen"], p["upstream"], p["action"])
    console.print(table)
    for line in doc["leftovers"]:
        console.print(Text(f"leftover of a killed run, to be healed: {line}", style="yellow"))
    for line in doc["notes"]:
        console.print(Text(f"note: {line}", style="yellow"), soft_wrap=True)
    print_warnings((ErrorDetail(**w) for w in doc["warnings"]), on=console)
    for line in doc["problems"]:
        console.print(Text(f"would stop the run: {line}", style="bold red"), soft_wrap=True)
    if not doc["problems"]:
        console.print(Text("ready to run", style="bold green"))
