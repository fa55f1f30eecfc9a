"""The gateway's login (option ``auth_login``): what an ordinary third-party API asks of a client.

``POST /login`` takes an ``application/x-www-form-urlencoded`` body (``username``,
``password``, optionally ``grant_type=password``: OAuth 2's password grant, the shape
FastAPI's ``OAuth2PasswordRequestForm`` reads) and answers
``{"access_token", "token_type": "bearer", "expires_in"}``. Every other business endpoint
then needs ``Authorization: Bearer <token>`` and answers 401 with ``WWW-Authenticate:
Bearer`` (RFC 6750) without a valid one. Tokens are random, kept in memory (a restart
forgets them), valid for ``auth_token_ttl_seconds`` or the life of the process.

The form is parsed here with ``urllib.parse`` rather than FastAPI's ``Form``: that needs
python-multipart for a two-field body, and answering a wrong content type with a clear 415
needs the check done by hand anyway.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse

from resilience.shop.settings import ShopOptions

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_LOGIN_BODY = 4096
TOKEN_BYTES = 32
REALM = "shop"


class AuthProblem(Exception):
    """A request the login rules refuse: its status, error type, detail and extra headers."""

    def __init__(
        self, status: int, error_type: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error_type = error_type
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error_type, "detail": self.detail},
            status_code=self.status,
            headers=self.headers,
        )


def _unauthorized(error_type: str, detail: str, *, bearer_error: str | None = None) -> AuthProblem:
    challenge = f'Bearer realm="{REALM}"'
    if bearer_error is not None:
        challenge += f', error="{bearer_error}"'
    return AuthProblem(401, error_type, detail, {"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class Token:
    """An issued token: the string the client sends and when it stops being valid."""

    access_token: str
    expires_at: float | None
    ttl_seconds: float | None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"access_token": self.access_token, "token_type": "bearer"}
        if self.ttl_seconds is not None:
            body["expires_in"] = int(self.ttl_seconds)
        return body


class TokenStore:
    """The demo user's credentials and the tokens handed out, in memory."""

    def __init__(
        self,
        username: str,
        password: str,
        ttl_seconds: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._username = username.encode()
        self._password = password.encode()
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._expiry: dict[str, float | None] = {}

    @classmethod
    def from_options(cls, options: ShopOptions) -> TokenStore:
        return cls(
            options.auth_username,
            options.auth_password.get_secret_value(),
            options.auth_token_ttl_seconds,
        )

    def __len__(self) -> int:
        return len(self._expiry)

    def login(self, username: str, password: str) -> Token:
        """A new token for the demo user; ``AuthProblem`` (401) for anything else."""
        # Both compared, always: the answer's timing says nothing about which was wrong.
        user_ok = secrets.compare_digest(username.encode(), self._username)
        password_ok = secrets.compare_digest(password.encode(), self._password)
        if not (user_ok and password_ok):
            raise _unauthorized("InvalidCredentials", "unknown username or wrong password")
        now = self._clock()
        self._forget_expired(now)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = None if self.ttl_seconds is None else now + self.ttl_seconds
        self._expiry[token] = expires_at
        return Token(token, expires_at, self.ttl_seconds)

    def check(self, authorization: str | None) -> None:
        """Accept an ``Authorization`` header carrying a valid bearer token, else 401."""
        if not authorization:
            raise _unauthorized(
                "Unauthorized", "this endpoint needs 'Authorization: Bearer <token>' (POST /login)"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized(
                "Unauthorized",
                f"expected 'Authorization: Bearer <token>', got a {scheme or 'blank'!r} header",
                bearer_error="invalid_request",
            )
        if token not in self._expiry:
            raise _unauthorized(
                "InvalidToken",
                "the bearer token is not one this gateway issued",
                bearer_error="invalid_token",
            )
        expires_at = self._expiry[token]
        if expires_at is not None and self._clock() >= expires_at:
            del self._expiry[token]
            raise _unauthorized(
                "InvalidToken", "the bearer token has expired", bearer_error="invalid_token"
            )

    def _forget_expired(self, now: float) -> None:
        if self.ttl_seconds is None:
            return
        expired = [t for t, at in self._expiry.items() if at is not None and at <= now]
        for token in expired:
            del self._expiry[token]


def media_type(content_type: str | None) -> str:
    """``application/x-www-form-urlencoded; charset=utf-8`` -> ``application/x-www-form-urlencoded``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_form_type(content_type: str | None) -> None:
    """``AuthProblem`` 415 unless the body is declared as a urlencoded form."""
    got = media_type(content_type)
    if got != FORM_TYPE:
        raise AuthProblem(
            415,
            "UnsupportedMediaType",
            f"POST /login takes an {FORM_TYPE} body with username and password; "
            f"got content type {got or 'none'!r}",
        )


async def read_limited(request: Request, limit: int = MAX_LOGIN_BODY) -> bytes:
    """The request body, or ``AuthProblem`` 413 as soon as it grows past ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AuthProblem(413, "PayloadTooLarge", f"a login body is at most {limit} bytes")
    return bytes(body)


def parse_login_form(body: bytes) -> tuple[str, str]:
    """(username, password) from a urlencoded login body; ``AuthProblem`` 422 otherwise."""
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise AuthProblem(
            422, "ValidationError", "a form body is ASCII (percent-encoded); got other bytes"
        ) from None
    missing = [name for name in ("username", "password") if not fields.get(name, [""])[0]]
    if missing:
        raise AuthProblem(
            422,
            "ValidationError",
            f"the login form needs {' and '.join(missing)} (got fields: "
            f"{', '.join(sorted(fields)) or 'none'})",
        )
    grant = fields.get("grant_type", ["password"])[0]
    if grant != "password":
        raise AuthProblem(
            422, "ValidationError", f"grant_type must be 'password' when given, got {grant!r}"
        )
    return fields["username"][0], fields["password"][0]


class Auth:
    """The gateway's login endpoint and the check its other endpoints depend on."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    async def login(self, request: Request) -> JSONResponse:
        """``POST /login``."""
        try:
            check_form_type(request.headers.get("content-type"))
            username, password = parse_login_form(await read_limited(request))
            token = self.store.login(username, password)
        except AuthProblem as problem:
            return problem.response()
        return JSONResponse(
            token.to_json(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    async def require_token(self, request: Request) -> None:
        """A FastAPI dependency: raises ``AuthProblem`` (answered 401) without a valid token."""
        self.store.check(request.headers.get("authorization"))
