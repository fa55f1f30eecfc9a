"""The vendored schemas are the shared ones."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "schemas"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "schemas"


@pytest.mark.parametrize("name", ["JUnit.xsd", "compose-spec.json"])
def test_vendored_schema_matches_the_shared_copy(name: str) -> None:
    """tests/schemas/<name> is byte-identical to ../shared/schemas/<name> when present."""
    assert (HERE / name).is_file()
    if not (SHARED / name).is_file():
        pytest.skip(f"{SHARED} is not beside this checkout; nothing to compare with")
    assert (HERE / name).read_bytes() == (SHARED / name).read_bytes()
