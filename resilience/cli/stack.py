"""Commands: ``stack install|up|down|status|compose`` and ``doctor``.

Thin: parse options, call ``resilience.stack``, print with rich, map errors to exit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from resilience.cli._common import console, emit_json, err_console, run_command
from resilience.cli._params import FLAG, JsonOpt, ShopModeName
from resilience.errors import EXIT_FAILED, EXIT_PASSED, EXIT_UNAVAILABLE

if TYPE_CHECKING:
    from resilience.experiment import Experiment
    from resilience.stack import FaultSweeper, Stack, StackConfig
    from resilience.stack.install import InstallReporter

stack_app = typer.Typer(
    name="stack",
    help="Install, start, stop and inspect the local stack (Toxiproxy, PostgreSQL, "
    "Prometheus, Jaeger and the shop).",
    no_args_is_help=True,
)

OnlyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        metavar="COMPONENTS",
        help="Components, comma-separated or repeated: postgres, toxiproxy, jaeger, "
        "prometheus, catalog, orders, gateway, or the groups infra, shop, all.",
    ),
]


def _config() -> StackConfig:
    from resilience.stack import StackConfig

    return StackConfig.from_env()


def _fault_sweeper() -> FaultSweeper | None:
    """The hook ``stack status`` runs to heal faults a crashed run left behind."""

    def sweeper(config: StackConfig) -> None:
        from resilience.runner.target import sweep_leftovers

        for line in sweep_leftovers(config):
            err_console.print(f"[yellow]sweep:[/] {line}", highlight=False)

    return sweeper


def _reporter() -> InstallReporter:
    from resilience.stack.install import InstallReporter, Step

    class Printer(InstallReporter):
        def skipped(self, step: Step) -> None:
            console.print(f"[green]✓[/] {step.name}: {step.reason}", highlight=False)

        def starting(self, step: Step) -> None:
            console.print(f"[bold]→ {step.name}[/]: {step.reason}", highlight=False)
            if step.blocker is not None:
                console.print(f"  [red]blocked:[/] {step.blocker}", highlight=False)

        def command(self, text: str) -> None:
            console.print(f"  [dim]$ {text}[/]", highlight=False, markup=True)

        def finished(self, step: Step, seconds: float) -> None:
            console.print(f"[green]✓[/] {step.name} done in {seconds:.1f}s", highlight=False)

    return Printer()


@stack_app.command("install")
def install(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar=FLAG, help="Print the steps; change nothing.")
    ] = False,
    browser: Annotated[
        bool, typer.Option("--browser", metavar=FLAG, help="Also install Debian's chromium.")
    ] = False,
) -> None:
    """Install PostgreSQL, Prometheus, Toxiproxy and Jaeger (idempotent; a re-run is a no-op)."""

    def body() -> None:
        from resilience.stack.install import Installer

        result = Installer(_config()).install(
            browser=browser, dry_run=dry_run, reporter=_reporter()
        )
        if dry_run:
            console.print(f"dry run: {len(result.ran)} step(s) would run; nothing was changed")
        elif result.ran:
            console.print(f"installed in {result.seconds:.1f}s")
        else:
            console.print(f"everything is installed (checked in {result.seconds:.2f}s)")

    run_command(body)


@stack_app.command("up")
def up(
    shop_mode: Annotated[
        ShopModeName,
        typer.Option("--shop-mode", metavar="MODE", help="The shop's mode: fragile or hardened."),
    ] = "fragile",
    shop_option: Annotated[
        list[str] | None,
        typer.Option(
            "--shop-option",
            metavar="NAME=VALUE",
            help="Passed to the shop as SHOP_OPT_NAME (repeatable).",
        ),
    ] = None,
    only: OnlyOpt = None,
    experiment_file: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            metavar="FILE",
            help="Also create this experiment's proxies and add its scrape jobs (kept until "
            "`stack down`); with a target, only the infrastructure starts.",
        ),
    ] = None,
) -> None:
    """Start the stack (what is already running is checked, not restarted)."""

    def body() -> None:
        from resilience.stack import Stack, parse_shop_options

        stack = Stack(_config())
        components = only or None
        options = parse_shop_options(shop_option or [])
        experiment = None
        if experiment_file is not None:
            from resilience.experiment import load_experiment

            experiment = load_experiment(experiment_file)
            if experiment.target is not None and components is None:
                components = ["infra"]
        result = stack.up(shop_mode=shop_mode, shop_options=options, components=components)
        if result.started:
            restarted = f" (restarted: {', '.join(result.restarted)})" if result.restarted else ""
            console.print(f"started {', '.join(result.started)}{restarted}", highlight=False)
        if result.already_running:
            console.print(f"already running: {', '.join(result.already_running)}", highlight=False)
        if experiment is not None:
            _describe_experiment(stack, experiment)
        console.print(f"stack up in {result.seconds:.1f}s; state in {stack.config.paths.state}")

    run_command(body)


def _describe_experiment(stack: Stack, experiment: Experiment) -> None:
    """``stack up --experiment``: the file's proxies and its scrape jobs, kept."""
    from resilience.faults.toxiproxy import ToxiproxyClient
    from resilience.runner.target import proxies_up

    if experiment.proxies:
        with ToxiproxyClient(stack.config.toxiproxy_url) as client:
            for change in proxies_up(experiment, client):
                console.print(
                    f"proxy {change.name} {change.action}: {change.listen} -> {change.upstream}",
                    highlight=False,
                )
    wanted = {job.job: job.url for job in experiment.scrape_jobs()}
    if wanted:
        stack.set_scrape_jobs({**stack.scrape_jobs(), **wanted})
        console.print(f"prometheus scrapes {', '.join(sorted(wanted))}", highlight=False)


@stack_app.command("down")
def down(only: OnlyOpt = None) -> None:
    """Stop the stack's processes (whole process groups) and wait until their ports are free."""

    def body() -> None:
        from resilience.stack import Stack

        result = Stack(_config()).down(only or None)
        if result.stopped:
            console.print(f"stopped {', '.join(result.stopped)}", highlight=False)
        else:
            console.print("nothing was running")

    run_command(body)


@stack_app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Each component with its version, port, PID and health (exit 3 if any is unhealthy)."""

    def body() -> None:
        import dataclasses

        from rich.table import Table

        from resilience.stack import Stack

        stack = Stack(_config(), sweeper=_fault_sweeper())
        statuses = stack.status()
        if as_json:
            rows = [{**dataclasses.asdict(s), "healthy": s.healthy} for s in statuses]
            emit_json({"state_dir": str(stack.config.paths.state), "components": rows})
        else:
            table = Table(title=f"stack in {stack.config.paths.state}", title_justify="left")
            for column in ("component", "state", "port", "pid", "version", "mode", "detail"):
                table.add_column(column)
            colour = {"running": "green", "stopped": "dim", "dead": "red", "unhealthy": "red"}
            for s in statuses:
                table.add_row(
                    s.name,
                    f"[{colour[s.state]}]{s.state}[/]",
                    str(s.port),
                    str(s.pid or ""),
                    s.version or "",
                    s.mode or "",
                    s.detail,
                )
            console.print(table)
        if any(s.state in ("dead", "unhealthy") for s in statuses):
            raise typer.Exit(EXIT_UNAVAILABLE)

    run_command(body)


@stack_app.command("compose")
def compose(
    check: Annotated[
        bool, typer.Option("--check", metavar=FLAG, help="Exit 1 if the file is not up to date.")
    ] = False,
    file: Annotated[Path, typer.Option("--file", metavar="FILE", help="Where the file is.")] = Path(
        "docker-compose.yml"
    ),
) -> None:
    """Write docker-compose.yml from the native stack's definitions (or --check it)."""

    def body() -> int:
        from resilience.stack.compose import compose_is_current, write_compose

        if check:
            if compose_is_current(file):
                console.print(f"{file} is up to date")
                return EXIT_PASSED
            err_console.print(f"{file} is out of date: run `resilience stack compose`")
            return EXIT_FAILED
        changed = write_compose(file)
        console.print(f"{'wrote' if changed else 'unchanged:'} {file}")
        return EXIT_PASSED

    raise typer.Exit(run_command(body))


def doctor(as_json: JsonOpt = False) -> None:
    """What is missing to run the stack, and the command that fixes each (exit 3 if any)."""

    def body() -> None:
        import dataclasses

        from rich.table import Table

        from resilience.stack.doctor import doctor as run_doctor
        from resilience.stack.doctor import healthy

        checks = run_doctor(_config())
        if as_json:
            emit_json(
                {"healthy": healthy(checks), "checks": [dataclasses.asdict(c) for c in checks]}
            )
            if not healthy(checks):
                raise typer.Exit(EXIT_UNAVAILABLE)
            return
        table = Table(show_header=True)
        for column in ("", "check", "found", "fix"):
            table.add_column(column)
        for c in checks:
            mark = (
                "[green]ok[/]"
                if c.ok
                else ("[red]missing[/]" if c.required else "[yellow]advice[/]")
            )
            table.add_row(mark, c.name, c.detail, "" if c.ok else c.fix)
        console.print(table)
        if not healthy(checks):
            err_console.print("[red]something the stack needs is missing[/]")
            raise typer.Exit(EXIT_UNAVAILABLE)
        console.print("[green]everything the stack needs is here[/]")

    run_command(body)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.add_typer(stack_app)
    app.command("doctor")(doctor)
