"""The sweeper: undoes what a killed run left in Toxiproxy, at the start of the next one.

A run that dies without healing (SIGKILL, a power cut, a crash in the orchestrator)
leaves toxics in place and proxies disabled. ``sweep`` removes every toxic whose name
starts with ``resilience-`` on every proxy (ours by convention, whether or not the ledger
knew of it), re-enables every proxy the ledger says a run disabled (and, when given, the
managed proxies the caller lists), then clears the ledger, and says what it cleaned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from resilience.errors import FaultError
from resilience.faults.catalogue import TOXIC_PREFIX
from resilience.faults.ledger import read_ledger, write_ledger
from resilience.faults.toxiproxy import ToxiproxyApi

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What the sweep found and undid, and what it could not undo."""

    toxics: tuple[str, ...] = ()
    """``proxy/toxic`` names removed."""
    enabled: tuple[str, ...] = ()
    """Proxies found disabled and re-enabled."""
    failures: tuple[str, ...] = ()
    ledger_entries: int = 0
    ledger_pids: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        """Nothing was left over."""
        return not (self.toxics or self.enabled or self.failures)

    def summary(self) -> str:
        """One line for the CLI, e.g. 'swept 2 leftover toxics from a killed run: ...'."""
        if self.clean:
            return "no leftover faults"
        parts: list[str] = []
        if self.toxics:
            noun = "toxic" if len(self.toxics) == 1 else "toxics"
            parts.append(
                f"swept {len(self.toxics)} leftover {noun} from a killed run: "
                + ", ".join(self.toxics)
            )
        if self.enabled:
            parts.append("re-enabled proxies: " + ", ".join(self.enabled))
        if self.failures:
            parts.append("could not clean: " + "; ".join(self.failures))
        return "; ".join(parts)


def sweep(api: ToxiproxyApi, ledger_path: Path, proxies: list[str] | None = None) -> SweepReport:  # noqa: PLR0912 (one branch per kind of leftover)
    """Remove leftover ``resilience-`` toxics and re-enable proxies a killed run disabled.

    Raises FaultError when Toxiproxy cannot even list its proxies. Individual failures
    are collected in the report; the ledger is cleared only when everything succeeded,
    so that the next sweep tries again.
    """
    entries = read_ledger(ledger_path)
    try:
        current = api.proxies()
    except FaultError as exc:
        raise FaultError(f"cannot sweep leftover faults: {exc}") from exc

    removed: list[str] = []
    failures: list[str] = []
    for name in sorted(current):
        for toxic in current[name].toxics:
            if not toxic.name.startswith(TOXIC_PREFIX):
                continue
            try:
                api.remove_toxic(name, toxic.name)
            except FaultError as exc:
                failures.append(f"{name}/{toxic.name}: {exc}")
            else:
                removed.append(f"{name}/{toxic.name}")

    to_enable = {e.proxy for e in entries if e.disabled_proxy} | set(proxies or [])
    enabled: list[str] = []
    for name in sorted(to_enable):
        proxy = current.get(name)
        if proxy is None:
            logger.info("sweep: proxy %s no longer exists; nothing to re-enable", name)
            continue
        if proxy.enabled:
            continue
        try:
            api.set_enabled(name, True)
        except FaultError as exc:
            failures.append(f"enable {name}: {exc}")
        else:
            enabled.append(name)

    if not failures:
        write_ledger(ledger_path, [])
    report = SweepReport(
        toxics=tuple(removed),
        enabled=tuple(enabled),
        failures=tuple(failures),
        ledger_entries=len(entries),
        ledger_pids=tuple(sorted({e.pid for e in entries if e.pid})),
    )
    if not report.clean:
        logger.warning("%s", report.summary())
    return report
