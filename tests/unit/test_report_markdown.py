"""The Markdown summary: verdict first, failed SLOs first, findings, recovery, and no links."""

from __future__ import annotations

import re
from pathlib import Path

from resilience.report import read_run
from resilience.report.markdown import md, render_markdown
from resilience.testing.sample_run import write_sample_run


def _summary(tmp_path: Path, **kwargs: object) -> str:
    write_sample_run(tmp_path, load_files=False, **kwargs)  # type: ignore[arg-type]
    return render_markdown(read_run(tmp_path))


def test_verdict_line_slo_table_findings_recovery(tmp_path: Path) -> None:
    """The first line is the verdict; failed SLOs lead the table; findings and recovery follow."""
    text = _summary(tmp_path)
    lines = text.splitlines()
    assert lines[0].startswith("### ❌ db-hang (smoke): **FAILED**, exit code 1")
    rows = [line for line in lines if line.startswith("| ")][2:]
    states = [row.split("|")[1].strip() for row in rows]
    assert states[:3] == ["❌ failed"] * 3
    assert states[-1] == "✅ passed"
    assert "| ❌ failed | fault | GET /catalog/items | p95 | 2550 ms | 500 ms |" in text
    assert text.index("**SLOs:**") < text.index("**Findings:**") < text.index("**Recovery:**")
    assert "- **cascading\\_failure** (critical, fails the run)" in text
    assert "**Recovery:** recovered in 9.0 s (budget 5.0 s) — over budget" in text


def test_passed_run(tmp_path: Path) -> None:
    """A passing run says so in its first line."""
    assert _summary(tmp_path, variant="hardened").startswith(
        "### ✅ db-hang (smoke): **PASSED**, exit code 0"
    )


def test_link_free_and_escaped(tmp_path: Path) -> None:
    """Hostile names cannot become links, images, HTML, or extra table cells."""
    hostile = "x | [click](http://evil.example) ![img](https://e.example/i.png) <b>bold</b> www.evil.example"
    text = _summary(tmp_path, hostile=hostile)
    assert "](" not in text.replace("\\](", "")
    assert not re.search(r"https?://", text)  # bare URLs are broken with a zero-width space
    assert "www.evil" not in text
    assert "<b>" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert any("evil" in row for row in rows)
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 7


def test_md_escapes_leading_markers() -> None:
    """Text that starts like a list, heading or numbered item stays plain."""
    assert md("- item") == "\\- item"
    assert md("1. first") == "1\\. first"
    assert md("# title") == "\\# title"
    assert md("a\nb   c") == "a b c"
