"""Fixtures and fakes for tests, documentation and report previews — never used by a run.

- ``toxiproxy_fake``: ``FakeToxiproxy``, an in-memory Toxiproxy behind the client's interface;
- ``toxiproxy_server``: a real ``toxiproxy-server`` in its own process group, an echo upstream;
- ``observe_fakes``: ``FakePrometheusSource`` and ``FakeTraceSource`` with canned answers;
- ``requests_mock``: ``MockAdapter``, requests' network replaced by a function;
- ``analysis``: synthetic load views, traces and analysis contexts for detector tests;
- ``sample_run``: a complete synthetic run directory (fragile or hardened) for report tests.

The toolkit's own modules never import this package (a test holds that rule).
"""
