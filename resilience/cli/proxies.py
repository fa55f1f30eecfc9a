"""Commands: ``proxies up FILE`` and ``proxies down FILE``.

The Toxiproxy proxies an experiment declares must exist before the service behind them
starts (it connects through them). ``proxies up`` creates them (starting Toxiproxy if the
stack's is not running), idempotently; ``proxies down`` deletes those that are the file's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from resilience.cli._common import console, emit_json, run_command
from resilience.cli._params import ExperimentArg, JsonOpt, SetOpt

if TYPE_CHECKING:
    from resilience.runner.target import ProxyChange

proxies_app = typer.Typer(
    name="proxies",
    help="Create or delete an experiment's declared Toxiproxy proxies.",
    no_args_is_help=True,
)

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", metavar="NAME", help="Load the file with this profile."),
]

_STYLE = {"created": "green", "enabled": "green", "deleted": "yellow", "left": "yellow"}


def _print(changes: list[ProxyChange], as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "proxies": [
                    {
                        "name": c.name,
                        "listen": c.listen,
                        "upstream": c.upstream,
                        "action": c.action,
                        "note": c.note,
                    }
                    for c in changes
                ]
            }
        )
        return
    if not changes:
        console.print("the file declares no proxies")
    for c in changes:
        style = _STYLE.get(c.action, "dim")
        note = f" ({c.note})" if c.note else ""
        console.print(
            f"[{style}]{c.action:>7}[/] {c.name}: {c.listen} -> {c.upstream}{note}",
            highlight=False,
        )


@proxies_app.command("up")
def up(
    file: ExperimentArg,
    profile: ProfileOpt = None,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the file's proxies (identical ones are kept; a conflicting one is exit 2)."""

    def body() -> None:
        from resilience.experiment import load_experiment
        from resilience.faults.toxiproxy import ToxiproxyClient
        from resilience.runner.target import proxies_up
        from resilience.stack import Stack, StackConfig

        experiment = load_experiment(file, profile=profile, overrides=list(overrides or []))
        config = StackConfig.from_env()
        own = experiment.toxiproxy
        if experiment.proxies and own is None:
            Stack(config).up(components=["toxiproxy"])
        # The file's own Toxiproxy (toxiproxy.url) when it names one, else the stack's.
        url = own.url if own is not None else config.toxiproxy_url
        with ToxiproxyClient(url) as client:
            _print(proxies_up(experiment, client), as_json)

    run_command(body)


@proxies_app.command("down")
def down(
    file: ExperimentArg,
    profile: ProfileOpt = None,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete the file's proxies that exist as declared (never the stack's own)."""

    def body() -> None:
        from resilience.experiment import load_experiment
        from resilience.faults.toxiproxy import ToxiproxyClient
        from resilience.runner.target import proxies_down
        from resilience.stack import StackConfig

        experiment = load_experiment(file, profile=profile, overrides=list(overrides or []))
        config = StackConfig.from_env()
        own = experiment.toxiproxy
        url = own.url if own is not None else config.toxiproxy_url
        with ToxiproxyClient(url) as client:
            _print(proxies_down(experiment, client, config), as_json)

    run_command(body)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.add_typer(proxies_app)
