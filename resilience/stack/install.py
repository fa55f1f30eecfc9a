"""``resilience stack install``: put the stack's programs on this machine, idempotently.

The installer first plans (read-only checks: ``dpkg -s``, the install marker, the build
info Go embeds in a binary), then runs only the steps that are needed, telling an
``InstallReporter`` what it does. PostgreSQL and Prometheus come from Debian packages;
Toxiproxy and Jaeger are built with Go at the versions pinned in ``versions``. A
second run finds everything in place and does nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resilience.errors import DependencyUnavailable, StackError
from resilience.stack import versions
from resilience.stack._process import tail
from resilience.stack.config import StackConfig
from resilience.stack.programs import (
    JAEGER_BUILD,
    TOXIPROXY_BUILD,
    GoBuild,
    Programs,
)

logger = logging.getLogger(__name__)

BROWSER_PACKAGE = "chromium"
MIN_GO = (1, 21)
GO_FIX = (
    "install Go >= 1.21 (Go 1.25 or newer recommended) from https://go.dev/dl/ into "
    "/usr/local/go and put /usr/local/go/bin on PATH"
)
JAEGER_TOOL_MODULE = "resilience.local/jaegertool"
APT_TIMEOUT = 1800.0
GO_TIMEOUT = 3600.0


class System:
    """The machine as the installer sees it; tests pass a fake."""

    def is_root(self) -> bool:
        return os.geteuid() == 0

    def which(self, program: str) -> str | None:
        return shutil.which(program)

    def find_go(self) -> str | None:
        """The go command: on PATH, or where the official tarball puts it."""
        found = self.which("go")
        if found is None and Path("/usr/local/go/bin/go").is_file():
            found = "/usr/local/go/bin/go"
        return found

    def package_installed(self, package: str) -> bool:
        try:
            done = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status}", package],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0 and done.stdout.strip() == "install ok installed"

    def go_build_info(self, go: str, binary: Path) -> tuple[str, str] | None:
        """(main module path, version) that Go recorded in ``binary``, if it says."""
        try:
            done = subprocess.run(
                [go, "version", "-m", str(binary)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        package = module = None
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "path":
                package = parts[1]
            elif len(parts) >= 3 and parts[0] == "mod":
                module = parts[2]
        return (package, module) if package and module else None

    def go_version(self, go: str) -> tuple[int, int] | None:
        try:
            done = subprocess.run(
                [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = re.match(r"go(\d+)\.(\d+)", done.stdout.strip())
        return (int(found.group(1)), int(found.group(2))) if found else None

    def run(
        self,
        argv: list[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float,
    ) -> None:
        """Run ``argv`` with its output appended to ``log``; StackError on failure."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"\n$ {shlex.join(argv)}\n".encode())
            out.flush()
            start = out.tell()
            try:
                done = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **(env or {})},
                    cwd=cwd,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise StackError(
                    f"`{shlex.join(argv)}` did not finish within {timeout:.0f}s",
                    log_tail=tail(log, start=start),
                ) from exc
            except OSError as exc:
                raise StackError(f"could not run `{shlex.join(argv)}`: {exc}") from exc
        if done.returncode != 0:
            raise StackError(
                f"`{shlex.join(argv)}` failed with exit code {done.returncode} (log: {log})",
                log_tail=tail(log, start=start),
            )


class InstallReporter:
    """Told what the installer does; override what you want to show."""

    def skipped(self, step: Step) -> None:
        """``step`` is already satisfied."""

    def starting(self, step: Step) -> None:
        """``step`` is about to run (or, in a dry run, would run)."""

    def command(self, text: str) -> None:
        """One command of the current step, as a shell line."""

    def finished(self, step: Step, seconds: float) -> None:
        """``step`` ran successfully."""


@dataclass
class Step:
    """One unit of installation: what it is, whether it is needed, and how it is done."""

    name: str
    needed: bool
    reason: str
    commands: list[str] = field(default_factory=list)
    action: Callable[[InstallReporter], None] | None = None
    blocker: DependencyUnavailable | None = None


@dataclass(frozen=True)
class InstallResult:
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    dry_run: bool
    seconds: float


class Installer:
    """Plans and runs the installation for one configuration."""

    def __init__(self, config: StackConfig, *, system: System | None = None) -> None:
        self.config = config
        self.system = system or System()
        self.programs = Programs(config)

    @property
    def log(self) -> Path:
        return self.config.paths.build / "install.log"

    # -- planning (read-only) --------------------------------------------------------

    def plan(self, *, browser: bool = False) -> list[Step]:
        return [
            self._apt_step(browser),
            *(self._go_step(b) for b in (TOXIPROXY_BUILD, JAEGER_BUILD)),
        ]

    def _apt_step(self, browser: bool) -> Step:
        packages = [*versions.DEBIAN_PACKAGES, *([BROWSER_PACKAGE] if browser else [])]
        name = "Debian packages"
        if self.system.which("dpkg-query") is None:
            missing_programs = [
                str(p)
                for p in (self.programs.postgres("postgres"), self.programs.prometheus)
                if not p.is_file()
            ]
            if not missing_programs:
                return Step(name, False, "not a Debian system; PostgreSQL and Prometheus found")
            return Step(
                name,
                True,
                f"not a Debian system and {', '.join(missing_programs)} missing",
                blocker=DependencyUnavailable(
                    "no dpkg/apt-get on this machine",
                    fix=f"install PostgreSQL {versions.POSTGRES_MAJOR} and Prometheus 2.x with "
                    "the system's package manager",
                ),
            )
        missing = [p for p in packages if not self.system.package_installed(p)]
        if not missing:
            return Step(name, False, f"{', '.join(packages)} installed")
        apt_env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        commands = [
            [*apt_env, "apt-get", "update"],
            [*apt_env, "apt-get", "install", "-y", "--no-install-recommends", *missing],
        ]
        blocker = None
        if not self.system.is_root():
            if self.system.which("sudo") is None:
                blocker = DependencyUnavailable(
                    f"installing {', '.join(missing)} needs root, and sudo is missing",
                    fix=" && ".join(shlex.join(c) for c in commands) + "   (as root)",
                )
            commands = [["sudo", *c] for c in commands]

        def action(reporter: InstallReporter) -> None:
            for argv in commands:
                reporter.command(shlex.join(argv))
                self.system.run(argv, log=self.log, timeout=APT_TIMEOUT)

        return Step(
            name,
            True,
            f"missing: {', '.join(missing)}",
            commands=[shlex.join(c) for c in commands],
            action=action,
            blocker=blocker,
        )

    def _go_step(self, build: GoBuild) -> Step:
        target = self.programs.built(build)
        if self.programs.is_current(build):
            return Step(build.name, False, f"{target} is {build.version}")
        go = self.system.find_go()
        if go is not None and target.is_file():
            info = self.system.go_build_info(go, target)
            if info == (build.package, build.version):
                # Built before the marker existed (or by hand): record it, do not rebuild.
                return Step(
                    build.name,
                    True,
                    f"{target} is {build.version} (from its Go build info); recording it",
                    commands=[f"record {build.name} {build.version} in {self.programs.marker}"],
                    action=lambda reporter: self._write_marker(build),
                )
        reason = f"{target} missing" if not target.is_file() else f"{target} is not {build.version}"
        commands = (
            self._toxiproxy_commands(go or "go")
            if build is TOXIPROXY_BUILD
            else self._jaeger_commands(go or "go")
        )
        blocker = self._go_blocker(go, build)

        def action(reporter: InstallReporter) -> None:
            if build is JAEGER_BUILD:
                self._write_jaeger_module()
            for argv, env, cwd in commands:
                reporter.command(_show(argv, env, cwd))
                self.system.run(argv, log=self.log, env=env, cwd=cwd, timeout=GO_TIMEOUT)
            self._install_binary(build)
            self._write_marker(build)

        shown = [_show(argv, env, cwd) for argv, env, cwd in commands]
        if build is JAEGER_BUILD:
            shown.insert(0, f"write {self._jaeger_dir() / 'go.mod'} (module {JAEGER_TOOL_MODULE})")
        shown.append(f"install -m 0755 {self._built_binary(build)} {target}")
        return Step(build.name, True, reason, commands=shown, action=action, blocker=blocker)

    def _go_blocker(self, go: str | None, build: GoBuild) -> DependencyUnavailable | None:
        if go is None:
            return DependencyUnavailable(f"Go is needed to build {build.name}", fix=GO_FIX)
        found = self.system.go_version(go)
        if found is None or found < MIN_GO:
            shown = "unknown" if found is None else f"{found[0]}.{found[1]}"
            return DependencyUnavailable(
                f"Go {shown} at {go} is too old to build {build.name}", fix=GO_FIX
            )
        return None

    def _toxiproxy_commands(self, go: str) -> list[tuple[list[str], dict[str, str], Path | None]]:
        gobin = self.config.paths.build / "toxiproxy"
        package = f"{TOXIPROXY_BUILD.package}@{TOXIPROXY_BUILD.version}"
        return [([go, "install", package], {"GOBIN": str(gobin)}, None)]

    def _jaeger_dir(self) -> Path:
        return self.config.paths.build / "jaeger"

    def _jaeger_commands(self, go: str) -> list[tuple[list[str], dict[str, str], Path | None]]:
        here = self._jaeger_dir()
        package = JAEGER_BUILD.package
        return [
            ([go, "get", "-tool", f"{package}@{JAEGER_BUILD.version}"], {}, here),
            ([go, "install", package], {"GOBIN": str(here / "bin")}, here),
        ]

    def _built_binary(self, build: GoBuild) -> Path:
        if build is TOXIPROXY_BUILD:
            # `go install` names the binary after the package directory: cmd/server.
            return self.config.paths.build / "toxiproxy" / "server"
        return self._jaeger_dir() / "bin" / "jaeger"

    # -- doing ----------------------------------------------------------------------

    def _write_jaeger_module(self) -> None:
        here = self._jaeger_dir()
        here.mkdir(parents=True, exist_ok=True)
        replaces = "".join(f"replace {line}\n" for line in JAEGER_BUILD.replaces)
        (here / "go.mod").write_text(f"module {JAEGER_TOOL_MODULE}\n\ngo 1.25\n\n{replaces}")
        # A go.sum from another version would only accumulate stale lines.
        (here / "go.sum").unlink(missing_ok=True)

    def _install_binary(self, build: GoBuild) -> None:
        source = self._built_binary(build)
        target = self.programs.built(build)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then rename: running stacks keep their old inode.
        temporary = target.with_name(f".{target.name}.new")
        shutil.copyfile(source, temporary)
        temporary.chmod(0o755)
        temporary.replace(target)

    def _write_marker(self, build: GoBuild) -> None:
        marker = self.programs.read_marker()
        marker[build.name] = {**build.marker_entry(), "installed_at": _now()}
        self.programs.marker.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.programs.marker.with_name(f".{self.programs.marker.name}.new")
        temporary.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        temporary.replace(self.programs.marker)

    def install(
        self,
        *,
        browser: bool = False,
        dry_run: bool = False,
        reporter: InstallReporter | None = None,
    ) -> InstallResult:
        """Run every needed step (or, with ``dry_run``, only report them)."""
        reporter = reporter or InstallReporter()
        began = time.monotonic()
        ran: list[str] = []
        skipped: list[str] = []
        for step in self.plan(browser=browser):
            if not step.needed:
                reporter.skipped(step)
                skipped.append(step.name)
                continue
            reporter.starting(step)
            if dry_run:
                for line in step.commands:
                    reporter.command(line)
                ran.append(step.name)
                continue
            if step.blocker is not None:
                raise step.blocker
            step_began = time.monotonic()
            if step.action is not None:
                step.action(reporter)
            reporter.finished(step, time.monotonic() - step_began)
            ran.append(step.name)
        return InstallResult(
            ran=tuple(ran),
            skipped=tuple(skipped),
            dry_run=dry_run,
            seconds=time.monotonic() - began,
        )


def _show(argv: list[str], env: Mapping[str, str], cwd: Path | None) -> str:
    line = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])
    return f"(cd {shlex.quote(str(cwd))} && {line})" if cwd else line


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
