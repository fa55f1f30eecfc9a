"""``rejudge(run_dir)``: judge a finished run again from its directory, and record it.

Backs ``resilience analyse DIR``: the experiment the run recorded (``experiment.yaml``,
with ``--set`` overrides applied on top: changed SLOs, checks or detector settings) is
judged again by the pure analysis over the same files; the journal gets the new verdict
and keeps the one it replaces in ``previous_verdicts``; the reports are rewritten. Nothing
is re-run and nothing on the network is asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resilience.analysis.analyse import Verdict, analyse, previous, read_load
from resilience.experiment.loader import load_experiment
from resilience.redact import Redactor
from resilience.rundir.journal import Journal
from resilience.rundir.layout import RunDir
from resilience.rundir.reader import read_journal
from resilience.vocabulary import RunStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejudged:
    """The new verdict, the status and exit code it gives the run, and the old ones."""

    verdict: Verdict
    status: RunStatus
    exit_code: int
    reason: str
    previous_status: RunStatus
    previous_exit_code: int | None


def rejudge(run_dir: Path, overrides: Sequence[str] = (), *, reports: bool = True) -> Rejudged:
    """Judge ``run_dir`` again (ExperimentError naming the file when it cannot be read)."""
    layout = RunDir(Path(run_dir))
    journal_data = read_journal(layout.path)
    experiment = load_experiment(layout.experiment, overrides=overrides)
    # The copy keeps its ${env:NAME} references: what they resolve to now is masked too.
    redactor = Redactor(experiment.secret_values())
    load = read_load(layout.path)
    verdict = analyse(layout.path, experiment=experiment, load=load)
    kept = previous(journal_data, time.time())
    was_status, was_exit = journal_data.status, journal_data.exit_code
    status: RunStatus = journal_data.status
    exit_code = journal_data.exit_code
    reason = verdict.reason
    if status in ("passed", "failed", "running", "starting"):
        status, exit_code = verdict.status, verdict.exit_code
    elif status == "aborted" and exit_code == 1:
        reason = f"{journal_data.reason}; re-judged: {verdict.reason}"
    else:
        reason = journal_data.reason or verdict.reason
    reason = redactor.redact_text(reason)
    journal = Journal(layout.journal, journal_data, redactor=redactor)
    journal.update(
        previous_verdicts=[*journal_data.previous_verdicts, kept],
        status=status,
        exit_code=exit_code,
        reason=reason,
        **verdict.journal_fields(),
    )
    if reports:
        from resilience.report import write_reports

        write_reports(layout.path, load=load, redactor=redactor)
    return Rejudged(verdict, status, exit_code or 0, reason, was_status, was_exit)
