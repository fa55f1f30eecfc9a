"""Unit tests: the installer's plan, dry run and steps, against a fake machine."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from resilience.errors import DependencyUnavailable
from resilience.stack import versions
from resilience.stack.config import Ports, StackConfig, StackPaths
from resilience.stack.install import Installer, InstallReporter, Step, System
from resilience.stack.programs import JAEGER_BUILD, TOXIPROXY_BUILD, Programs


@dataclass
class FakeSystem(System):
    """A machine with the given packages and programs; ``run`` records and fakes builds."""

    root: bool = True
    packages: set[str] = field(default_factory=lambda: set(versions.DEBIAN_PACKAGES))
    programs: dict[str, str] = field(
        default_factory=lambda: {"dpkg-query": "/usr/bin/dpkg-query", "go": "/usr/bin/go"}
    )
    go: tuple[int, int] = (1, 26)
    build_info: dict[str, tuple[str, str]] = field(default_factory=dict)
    ran: list[tuple[list[str], dict[str, str], Path | None]] = field(default_factory=list)

    def is_root(self) -> bool:
        return self.root

    def which(self, program: str) -> str | None:
        return self.programs.get(program)

    def package_installed(self, package: str) -> bool:
        return package in self.packages

    def find_go(self) -> str | None:
        return self.which("go")

    def go_build_info(self, go: str, binary: Path) -> tuple[str, str] | None:
        return self.build_info.get(binary.name)

    def go_version(self, go: str) -> tuple[int, int] | None:
        return self.go

    def run(
        self,
        argv: list[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float,
    ) -> None:
        self.ran.append((argv, dict(env or {}), cwd))
        if argv[1:2] == ["install"] and env and "GOBIN" in env:
            # What `go install` leaves behind: a binary named after the package directory.
            gobin = Path(env["GOBIN"])
            gobin.mkdir(parents=True, exist_ok=True)
            (gobin / argv[-1].split("@")[0].rsplit("/", 1)[-1]).write_text("binary")
        if "apt-get" in argv:
            self.packages.update(a for a in argv if a in (*versions.DEBIAN_PACKAGES, "chromium"))


class Recorder(InstallReporter):
    def __init__(self) -> None:
        self.events: list[str] = []

    def skipped(self, step: Step) -> None:
        self.events.append(f"skip {step.name}")

    def starting(self, step: Step) -> None:
        self.events.append(f"start {step.name}")

    def command(self, text: str) -> None:
        self.events.append(f"$ {text}")

    def finished(self, step: Step, seconds: float) -> None:
        self.events.append(f"done {step.name}")


def make_config(tmp_path: Path) -> StackConfig:
    return StackConfig(
        paths=StackPaths(home=tmp_path / "home", state=tmp_path / "state"), ports=Ports()
    )


def installed(config: StackConfig) -> None:
    """Put both Go-built binaries and a matching marker in place."""
    programs = Programs(config)
    config.paths.bin.mkdir(parents=True)
    marker = {}
    for build in (TOXIPROXY_BUILD, JAEGER_BUILD):
        programs.built(build).write_text("binary")
        marker[build.name] = build.marker_entry()
    programs.marker.write_text(json.dumps(marker))


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


def test_everything_installed_is_a_no_op(tmp_path: Path) -> None:
    """With packages, binaries and marker in place, install runs nothing."""
    config = make_config(tmp_path)
    installed(config)
    system = FakeSystem()
    recorder = Recorder()
    result = Installer(config, system=system).install(reporter=recorder)
    assert result.ran == ()
    assert system.ran == []
    assert recorder.events == ["skip Debian packages", "skip toxiproxy", "skip jaeger"]


def test_dry_run_lists_every_command_and_changes_nothing(tmp_path: Path) -> None:
    """A dry run on a bare machine prints apt and go commands and creates no file."""
    config = make_config(tmp_path)
    system = FakeSystem(packages=set())
    recorder = Recorder()
    result = Installer(config, system=system).install(dry_run=True, reporter=recorder)
    assert result.dry_run
    assert result.ran == ("Debian packages", "toxiproxy", "jaeger")
    assert system.ran == []
    assert files_under(tmp_path) == []
    commands = [e for e in recorder.events if e.startswith("$ ")]
    assert "$ env DEBIAN_FRONTEND=noninteractive apt-get update" in commands
    assert (
        "$ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        "postgresql prometheus" in commands
    )
    assert any(
        f"go install {versions.TOXIPROXY_PACKAGE}@{versions.TOXIPROXY_VERSION}" in c
        for c in commands
    )
    assert any(
        f"go get -tool {versions.JAEGER_PACKAGE}@{versions.JAEGER_VERSION}" in c for c in commands
    )


def test_only_missing_packages_are_installed_and_browser_adds_chromium(tmp_path: Path) -> None:
    """apt-get installs exactly the missing packages; --browser adds chromium."""
    config = make_config(tmp_path)
    installed(config)
    system = FakeSystem(packages={"postgresql"})
    Installer(config, system=system).install(browser=True)
    argvs = [argv for argv, _, _ in system.ran]
    assert argvs == [
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update"],
        [
            "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
            "--no-install-recommends", "prometheus", "chromium",
        ],
    ]  # fmt: skip


def test_not_root_uses_sudo(tmp_path: Path) -> None:
    """A non-root user with sudo gets the apt commands prefixed with sudo."""
    config = make_config(tmp_path)
    installed(config)
    system = FakeSystem(root=False, packages=set())
    system.programs["sudo"] = "/usr/bin/sudo"
    Installer(config, system=system).install()
    assert all(argv[0] == "sudo" for argv, _, _ in system.ran)


def test_not_root_without_sudo_fails_with_the_exact_command(tmp_path: Path) -> None:
    """Without root or sudo, install raises DependencyUnavailable quoting the apt-get command."""
    config = make_config(tmp_path)
    installed(config)
    system = FakeSystem(root=False, packages={"postgresql"})
    with pytest.raises(DependencyUnavailable) as caught:
        Installer(config, system=system).install()
    assert "apt-get install -y --no-install-recommends prometheus" in caught.value.fix
    assert system.ran == []


def test_builds_toxiproxy_and_jaeger_then_records_the_marker(tmp_path: Path) -> None:
    """Missing binaries are built with go, installed under bin/ and recorded in the marker."""
    config = make_config(tmp_path)
    system = FakeSystem()
    Installer(config, system=system).install()
    build = config.paths.build
    assert system.ran[0] == (
        ["/usr/bin/go", "install", f"{versions.TOXIPROXY_PACKAGE}@{versions.TOXIPROXY_VERSION}"],
        {"GOBIN": str(build / "toxiproxy")},
        None,
    )
    assert system.ran[1] == (
        ["/usr/bin/go", "get", "-tool", f"{versions.JAEGER_PACKAGE}@{versions.JAEGER_VERSION}"],
        {},
        build / "jaeger",
    )
    assert system.ran[2] == (
        ["/usr/bin/go", "install", versions.JAEGER_PACKAGE],
        {"GOBIN": str(build / "jaeger" / "bin")},
        build / "jaeger",
    )
    go_mod = (build / "jaeger" / "go.mod").read_text()
    assert go_mod.startswith("module resilience.local/jaegertool\n\ngo 1.25\n")
    for line in versions.JAEGER_REPLACES:
        assert f"replace {line}\n" in go_mod
    programs = Programs(config)
    assert (config.paths.bin / "toxiproxy-server").read_text() == "binary"
    assert (config.paths.bin / "jaeger").read_text() == "binary"
    assert programs.is_current(TOXIPROXY_BUILD)
    assert programs.is_current(JAEGER_BUILD)
    # A second run has nothing left to do.
    system.ran.clear()
    assert Installer(config, system=system).install().ran == ()
    assert system.ran == []


def test_a_pinned_version_change_rebuilds(tmp_path: Path) -> None:
    """A marker that records another version makes install rebuild that program only."""
    config = make_config(tmp_path)
    installed(config)
    programs = Programs(config)
    marker = programs.read_marker()
    marker["toxiproxy"]["version"] = "v2.11.0"
    programs.marker.write_text(json.dumps(marker))
    system = FakeSystem()
    result = Installer(config, system=system).install()
    assert result.ran == ("toxiproxy",)
    assert programs.read_marker()["toxiproxy"]["version"] == versions.TOXIPROXY_VERSION


def test_a_binary_without_marker_is_adopted_from_its_go_build_info(tmp_path: Path) -> None:
    """A binary whose Go build info shows the pinned version is recorded, not rebuilt."""
    config = make_config(tmp_path)
    installed(config)
    Programs(config).marker.unlink()
    system = FakeSystem(
        build_info={
            "toxiproxy-server": (TOXIPROXY_BUILD.package, TOXIPROXY_BUILD.version),
            "jaeger": (JAEGER_BUILD.package, JAEGER_BUILD.version),
        }
    )
    result = Installer(config, system=system).install()
    assert result.ran == ("toxiproxy", "jaeger")
    assert system.ran == []
    assert Programs(config).is_current(JAEGER_BUILD)


def test_missing_go_says_how_to_install_it(tmp_path: Path) -> None:
    """With a build needed and no Go, install raises DependencyUnavailable with the fix."""
    config = make_config(tmp_path)
    system = FakeSystem()
    del system.programs["go"]
    with pytest.raises(DependencyUnavailable, match="Go is needed") as caught:
        Installer(config, system=system).install()
    assert "go.dev/dl" in caught.value.fix


def test_dry_run_shows_a_missing_go_without_failing(tmp_path: Path) -> None:
    """A dry run reports that Go is missing on the steps it blocks, and exits normally."""
    config = make_config(tmp_path)
    system = FakeSystem()
    del system.programs["go"]
    plan = Installer(config, system=system).plan()
    blocked = {step.name for step in plan if step.blocker is not None}
    assert blocked == {"toxiproxy", "jaeger"}
    assert Installer(config, system=system).install(dry_run=True).ran == ("toxiproxy", "jaeger")
