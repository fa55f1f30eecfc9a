"""``resilience gameday ...``: start a live session, and drive it from the terminal.

``start`` runs the session in this process (the console's URL with its token is printed;
Ctrl-C ends it like the console's end button). Every other command reaches the running
session through its API, with the token from the session file only its owner can read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from resilience.cli._common import console, err_console, run_command
from resilience.cli._params import (
    FLAG,
    AllowHostOpt,
    NoStackOpt,
    ShopModeOpt,
    TargetOpt,
    WorkersOpt,
)

if TYPE_CHECKING:
    from resilience.gameday.client import SessionClient
    from resilience.gameday.session import Session

gameday_app = typer.Typer(
    help="Game days: a live console to drive load and faults by hand, with notes and a report.",
    no_args_is_help=True,
)

STATUS_EVERY = 10.0


def _state_dir() -> Path:
    from resilience.stack import StackConfig

    return StackConfig.from_env().paths.state


def _client() -> SessionClient:
    from resilience.gameday.client import SessionClient

    return SessionClient(_state_dir())


def _print_json(data: object) -> None:
    console.print_json(json.dumps(data))


@gameday_app.command("start")
def start(  # noqa: PLR0915, PLR0917 - typer maps parameters to options
    plan: Annotated[
        Path | None, typer.Argument(metavar="FILE", help="A game-day plan (YAML).")
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            "-e",
            metavar="NAME|FILE",
            help="Run this experiment's workload (no plan).",
        ),
    ] = None,
    target: TargetOpt = None,
    allow_hosts: AllowHostOpt = None,
    shop_mode: ShopModeOpt = None,
    workers: WorkersOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Session directory (default gamedays/<UTC>-<name>/)."
        ),
    ] = None,
    max_duration: Annotated[
        str | None,
        typer.Option(
            "--max-duration",
            metavar="DURATION",
            help="Bound the session, e.g. 30m (default: the plan's, 4h).",
        ),
    ] = None,
    no_stack: NoStackOpt = False,
) -> None:
    """Start a session: prepare the target, hold a steady load, serve the console."""

    def body() -> int:  # noqa: PLR0915 (the session's start, checks first)
        from resilience.errors import ExperimentError, Interrupted
        from resilience.experiment.units import parse_duration
        from resilience.gameday.plan import load_plan, plan_for_experiment, resolve_plan
        from resilience.gameday.server import ConsoleServer, new_token
        from resilience.gameday.session import SESSION_FILE, Session, SessionOptions, write_private
        from resilience.runner.signals import interrupts_raise

        if plan is not None and experiment is not None:
            raise ExperimentError(
                "give a plan or --experiment, not both",
                expected="a plan file (it may name an experiment) or --experiment NAME",
                got="both",
            )
        resolved = (
            load_plan(plan) if plan is not None else plan_for_experiment(experiment or "normal")
        )
        if max_duration is not None:
            try:
                seconds = parse_duration(max_duration)
            except ValueError as exc:
                raise ExperimentError(
                    "invalid --max-duration", expected="a duration like 30m", got=max_duration
                ) from exc
            updated = resolved.plan.model_copy(update={"max_duration": float(seconds)})
            resolved = resolve_plan(
                updated,
                source=resolved.source,
                base_dir=resolved.source.parent if resolved.source else None,
            )
        options = SessionOptions(  # checked as a run's options are (exit 2)
            out=out,
            shop_mode=shop_mode,
            target=target,
            allow_hosts=tuple(allow_hosts or ()),
            workers=workers,
            manage_stack=not no_stack,
        )
        session = Session(
            resolved, options, say=lambda m: console.print(f"[dim]•[/] {m}", highlight=False)
        )
        server: ConsoleServer | None = None
        reason = "ended"
        try:
            with interrupts_raise() as gate:
                session.hurry = gate.hurry  # a second signal hurries the end
                try:
                    session.open()
                    token = new_token()
                    server = ConsoleServer(session, token)
                    server.start()
                    state_dir = session.config.paths.state
                    write_private(
                        state_dir / SESSION_FILE,
                        json.dumps(
                            {
                                "pid": __import__("os").getpid(),
                                "url_base": server.base_url,
                                "token": token,
                                "dir": str(session.dir),
                                "name": resolved.plan.name,
                            }
                        ),
                    )
                    console.print(
                        f"[bold]game day {resolved.plan.name}[/]: {session._level_text(session.level)}, "
                        f"at most {resolved.plan.max_duration / 60:.0f} min; session directory {session.dir}",
                        highlight=False,
                    )
                    console.print(
                        Text("console: ", style="bold") + Text(server.url), highlight=False
                    )
                    console.print(
                        "[dim]end with the console's End button, `resilience gameday end` or Ctrl-C[/]"
                    )
                    next_status = time.monotonic() + STATUS_EVERY
                    bound = int(resolved.plan.max_duration / 0.5) + 100
                    for _ in range(bound):
                        if session.end_requested.wait(timeout=0.5):
                            break
                        if time.monotonic() >= next_status:
                            next_status = time.monotonic() + STATUS_EVERY
                            _status_line(session)
                    reason = session.end_reason or "ended"
                except Interrupted as exc:
                    reason = f"ended by {exc.signal_name}"
                finally:
                    gate.disarm()  # a signal from here on only hurries the end
                    result = session.close(reason)
        finally:
            if server is not None:
                # Let an `end` request that waits for the result get its answer first.
                time.sleep(0.3)
                server.stop()
        if result is None:
            return 3
        console.print(
            f"[bold]session ended[/] ({result.reason}); status {result.status}", highlight=False
        )
        for path in result.report_files:
            console.print(f"[dim]report: {path}[/]", highlight=False)
        return 0 if result.status == "passed" else 3

    raise typer.Exit(run_command(body))


def _status_line(session: Session) -> None:
    rows = session.metrics.table() if session.metrics is not None else []
    overall = rows[0] if rows else None
    faults = session.faults.active() if session.faults is not None else []
    if overall is None:
        return
    err = "-" if overall["error_rate"] is None else f"{overall['error_rate']:.1%}"
    p95 = "-" if overall["p95"] is None else f"{overall['p95'] * 1000:.0f} ms"
    console.print(
        f"t={overall['t']:6.0f}s {overall['rps']:7.1f} req/s p95 {p95} errors {err} "
        f"faults: {_faults_text(faults)}",
        highlight=False,
    )


def _faults_text(faults: Sequence[Mapping[str, object]]) -> str:
    return ", ".join(f"#{f['index']} {f['type']} on {f['proxy']}" for f in faults) or "none"


@gameday_app.command("inject")
def inject(  # noqa: PLR0917 - typer maps parameters to options
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME", help="A named fault (the plan's or a catalogue experiment's)."
        ),
    ] = None,
    proxy: Annotated[
        str | None, typer.Option("--proxy", "-p", metavar="PROXY", help="Toxiproxy proxy.")
    ] = None,
    fault_type: Annotated[
        str | None,
        typer.Option(
            "--type", "-t", metavar="TYPE", help="Fault type (latency, hang, outage, ...)."
        ),
    ] = None,
    attributes: Annotated[
        list[str] | None,
        typer.Option("--attr", "-a", metavar="KEY=VALUE", help="key=value, e.g. latency=300ms"),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option("--duration", "-d", metavar="DURATION", help="Heal by itself after this."),
    ] = None,
    stream: Annotated[
        str | None, typer.Option("--stream", metavar="STREAM", help="downstream or upstream.")
    ] = None,
    toxicity: Annotated[
        float | None, typer.Option("--toxicity", metavar="FRACTION", help="0..1")
    ] = None,
    by: Annotated[
        str, typer.Option("--by", metavar="NAME", help="Your name, for the timeline.")
    ] = "",
) -> None:
    """Inject a fault into the running session."""

    def body() -> None:
        from resilience.errors import ExperimentError

        if (name is None) == (proxy is None or fault_type is None):
            raise ExperimentError(
                "give a fault NAME, or --proxy and --type",
                expected="`inject db-hang` or `inject --proxy postgres --type latency -a latency=300ms`",
                got="both" if name is not None else "neither",
            )
        payload: dict[str, object] = {"by": by}
        if name is not None:
            payload["name"] = name
        else:
            attrs: dict[str, object] = {}
            for pair in attributes or []:
                key, sep, value = pair.partition("=")
                if not sep:
                    raise ExperimentError("invalid --attr", expected="key=value", got=pair)
                attrs[key] = _number(value)
            payload.update(proxy=proxy, type=fault_type, attributes=attrs)
            optional: dict[str, object] = {
                "duration": duration,
                "stream": stream,
                "toxicity": toxicity,
            }
            payload.update({k: v for k, v in optional.items() if v is not None})
        result = _client().call("POST", "/api/faults", payload)
        console.print(f"injected fault(s) {', '.join(f'#{i}' for i in result['ids'])}")

    run_command(body)


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


@gameday_app.command("heal")
def heal(
    fault_id: Annotated[
        int | None, typer.Argument(metavar="ID", help="The fault's id (see status).")
    ] = None,
    heal_all: Annotated[
        bool, typer.Option("--all", metavar=FLAG, help="Heal every fault.")
    ] = False,
) -> None:
    """Heal one fault, or every fault with --all."""

    def body() -> None:
        from resilience.errors import ExperimentError

        if (fault_id is None) == (not heal_all):
            raise ExperimentError(
                "give a fault ID or --all",
                expected="ID or --all",
                got="neither" if fault_id is None else "both",
            )
        path = "/api/heal-all" if heal_all else f"/api/faults/{fault_id}/heal"
        result = _client().call("POST", path, {})
        console.print(
            f"healed {len(result['healed'])} fault(s) in {result['seconds'] * 1000:.0f} ms"
            + (f"; could not heal: {'; '.join(result['failed'])}" if result["failed"] else "")
        )

    run_command(body)


@gameday_app.command("load")
def load(
    users: Annotated[
        int | None, typer.Option("--users", "-u", metavar="N", min=0, help="Users (closed model).")
    ] = None,
    spawn_rate: Annotated[
        float | None, typer.Option("--spawn-rate", metavar="RATE", help="Users started per second.")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", "-r", metavar="RPS", min=0, help="Requests per second (open model)."
        ),
    ] = None,
) -> None:
    """Change the load level live (applied to the running workers)."""

    def body() -> None:
        from resilience.errors import ExperimentError

        if (users is None) == (rate is None):
            raise ExperimentError(
                "give --users or --rate",
                expected="one of them",
                got="both" if users is not None else "neither",
            )
        payload = {"users": users, "spawn_rate": spawn_rate} if users is not None else {"rps": rate}
        level = _client().call("POST", "/api/load", payload)
        console.print(f"load now {level}")

    run_command(body)


@gameday_app.command("note")
def note(
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="What you expect, see, decided or will do.")
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            "-k",
            metavar="KIND",
            help="hypothesis, observation, decision, action or note.",
        ),
    ] = "note",
    author: Annotated[str, typer.Option("--author", metavar="NAME", help="Your name.")] = "",
) -> None:
    """Add a note to the session's timeline."""

    def body() -> None:
        import getpass

        result = _client().call(
            "POST",
            "/api/notes",
            {"kind": kind, "text": text, "author": author or getpass.getuser()},
        )
        console.print(f"note #{result['id']} at t={result['t']:.1f}s")

    run_command(body)


@gameday_app.command("step")
def step(
    action: Annotated[str, typer.Argument(metavar="ACTION", help="next, done, start or skip.")],
    index: Annotated[
        int | None, typer.Argument(metavar="N", help="Step number (from 1) for start and skip.")
    ] = None,
) -> None:
    """Advance the runbook: next step, mark done, start (or repeat) or skip step N."""

    def body() -> None:
        from resilience.errors import ExperimentError

        if action in ("next", "done"):
            path = f"/api/steps/{action}"
        elif action in ("start", "skip") and index is not None and index >= 1:
            path = f"/api/steps/{index - 1}/{action}"
        else:
            raise ExperimentError(
                "invalid step command",
                expected="next | done | start N | skip N",
                got=f"{action} {index or ''}".strip(),
            )
        result = _client().call("POST", path, {})
        console.print(f"step {result['index'] + 1} ({result['name']}): {result['status']}")

    run_command(body)


@gameday_app.command("halt")
def halt(  # noqa: PLR0917 - typer maps parameters to options
    expect: Annotated[
        str, typer.Option("--expect", metavar="EXPECTATION", help="What must hold, e.g. '< 50%'.")
    ],
    metric: Annotated[
        str | None, typer.Option("--load", metavar="METRIC", help="error_rate, p95, p99 or rps.")
    ] = None,
    promql: Annotated[
        str | None, typer.Option("--promql", metavar="PROMQL", help="A PromQL expression instead.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", metavar="ENDPOINT", help="One endpoint (load only).")
    ] = None,
    for_: Annotated[
        str | None,
        typer.Option("--for", metavar="DURATION", help="Broken this long before it trips."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="A name for the timeline.")
    ] = None,
) -> None:
    """Arm a halt condition: when it trips, every fault is healed at once."""

    def body() -> None:
        payload: dict[str, object] = {"expect": expect}
        for key, value in (
            ("load", metric),
            ("promql", promql),
            ("endpoint", endpoint),
            ("for", for_),
            ("name", name),
        ):
            if value is not None:
                payload[key] = value
        result = _client().call("POST", "/api/halts", payload)
        console.print(f"armed halt condition {result['name']!r}")

    run_command(body)


@gameday_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON.")] = False,
) -> None:
    """The running session: clock, load, active faults, halts, steps, the latest notes."""

    def body() -> None:
        data = _client().call("GET", "/api/state")
        if as_json:
            _print_json(data)
            return
        console.print(
            f"[bold]{data['name']}[/] t={data['t']:.0f}s of at most {data['max_duration']:.0f}s; {data['dir']}",
            highlight=False,
        )
        load_level = data.get("load") or {}
        console.print(f"load: {load_level}", highlight=False)
        for row in data.get("live") or []:
            err = "-" if row["error_rate"] is None else f"{row['error_rate']:.1%}"
            p95 = "-" if row["p95"] is None else f"{row['p95'] * 1000:.0f} ms"
            console.print(
                f"  {row['endpoint']:32} {row['rps']:7.1f} req/s  p95 {p95:>8}  errors {err}",
                highlight=False,
            )
        active = data.get("active_faults") or []
        console.print(
            "active faults: "
            + (
                ", ".join(
                    f"#{f['index']} {f['type']} on {f['proxy']} ({f['age']:.0f}s)" for f in active
                )
                or "none"
            ),
            highlight=False,
        )
        for h in data.get("halts") or []:
            console.print(
                Text(f"halt {h['name']!r}: {h['state']} ({h['reason']})"), highlight=False
            )
        for entry in (data.get("timeline") or [])[-8:]:
            console.print(
                f"  t={entry['t']:6.1f}s [{entry['kind']}] {entry['text']}", highlight=False
            )

    run_command(body)


@gameday_app.command("end")
def end() -> None:
    """End the session: heal everything, stop the load, write the report."""

    def body() -> None:
        result = _client().call("POST", "/api/end", {"by": "the terminal"}, timeout=90.0)
        if result.get("dir"):
            console.print(f"session ended ({result['status']}); {result['dir']}")
            for path in result.get("reports", []):
                console.print(f"[dim]report: {path}[/]")
        else:
            err_console.print("the session is ending")

    run_command(body)


@gameday_app.command("validate")
def validate(
    plan: Annotated[Path, typer.Argument(metavar="FILE", help="A game-day plan (YAML).")],
) -> None:
    """Check a plan file; every problem with file, line, key path, expected and got."""

    def body() -> None:
        from resilience.gameday.plan import load_plan

        resolved = load_plan(plan)
        console.print(
            f"[green]valid[/]: {resolved.plan.name}, {len(resolved.steps)} step(s), "
            f"{len(resolved.plan.halt)} halt condition(s), load {resolved.level()}",
            highlight=False,
        )

    run_command(body)


@gameday_app.command("schema")
def schema() -> None:
    """Print the plan file's JSON Schema (for editors)."""
    from resilience.gameday.plan import plan_schema

    console.print_json(json.dumps(plan_schema()))


def register(app: typer.Typer) -> None:
    """Add `gameday` to the app."""
    app.add_typer(gameday_app, name="gameday")
