"""A user's Prometheus behind TLS and basic auth, for real: Debian's Prometheus with a web
configuration (`--web.config.file`: its own certificate from a CA the test makes with
openssl, a bcrypt-hashed user), read through prometheus-api-client with our connection
settings, and health-checked the way a run checks the user's parts.

The credential is a fixed test value (its bcrypt hash below was made once with
`crypt.crypt('reader-pw', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))`); the port is
the stack's Prometheus port shifted by RESILIENCE_TEST_PORT_OFFSET + 43.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from resilience.errors import DependencyUnavailable
from resilience.experiment import parse_experiment
from resilience.observe import Connection, HttpPrometheusSource, PrometheusUnavailable
from resilience.runner.parts import check_parts, resolve_parts
from resilience.stack import Ports, StackConfig, StackPaths
from resilience.stack.config import default_home
from tests.integration._runs import wait_for
from tests.integration.conftest import port_offset

pytestmark = pytest.mark.integration

PROMETHEUS = Path("/usr/bin/prometheus")
USER, PASSWORD = "reader", "reader-pw"
HASH = "$2b$04$NBrDqioDJKjRMs3wMMorhuet9IL.O9EVNfl29663NaOpne9WS.E7K"


@dataclass(frozen=True)
class Secured:
    url: str
    ca_file: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(directory: Path) -> None:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("secured-prometheus")
    _certificates(directory)
    (directory / "web.yml").write_text(
        "tls_server_config:\n"
        f"  cert_file: {directory / 'server.pem'}\n"
        f"  key_file: {directory / 'server.key'}\n"
        "basic_auth_users:\n"
        f"  {USER}: '{HASH}'\n"
    )
    port = Ports().shifted(port_offset() + 43).prometheus
    (directory / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: self\n"
        "    scheme: https\n"
        f"    tls_config: {{ca_file: {directory / 'ca.pem'}}}\n"
        f"    basic_auth: {{username: {USER}, password: {PASSWORD}}}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--web.config.file={directory / 'web.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            response = httpx.get(
                f"{url}/-/ready",
                verify=ssl.create_default_context(cafile=str(directory / "ca.pem")),
                auth=(USER, PASSWORD),
                timeout=1.0,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    try:
        wait_for(ready, timeout=30, every=0.2)
        yield Secured(url, directory / "ca.pem")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def test_basic_auth_and_a_ca_bundle_read_the_users_prometheus(secured: Secured) -> None:
    """With the CA bundle and the credentials the query API answers through
    prometheus-api-client, and Prometheus scrapes itself over the same TLS and auth."""
    connection = Connection(basic=(USER, PASSWORD), ca_file=str(secured.ca_file), timeout=5.0)
    with HttpPrometheusSource(secured.url, connection=connection) as source:
        source.check()

        def scraped() -> bool:
            return any(s.values() == [1.0] for s in source.query('up{job="self"}'))

        wait_for(scraped, timeout=20, every=0.5)
        assert [t.health for t in source.targets()] == ["up"]


def test_wrong_credentials_and_an_unknown_ca_are_unavailable_with_the_reason(
    secured: Secured,
) -> None:
    """A wrong password is 'refused our credentials (HTTP 401)'; without the CA bundle the
    certificate is refused; verify false skips the check (and the credentials still count)."""
    wrong = Connection(basic=(USER, "nope"), ca_file=str(secured.ca_file))
    with (
        HttpPrometheusSource(secured.url, connection=wrong) as source,
        pytest.raises(PrometheusUnavailable, match=r"refused our credentials .*HTTP 401"),
    ):
        source.check()
    system_cas = Connection(basic=(USER, PASSWORD))
    with (
        HttpPrometheusSource(secured.url, connection=system_cas) as source,
        pytest.raises(PrometheusUnavailable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        source.check()
    unchecked = Connection(basic=(USER, PASSWORD), verify=False)
    with HttpPrometheusSource(secured.url, connection=unchecked) as source:
        source.check()


def test_a_run_health_checks_the_files_prometheus_settings(
    secured: Secured, tmp_path: Path
) -> None:
    """observe.prometheus with auth from ${env:...} and tls.ca_file passes the run's health
    check; the same file with a wrong password stops it with exit 3 and the fix."""
    (tmp_path / "ca.pem").write_bytes(secured.ca_file.read_bytes())
    text = f"""
name: secured
target: {{url: "http://127.0.0.1:9"}}
observe:
  prometheus:
    url: {secured.url}
    auth: {{basic: {{username: {USER}, password: "${{env:PROM_PW}}"}}}}
    tls: {{ca_file: ca.pem}}
load:
  stages: [{{duration: 10s, users: 1, spawn_rate: 1}}]
  workload: {{requests: [{{path: /}}]}}
"""
    path = tmp_path / "secured.yaml"
    path.write_text(text)
    config = StackConfig(paths=StackPaths(home=default_home(), state=tmp_path / "s"), ports=Ports())
    from resilience.experiment.loader import load_experiment

    good = resolve_parts(load_experiment(path, environ={"PROM_PW": PASSWORD}), config=config)
    check_parts(good)
    bad = resolve_parts(load_experiment(path, environ={"PROM_PW": "nope"}), config=config)
    with pytest.raises(DependencyUnavailable, match=r"observe.prometheus in secured.yaml") as info:
        check_parts(bad, file="secured.yaml")
    assert info.value.exit_code == 3 and "HTTP 401" in str(info.value)
    assert parse_experiment(text, environ={"PROM_PW": "x"}).to_yaml().count("${env:PROM_PW}") == 1
