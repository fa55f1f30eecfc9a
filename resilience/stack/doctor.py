"""``resilience doctor``: what this machine lacks to run the stack, and the command that fixes each.

Read-only: it looks at programs, Debian packages, Python extras, Go, ports, disk space
and whether PostgreSQL's user can reach the state directory. A check marked not
``required`` is advice and does not make the doctor fail.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from resilience.stack import versions
from resilience.stack._process import port_is_free
from resilience.stack.components import unreachable_parent
from resilience.stack.config import StackConfig
from resilience.stack.install import GO_FIX, MIN_GO, System
from resilience.stack.programs import GO_BUILDS, INSTALL_COMMAND, Programs
from resilience.stack.supervisor import Stack

MIN_FREE_BYTES = 1 << 30
SHOP_MODULES = (
    "fastapi",
    "uvicorn",
    "asyncpg",
    "prometheus_client",
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.http",
)
SHOP_FIX = "pip install -e '.[shop]'   (from the resilience checkout)"


@dataclass(frozen=True)
class Check:
    """One finding of the doctor: ``ok``, what it saw, and the command that fixes it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def healthy(checks: list[Check]) -> bool:
    """Whether nothing required is missing."""
    return all(c.ok or not c.required for c in checks)


def doctor(config: StackConfig, *, system: System | None = None) -> list[Check]:
    """Every check, in the order a reader fixes them."""
    system = system or System()
    programs = Programs(config)
    return [
        *_go_programs(programs),
        _program("postgresql", programs.postgres("postgres"), "PostgreSQL server"),
        _program("prometheus", programs.prometheus, "Prometheus"),
        *_packages(system),
        _go(system, programs),
        *_postgres_user(config),
        _shop_extras(),
        *_ports(config),
        _disk(config.paths.state),
        _browser(system),
    ]


def _go_programs(programs: Programs) -> list[Check]:
    checks = []
    for build in GO_BUILDS:
        path = programs.built(build)
        if programs.is_current(build):
            checks.append(Check(build.binary, True, f"{path} ({build.version})"))
        elif path.is_file():
            checks.append(
                Check(
                    build.binary,
                    False,
                    f"{path} is not recorded as {build.version} in {programs.marker}",
                    INSTALL_COMMAND,
                )
            )
        else:
            checks.append(Check(build.binary, False, f"{path} missing", INSTALL_COMMAND))
    return checks


def _program(name: str, path: Path, what: str) -> Check:
    if path.is_file() and os.access(path, os.X_OK):
        return Check(name, True, str(path))
    return Check(name, False, f"{what} missing ({path})", INSTALL_COMMAND)


def _packages(system: System) -> list[Check]:
    if system.which("dpkg-query") is None:
        return []
    missing = [p for p in versions.DEBIAN_PACKAGES if not system.package_installed(p)]
    if not missing:
        return [Check("debian packages", True, ", ".join(versions.DEBIAN_PACKAGES))]
    return [
        Check("debian packages", False, f"not installed: {', '.join(missing)}", INSTALL_COMMAND)
    ]


def _go(system: System, programs: Programs) -> Check:
    needed = not all(programs.is_current(b) for b in GO_BUILDS)
    go = system.find_go()
    version = system.go_version(go) if go else None
    if go and version and version >= MIN_GO:
        return Check("go", True, f"{go} (go{version[0]}.{version[1]})", required=False)
    why = "needed to build toxiproxy-server and jaeger" if needed else "only needed to rebuild"
    seen = "missing" if go is None else f"{go} is too old"
    return Check("go", False, f"{seen}; {why}", GO_FIX, required=needed)


def _postgres_user(config: StackConfig) -> list[Check]:
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return [Check("postgres user", False, "no `postgres` OS user", INSTALL_COMMAND)]
    state = config.paths.state
    blocked = unreachable_parent(state, user.pw_uid, user.pw_gid)
    if blocked is None:
        return [Check("postgres user", True, f"can reach {state}")]
    return [
        Check(
            "postgres user",
            False,
            f"cannot traverse {blocked}, a parent of the state directory {state}",
            f"chmod o+x {blocked}   (or set RESILIENCE_STATE_DIR elsewhere)",
        )
    ]


def _shop_extras() -> Check:
    missing = [m for m in SHOP_MODULES if _find_spec(m) is None]
    if not missing:
        return Check("python extras", True, "shop: " + ", ".join(SHOP_MODULES))
    return Check("python extras", False, f"shop extra missing: {', '.join(missing)}", SHOP_FIX)


def _find_spec(module: str) -> object:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _ports(config: StackConfig) -> list[Check]:
    ours = {port for record in Stack(config).records().values() for port in record.ports.values()}
    busy = [
        (name, port)
        for name, port in config.ports.model_dump().items()
        if port not in ours and not port_is_free(port, config.host)
    ]
    if not busy:
        return [Check("ports", True, f"all {len(config.ports.model_dump())} ports free or ours")]
    checks = []
    for name, port in busy:
        fix = (
            f"stop the program on {config.host}:{port}, or move the stack: RESILIENCE_PORT_OFFSET=N"
        )
        if name == "prometheus":
            fix += (
                " (Debian's prometheus package starts its own: systemctl disable --now prometheus)"
            )
        checks.append(Check(f"port {port}", False, f"{name} port in use by another program", fix))
    return checks


def _disk(state: Path) -> Check:
    existing = next(p for p in [state, *state.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    detail = f"{free / (1 << 30):.1f} GiB free at {existing}"
    if free >= MIN_FREE_BYTES:
        return Check("disk", True, detail)
    return Check(
        "disk", False, detail + " (need 1 GiB)", "free disk space or set RESILIENCE_STATE_DIR"
    )


def _browser(system: System) -> Check:
    found = system.which("chromium") or system.which("chromium-browser")
    if found:
        return Check("chromium", True, found, required=False)
    return Check(
        "chromium", False, "missing (only the HTML report tests need it)",
        f"{INSTALL_COMMAND} --browser", required=False,
    )  # fmt: skip
