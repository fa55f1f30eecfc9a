"""Parameters several commands share, declared once (type, flag names, metavar, help).

Metavars name what a value is (``NAME``, ``FILE``, ``KEY=VALUE``, ``DIR``, ``MODE``...);
flags take no value and show none (``FLAG``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resilience.vocabulary import ShopMode

FLAG = ""
"""The metavar of an on/off flag: it takes no value, so its help shows no type."""

ShopModeName = ShopMode
"""The shop's modes as typer's choices (shell completion offers them)."""


def complete_experiment(incomplete: str) -> list[str]:
    """Shell completion of catalogue names (a path is typed as a path)."""
    from resilience.experiment import catalogue_names

    return [name for name in catalogue_names() if name.startswith(incomplete)]


ExperimentArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME|FILE",
        help="A catalogue name (see `resilience list`) or an experiment YAML file.",
        autocompletion=complete_experiment,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a value after the profile, e.g. load.client_timeout=5s (repeatable).",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", metavar=FLAG, help="Print one JSON document on stdout.")
]
RunDirArg = Annotated[
    Path, typer.Argument(metavar="DIR", help="A run directory (it holds journal.json).")
]
ShopModeOpt = Annotated[
    ShopModeName | None,
    typer.Option(
        "--shop-mode",
        metavar="MODE",
        help="The built-in shop's mode: fragile or hardened (default: the running shop's, "
        "else hardened).",
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="URL",
        help="Base URL of another HTTP service (on loopback unless its host is allowed).",
    ),
]
AllowHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        metavar="HOST",
        help="Let traffic go to this host off loopback (target, parts), like "
        "safety.allow_hosts (repeatable).",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", metavar="N", min=1, help="Load worker processes (default: one per core)."
    ),
]
NoStackOpt = Annotated[
    bool,
    typer.Option(
        "--no-stack",
        metavar=FLAG,
        help="Do not start the local stack; fail if it is not running.",
    ),
]
