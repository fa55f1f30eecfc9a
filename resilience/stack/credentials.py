"""The stack's database password: made once, kept in the state directory (mode 0600), reused.

PostgreSQL asks every connection for it (scram-sha-256, TCP and Unix socket alike). The
password is generated at the first ``stack up`` and never regenerated while its file
exists; whoever connects for us (the supervisor's psql and pg_isready, the shop, the tests)
reads it from there. Roles get a SCRAM verifier computed here, never the password itself,
so no SQL statement (and no server log line) carries it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from resilience.errors import StackError

logger = logging.getLogger(__name__)

SCRAM_ITERATIONS: Final = 4096
"""PostgreSQL's own default (``scram_iterations``) for verifiers it computes."""


def database_password(path: Path) -> str:
    """The password in ``path``, made (mode 0600) if there is none yet; never replaced.

    A file readable by others is tightened to 0600 and used as it is.
    """
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise StackError(f"cannot read the database password in {path}: {exc}") from exc
    _tighten(path)
    password = text.strip()
    if not password:
        raise StackError(
            f"the database password file {path} is empty; remove it and run "
            "`resilience stack down` then `resilience stack up` to make a new one"
        )
    return password


def _create(path: Path) -> str:
    password = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(password + "\n")
        try:
            # A link never replaces: if another process made the file first, theirs wins.
            os.link(temporary, path)
        except FileExistsError:
            return database_password(path)
    except OSError as exc:
        raise StackError(f"cannot write the database password to {path}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    logger.info("made the stack's database password in %s (mode 0600)", path)
    return password


def _tighten(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s was readable by others (mode %o): now 0600", path, mode)
        path.chmod(0o600)


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier for ``password`` (RFC 5802, RFC 7677).

    ``ALTER ROLE x PASSWORD '<verifier>'`` stores it as is, exactly like ``\\password`` in
    psql. (The passwords made here are ASCII, so SASLprep leaves them unchanged.)
    """
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def fingerprint(password: str) -> str:
    """A digest that tells whether the cluster already has this password (not reversible
    in practice: the password has 192 random bits)."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()
