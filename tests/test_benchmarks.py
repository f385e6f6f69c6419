"""The benchmark command's bookkeeping (no timing is run or asserted here)."""
from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import README_BEGIN, README_END, summary_table, update_readme
from benchmarks.common import write_result
from benchmarks.decoder_speed import AFTER, BEFORE, TF_PATH, call_counts


def test_call_counts_bound_the_work_per_round():
    assert call_counts(8.5e8, 64) == (23, 2)  # celeba-64: 2e10 / 8.5e8 single calls; 54 GMAC at batch 64
    assert call_counts(1.36e10, 64) == (5, 1)  # paper-256: at least 5; one 870-GMAC call
    assert call_counts(3e5, 64) == (50, 2)  # tiny: at most 50


def _decoder_result(tf_ms, after_ms):
    def row(ms, thr):
        return {"batch1_p50_ms": ms, "batch1_p90_ms": ms, "batch1_cpu_ms": ms, "batchN_images_per_s": thr,
                "batchN_images_per_cpu_s": thr, "threads": 1}
    paths = {TF_PATH: row(tf_ms, 100.0), BEFORE: row(2 * tf_ms, 50.0), AFTER: row(after_ms, 120.0)}
    goal = {"batch1_ratio_after_vs_tf": after_ms / tf_ms, "batch1_ratio_before_vs_tf": 2.0,
            "throughput_ratio_after_vs_tf": 1.2, "batch1_cpu_ratio_after_vs_tf": after_ms / tf_ms,
            "throughput_per_cpu_ratio_after_vs_tf": 1.2}
    return {"suite": "decoder", "size": "quick", "repeats": 3, "created": "2026-11-28T06:00:00+00:00",
            "environment": {"cpu": "test cpu", "cpu_count": 2, "loadavg": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 1, 1]},
            "presets": {"celeba-64": {"batch": 64, "paths": paths, "goal": goal}}}


def test_summary_table_and_readme_section(tmp_path):
    write_result("decoder_speed", _decoder_result(10.0, 4.0), "# md\n", tmp_path)
    assert json.loads((tmp_path / "decoder_speed.json").read_text())["presets"]["celeba-64"]["batch"] == 64
    table = summary_table(tmp_path)
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark |")
    rows = [line for line in lines if line.startswith("| decoder celeba-64")]
    assert len(rows) == 3  # CPU ms, wall p50 ms, batch-64 throughput
    assert "| 4.00 | 10.00 | 0.40x (was 2.00x) |" in rows[1]
    assert "120.0 | 100.0 | 1.20x (was 0.50x)" in rows[2]
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n{README_BEGIN}\nold table\n{README_END}\n\n## Tests\n")
    assert update_readme(table, readme)
    text = readme.read_text()
    assert "old table" not in text and table in text and text.endswith(f"{README_END}\n\n## Tests\n")
    readme.write_text("no markers\n")
    assert not update_readme(table, readme) and readme.read_text() == "no markers\n"


def _js_result():
    from benchmarks.js_speed import BROWSER, NODE, PY_ONE, TF_PATH

    def row(ms, cpu=None):
        return {"batch1_p50_ms": ms, **({} if cpu is None else {"batch1_cpu_ms": cpu}), "load_ms": 50.0}
    paths = {TF_PATH: row(8.0, 8.0), PY_ONE: row(4.0, 4.0), NODE: row(6.0, 6.0), BROWSER: {"skipped": "chromium missing"}}
    return {"suite": "js", "size": "quick", "repeats": 2, "created": "2026-11-28T09:00:00+00:00",
            "environment": {"cpu": "test cpu", "cpu_count": 2, "loadavg": [1.0, 1.0, 1.0]},
            "versions": {"tensorflow": "2.21.0", "onnxruntime": "1.32.0", "chromium": "none"},
            "presets": {"celeba-64": {"latent_dim": 128, "image_shape": [64, 64, 3], "macs_per_image": 8.5e8,
                                      "calls_per_round": 5, "parity_batch1_max_abs_diff": 3e-7,
                                      "threads": {PY_ONE: 1, BROWSER: 1}, "paths": paths}}}


def test_js_suite_rows_and_markdown(tmp_path):
    from benchmarks.js_speed import calls_per_round, summary_rows, to_markdown

    assert calls_per_round(8.5e8) == 5 and calls_per_round(6e7) == 83 and calls_per_round(1e5) == 100
    result = _js_result()
    rows = summary_rows(result)
    assert rows[0] == ["decoder celeba-64", "batch-1 p50 ms: Node onnxruntime-node vs TF tf.function",
                       "6.00", "8.00", "0.75x"]
    assert rows[1] == ["decoder celeba-64", "batch-1 CPU ms per call: Node onnxruntime-node vs TF tf.function",
                       "6.00", "8.00", "0.75x"]
    assert rows[2][2] == "skipped (chromium missing)" and rows[2][4] == "" and len(rows) == 3
    md = to_markdown(result)
    assert "| Python onnxruntime, 1 thread | 1 | 4.000 | 4.000 | 0.50x | 50 |" in md
    assert "skipped: chromium missing" in md
    write_result("js_speed", result, md, tmp_path)
    assert "Node onnxruntime-node vs TF" in summary_table(tmp_path)


@pytest.mark.slow
def test_node_bench_script_reports_each_batch(decoder_path):
    """serving/node/bench.js times the batches it is asked for, wall and CPU ms per decode."""
    import shutil
    import subprocess

    from tests.support.tools import NODE_DIR, require_tool

    require_tool(shutil.which("node") is not None, "node is not installed")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(), "serving/node/node_modules missing")
    path = decoder_path
    out = subprocess.run(["node", str(NODE_DIR / "bench.js"), str(path), "3", "1,2"], capture_output=True,
                         text=True, timeout=120, check=True)
    report = json.loads(out.stdout)
    assert sorted(report) == ["batch1_cpu_ms", "batch1_ms", "batch2_cpu_ms", "batch2_ms", "load_ms"]
    assert all(len(report[k]) == 3 and min(report[k]) >= 0 for k in report if k != "load_ms")
    bad = subprocess.run(["node", str(NODE_DIR / "bench.js"), str(path), "3", "0"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "usage" in bad.stderr
