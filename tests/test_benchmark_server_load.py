"""The server load benchmark's bookkeeping (benchmarks/server_load.py): no load is run or timed here."""
from __future__ import annotations

from benchmarks.server_load import MODEL, THIS, failures, summary_rows, to_markdown

PREDICT = f"/v1/models/{MODEL}:predict"


def _server(resets: int, peak: float) -> dict:
    small = {"outcomes": {"200": 400 - resets, **({"ConnectionResetError": resets} if resets else {})},
             "latency_ms": {PREDICT: {"p50": 500.0, "p99": 1000.0}}, "peak_rss_mb": peak}
    big = {"outcomes": {"200": 4, "503": 6}, "peak_growth_mb": peak / 5}
    demo = {"outcomes": {"200": 800}, "latency_ms": {"/": {"p50": 10.0, "p99": 20.0},
                                                     "/decoder.onnx": {"p50": 100.0, "p99": 200.0}},
            "peak_rss_mb": peak / 8}
    return {"contract": {"small": small, "big_x1": big, "big_x4": big, "idle_rss_mb": 700.0}, "demo": demo}


def _result(**servers) -> dict:
    return {"suite": "server", "size": "quick", "repeats": 1, "clients": 200, "requests_per_client": 2,
            "big_body_mb": 56.6, "environment": {"cpu": "test cpu", "cpu_count": 2, "loadavg": [1.0, 1.0, 1.0]},
            "servers": servers}


def test_failures_count_only_requests_without_an_http_answer():
    assert failures({"200": 5, "503": 3, "ConnectionResetError": 2, "TimeoutError": 1}) == 3


def test_rows_compare_with_the_baseline_when_measured():
    rows = summary_rows(_result(**{THIS: _server(0, 800.0), "baseline abc": _server(339, 700.0)}))
    assert rows[0] == ["contract server 200 clients", "requests without an answer (resets, timeouts), of 400",
                       "0", "339", ""]
    assert rows[1][1:] == ["p50 ms of the answered, `:predict`", "500", "500", "1.00x"]
    assert ["serve-demo 200 clients", "p99 ms of the answered, GET /decoder.onnx (8 MiB)", "200", "200", "1.00x"] in rows
    alone = summary_rows(_result(**{THIS: _server(0, 800.0)}))
    assert len(alone) == len(rows) and all(r[3] == "" and r[4] == "" for r in alone)


def test_markdown_lists_every_scenario_of_every_server():
    md = to_markdown(_result(**{THIS: _server(0, 800.0), "baseline abc": _server(339, 700.0)}))
    assert "| baseline abc | contract: small `:predict` | 200: 61, ConnectionResetError: 339 | 339 |" in md
    assert md.count("four 57 MB bodies at once") == 2 and md.count("serve-demo: GET /decoder.onnx") == 2
