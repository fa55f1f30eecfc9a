"""An in-memory Toxiproxy for unit tests, behaving like the real one where we rely on it.

``FakeToxiproxy`` implements ``ToxiproxyApi``: 409 (``ToxiproxyConflict``) on a duplicate
proxy or toxic, 404 (``ToxiproxyNotFound``) on an unknown one, 404-is-false on deletes,
partial attribute updates, ``reset`` enabling every proxy. It checks toxics with the same
``check_toxic`` the real client runs before sending, so Toxiproxy's habit of ignoring
unknown attribute keys is deliberately not replicated. Tests can make chosen calls fail
(``fail_on``) and watch every call (``calls``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from resilience.errors import FaultError
from resilience.faults.toxiproxy import (
    Proxy,
    Toxic,
    ToxiproxyConflict,
    ToxiproxyError,
    ToxiproxyNotFound,
    check_attributes,
    check_toxic,
)


@dataclass
class _FakeProxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: dict[str, Toxic] = field(default_factory=dict)

    def snapshot(self) -> Proxy:
        return Proxy(
            self.name, self.listen, self.upstream, self.enabled, tuple(self.toxics.values())
        )


@dataclass(frozen=True)
class FakeCall:
    """One call made to the fake: the method name and its main arguments."""

    method: str
    args: tuple[object, ...]


class FakeToxiproxy:
    """In-memory ``ToxiproxyApi``; ``version`` answers "git" like the source build."""

    def __init__(self, version: str = "git") -> None:
        self._version = version
        self._proxies: dict[str, _FakeProxy] = {}
        self.calls: list[FakeCall] = []
        self._failures: list[tuple[str, Callable[[tuple[object, ...]], bool], int]] = []
        self.before_call: Callable[[FakeCall], None] | None = None

    # -- test controls -----------------------------------------------------------------

    def fail_on(
        self,
        method: str,
        *,
        times: int = 1,
        when: Callable[[tuple[object, ...]], bool] = lambda args: True,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (matching ``when``) raise a 503 error."""
        self._failures.append((method, when, times))

    def _record(self, method: str, *args: object) -> None:
        call = FakeCall(method, args)
        self.calls.append(call)
        if self.before_call is not None:
            self.before_call(call)
        for i, (name, when, times) in enumerate(self._failures):
            if name == method and times > 0 and when(args):
                self._failures[i] = (name, when, times - 1)
                raise ToxiproxyError(
                    f"Toxiproxy could not {method}: injected failure (503)",
                    action=method,
                    endpoint=f"fake:{method}",
                    status=503,
                )

    def _get(self, name: str, action: str) -> _FakeProxy:
        try:
            return self._proxies[name]
        except KeyError:
            raise ToxiproxyNotFound(
                f"Toxiproxy could not {action}: proxy {name!r} not found",
                action=action,
                endpoint=f"fake:/proxies/{name}",
                status=404,
            ) from None

    def calls_to(self, method: str) -> list[FakeCall]:
        return [c for c in self.calls if c.method == method]

    # -- ToxiproxyApi --------------------------------------------------------------------

    def version(self) -> str:
        self._record("version")
        return self._version

    def proxies(self) -> dict[str, Proxy]:
        self._record("proxies")
        return {name: p.snapshot() for name, p in self._proxies.items()}

    def proxy(self, name: str) -> Proxy:
        self._record("proxy", name)
        return self._get(name, f"show proxy {name!r}").snapshot()

    def create_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> Proxy:
        self._record("create_proxy", name, listen, upstream, enabled)
        if name in self._proxies:
            raise ToxiproxyConflict(
                f"Toxiproxy could not create proxy {name!r}: proxy already exists",
                action="create proxy",
                endpoint="fake:/proxies",
                status=409,
            )
        self._proxies[name] = _FakeProxy(name, listen, upstream, enabled)
        return self._proxies[name].snapshot()

    def ensure_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> Proxy:
        self._record("ensure_proxy", name, listen, upstream, enabled)
        existing = self._proxies.get(name)
        if existing is None:
            self._proxies[name] = _FakeProxy(name, listen, upstream, enabled)
        else:
            existing.listen, existing.upstream, existing.enabled = listen, upstream, enabled
        return self._proxies[name].snapshot()

    def set_enabled(self, name: str, enabled: bool) -> Proxy:
        self._record("set_enabled", name, enabled)
        proxy = self._get(name, f"{'enable' if enabled else 'disable'} proxy {name!r}")
        proxy.enabled = enabled
        return proxy.snapshot()

    def delete_proxy(self, name: str) -> bool:
        self._record("delete_proxy", name)
        return self._proxies.pop(name, None) is not None

    def toxics(self, proxy: str) -> list[Toxic]:
        self._record("toxics", proxy)
        return list(self._get(proxy, f"list the toxics of proxy {proxy!r}").toxics.values())

    def add_toxic(self, proxy: str, toxic: Toxic) -> Toxic:
        check_toxic(toxic)
        self._record("add_toxic", proxy, toxic.name)
        target = self._get(proxy, f"add toxic {toxic.name!r}")
        if toxic.name in target.toxics:
            raise ToxiproxyConflict(
                f"Toxiproxy could not add toxic {toxic.name!r}: toxic already exists",
                action="add toxic",
                endpoint=f"fake:/proxies/{proxy}/toxics",
                status=409,
            )
        stored = replace(toxic, attributes=dict(toxic.attributes))
        target.toxics[toxic.name] = stored
        return stored

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
        toxic_type: str | None = None,
    ) -> Toxic:
        self._record("update_toxic", proxy, name, dict(attributes or {}), toxicity)
        target = self._get(proxy, f"update toxic {name!r}")
        current = target.toxics.get(name)
        if current is None:
            raise ToxiproxyNotFound(
                f"Toxiproxy could not update toxic {name!r}: toxic not found",
                action="update toxic",
                endpoint=f"fake:/proxies/{proxy}/toxics/{name}",
                status=404,
            )
        if attributes:
            check_attributes(current.type, attributes, where=f"toxic {name!r}")
        if toxicity is not None and not 0.0 <= toxicity <= 1.0:
            raise FaultError(f"toxic {name!r}: toxicity must be between 0 and 1")
        updated = replace(
            current,
            attributes={**current.attributes, **(attributes or {})},
            toxicity=current.toxicity if toxicity is None else toxicity,
        )
        target.toxics[name] = updated
        return updated

    def remove_toxic(self, proxy: str, name: str) -> bool:
        self._record("remove_toxic", proxy, name)
        # Like the real client: any 404 (toxic or proxy gone) means there is nothing to heal.
        target = self._proxies.get(proxy)
        return target is not None and target.toxics.pop(name, None) is not None

    def reset(self) -> None:
        self._record("reset")
        for proxy in self._proxies.values():
            proxy.enabled = True
            proxy.toxics.clear()
