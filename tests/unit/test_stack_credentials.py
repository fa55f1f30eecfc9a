"""The stack's database password: made once (0600), reused, never replaced; SCRAM verifiers."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from resilience.errors import StackError
from resilience.stack.components import HBA_CONF
from resilience.stack.credentials import database_password, fingerprint, scram_verifier

# Made by PostgreSQL 15 itself: SET password_encryption = 'scram-sha-256';
# CREATE ROLE x PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid WHERE rolname = 'x';
POSTGRES_VERIFIER = (
    "SCRAM-SHA-256$4096:sQdXvLQxLNaf2JJi2rJLDg==$y3zD4kzgsckhcD6cPP3BiqfFMoON2tktNqbU6LRhy5A="
    ":sJrwBOzJYfmBqy0/aWLv8M/xVxgQOpgL0liiQhRzufI="
)


def test_the_password_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    """The first call makes a long random password in a 0600 file; later calls read it."""
    path = tmp_path / "state" / "postgres.password"
    first = database_password(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert database_password(path) == first
    assert path.read_text() == first + "\n"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_another_state_directory_gets_another_password(tmp_path: Path) -> None:
    """Passwords are random per state directory."""
    assert database_password(tmp_path / "a" / "pw") != database_password(tmp_path / "b" / "pw")


def test_an_existing_file_is_never_replaced_but_tightened(tmp_path: Path) -> None:
    """A password file others could read is made 0600 and used as it is."""
    path = tmp_path / "postgres.password"
    path.write_text("chosen-by-hand\n")
    path.chmod(0o644)
    assert database_password(path) == "chosen-by-hand"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_password_file_is_a_stack_error(tmp_path: Path) -> None:
    """An empty file is not silently replaced (a running cluster may hold the old one)."""
    path = tmp_path / "postgres.password"
    path.write_text("\n")
    with pytest.raises(StackError, match="is empty") as caught:
        database_password(path)
    assert caught.value.exit_code == 3


def test_scram_verifier_matches_postgresql() -> None:
    """With PostgreSQL's salt, our verifier for 'pencil' is the one PostgreSQL stored."""
    salt = base64.b64decode(POSTGRES_VERIFIER.split("$")[1].split(":")[1])
    assert scram_verifier("pencil", salt=salt) == POSTGRES_VERIFIER
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time
    assert "pencil" not in scram_verifier("pencil")


def test_fingerprint_depends_on_the_password() -> None:
    """The marker of which password the cluster has changes with the password."""
    assert fingerprint("a") != fingerprint("b")
    assert "a" * 20 not in fingerprint("a" * 20)


def test_pg_hba_asks_every_connection_for_the_password() -> None:
    """Socket and TCP, IPv4 and IPv6: scram-sha-256, and nothing else (no trust, no peer)."""
    rules = [line.split() for line in HBA_CONF.splitlines() if line and not line.startswith("#")]
    assert [r[0] for r in rules] == ["local", "host", "host"]
    assert all(r[-1] == "scram-sha-256" for r in rules)
    methods = {word for rule in rules for word in rule}
    assert not methods & {"trust", "peer", "md5", "ident", "password", "reject"}
