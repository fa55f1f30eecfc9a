"""Where each program of the stack lives, and the marker that says what was built.

The Go-built programs (Toxiproxy, Jaeger) live in ``<home>/bin`` beside a marker file,
``<home>/bin/resilience-install.json``, recording the package and version each was built
from; a pinned version that differs from the marker means "rebuild". The Debian-packaged
programs live where the packages put them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from resilience.errors import DependencyUnavailable
from resilience.stack import versions
from resilience.stack.config import StackConfig

MARKER_NAME = "resilience-install.json"
INSTALL_COMMAND = "resilience stack install"


@dataclass(frozen=True)
class GoBuild:
    """What one Go-built program is built from; compared with the marker."""

    name: str
    binary: str
    package: str
    version: str
    replaces: tuple[str, ...] = ()

    def marker_entry(self) -> dict[str, object]:
        return {
            "package": self.package,
            "version": self.version,
            "replaces": list(self.replaces),
        }


TOXIPROXY_BUILD = GoBuild(
    name="toxiproxy",
    binary="toxiproxy-server",
    package=versions.TOXIPROXY_PACKAGE,
    version=versions.TOXIPROXY_VERSION,
)
JAEGER_BUILD = GoBuild(
    name="jaeger",
    binary="jaeger",
    package=versions.JAEGER_PACKAGE,
    version=versions.JAEGER_VERSION,
    replaces=versions.JAEGER_REPLACES,
)
GO_BUILDS = (TOXIPROXY_BUILD, JAEGER_BUILD)


class Programs:
    """Paths of the stack's programs for one configuration."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    @property
    def marker(self) -> Path:
        return self.config.paths.bin / MARKER_NAME

    def built(self, build: GoBuild) -> Path:
        return self.config.paths.bin / build.binary

    @property
    def toxiproxy(self) -> Path:
        return self.built(TOXIPROXY_BUILD)

    @property
    def jaeger(self) -> Path:
        return self.built(JAEGER_BUILD)

    @property
    def postgres_bin(self) -> Path:
        return Path(f"/usr/lib/postgresql/{versions.POSTGRES_MAJOR}/bin")

    def postgres(self, tool: str) -> Path:
        """A PostgreSQL program: postgres, initdb, pg_ctl, pg_isready, psql."""
        return self.postgres_bin / tool

    @property
    def prometheus(self) -> Path:
        found = shutil.which("prometheus")
        return Path(found) if found else Path("/usr/bin/prometheus")

    def read_marker(self) -> dict[str, dict[str, object]]:
        """The marker's entries by program name; empty when missing or unreadable."""
        try:
            data = json.loads(self.marker.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_current(self, build: GoBuild) -> bool:
        """Whether ``build``'s binary exists and the marker says it is the pinned version."""
        entry = self.read_marker().get(build.name, {})
        return self.built(build).is_file() and all(
            entry.get(key) == value for key, value in build.marker_entry().items()
        )

    def installed_version(self, build: GoBuild) -> str:
        """The version the marker records for ``build`` ("unknown" without a marker)."""
        entry = self.read_marker().get(build.name, {})
        return str(entry.get("version", "unknown"))

    def require(self, path: Path, what: str, *, component: str) -> Path:
        """``path`` if it is an executable file, else DependencyUnavailable."""
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise DependencyUnavailable(
            f"{what} is not installed (looked for {path})",
            fix=INSTALL_COMMAND,
            component=component,
        )
