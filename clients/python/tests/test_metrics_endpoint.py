"""`flowgate serve --metrics-address`: /metrics, /healthz and /readyz of the real binary.

Runs when env FLOWGATE_BIN points at the built `flowgate` binary (required in CI). Starts
`$FLOWGATE_BIN serve --demo --endpoint tcp://127.0.0.1:<port> --metrics-address 127.0.0.1:<port>`,
sends act requests with the Python client, scrapes /metrics over HTTP and parses it with the
Prometheus project's own parser (prometheus_client), the real counterpart of the Swift exposition.
"""
import signal
import urllib.error
import urllib.request

import pytest

from flowgate_client import Client, FlowgateError
from realserver import free_port, require_real_server, running_server

require_real_server(model=False)

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def get(url: str):
    """(status, content type, body) of a GET; HTTP error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    http = f"http://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("flowgate") / "serve.log"
    with running_server(log, "--demo", "--workers", "1", "--metrics-address", http.removeprefix("http://")) as (
            endpoint, proc, log_path):
        yield {"endpoint": endpoint, "http": http, "proc": proc, "log": log_path}


def scrape(http: str) -> dict:
    status, ctype, body = get(http + "/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return {f.name: f for f in text_string_to_metric_families(body)}


def value(family, name: str, **labels) -> float:
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


def test_probes(server):
    assert get(server["http"] + "/healthz")[0] == 200
    assert get(server["http"] + "/readyz")[0] == 200
    assert get(server["http"] + "/nope")[0] == 404


def test_metrics_parse_and_count(server):
    with Client(server["endpoint"], timeout_ms=10000) as c:
        before = scrape(server["http"])
        # Series exist at 0 before any act (so rates are defined from the start).
        assert value(before["flowgate_requests"], "flowgate_requests_total", op="act", code="ok") == 0
        assert value(before["flowgate_checked_observations"], "flowgate_checked_observations_total", model="demo") == 0
        # demo model: energy = |obs|^2, reliable when <= 4.
        c.act([0.0, 0.0, 0.0, 0.0])
        c.act([1.0, 0.0, 0.0, 0.0])
        c.act([3.0, 0.0, 0.0, 0.0])
        c.act([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])  # one request, two observations
        with pytest.raises(FlowgateError) as e:
            c.act([1.0, 2.0, 3.0])
        assert e.value.code == "shape_mismatch"
        with pytest.raises(FlowgateError) as e:
            c.act([0.0, 0.0, 0.0, 0.0], model="nope")
        assert e.value.code == "unknown_model"
        stats = c.stats()
    m = scrape(server["http"])

    requests = m["flowgate_requests"]
    assert requests.type == "counter"
    assert value(requests, "flowgate_requests_total", op="act", code="ok") == 4
    assert value(requests, "flowgate_requests_total", op="act", code="shape_mismatch") == 1
    assert value(requests, "flowgate_requests_total", op="act", code="unknown_model") == 1
    # The `stats` op is unchanged and agrees.
    assert stats["errors"]["shape_mismatch"] == 1
    assert stats["requests"]["act"] == 6

    for name in ("flowgate_act_queue_seconds", "flowgate_act_compute_seconds", "flowgate_act_latency_seconds"):
        h = m[name]
        assert h.type == "histogram", name
        buckets = [(float(s.labels["le"]), s.value) for s in h.samples if s.name == name + "_bucket"]
        les = [le for le, _ in buckets]
        assert les[0] == pytest.approx(0.0001) and 10.0 in les and les[-1] == float("inf"), les
        counts = [n for _, n in buckets]
        assert counts == sorted(counts), buckets  # cumulative
        count = value(h, name + "_count")
        assert counts[-1] == count
        assert count == 4  # successful act requests
        assert value(h, name + "_sum") >= 0

    batch = m["flowgate_batch_size"]
    assert batch.type == "histogram"
    assert value(batch, "flowgate_batch_size_sum") == 5  # observations computed

    assert value(m["flowgate_observations"], "flowgate_observations_total", model="demo") == 5
    checked = value(m["flowgate_checked_observations"], "flowgate_checked_observations_total", model="demo")
    unreliable = value(m["flowgate_unreliable_observations"], "flowgate_unreliable_observations_total", model="demo")
    assert checked == 5
    assert unreliable == 1  # only obs [3, 0, 0, 0] has energy > 4
    for gauge in ("flowgate_queue_depth", "flowgate_queue_work", "flowgate_in_flight", "flowgate_ready"):
        assert m[gauge].type == "gauge", gauge
    assert value(m["flowgate_ready"], "flowgate_ready") == 1
    assert m["flowgate_dropped_replies"].type == "counter"
    assert m["flowgate_refused_keys"].type == "counter"


def test_sigterm_stops_the_listener(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(server["http"] + "/healthz", timeout=2)
