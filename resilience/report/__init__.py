"""Reports of a run: HTML, JUnit XML and Markdown, rebuilt from the run directory alone.

``write_reports(run_dir)`` is what the orchestrator calls at the end of a run and what
``resilience report DIR`` calls later; ``compare_runs(a, b)`` backs ``resilience compare``.
The reports are built from the run directory's files (already redacted when written) and
go through the run's ``Redactor`` once more as text, a last pass for anything composed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resilience.redact import Redactor
from resilience.report.compare import Comparison, Rules, compare_runs
from resilience.report.html import render_html
from resilience.report.junit import render_junit
from resilience.report.markdown import render_markdown
from resilience.rundir.layout import write_text
from resilience.rundir.load import LoadView
from resilience.rundir.reader import RunData, read_run

__all__ = [
    "Comparison",
    "ReportPaths",
    "Rules",
    "RunData",
    "compare_runs",
    "read_run",
    "write_reports",
    "write_run_reports",
]

HTML_FILE = "report.html"
JUNIT_FILE = "junit.xml"
MARKDOWN_FILE = "summary.md"


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    junit: Path
    markdown: Path


def write_reports(
    run_dir: Path, load: LoadView | None = None, *, redactor: Redactor | None = None
) -> ReportPaths:
    """Write report.html, junit.xml and summary.md into ``run_dir`` from what it holds.

    ``load`` is the run's load data when the caller has it in memory; otherwise it is read
    from the directory. ``redactor`` is the run's (its literal secret values); without one,
    the rules by name and shape apply. Raises ``ExperimentError`` naming the file when the
    directory is missing or its journal or experiment cannot be read.
    """
    return write_run_reports(read_run(Path(run_dir), load=load), redactor=redactor)


def write_run_reports(run: RunData, *, redactor: Redactor | None = None) -> ReportPaths:
    """Write the three reports of a run directory already read (atomically, private, and
    through ``redactor`` as text)."""
    return ReportPaths(
        html=write_text(run.run_dir / HTML_FILE, render_html(run), redactor),
        junit=write_text(run.run_dir / JUNIT_FILE, render_junit(run.journal), redactor),
        markdown=write_text(run.run_dir / MARKDOWN_FILE, render_markdown(run), redactor),
    )
