"""``python -m benchmarks``: run the benchmarks, write benchmarks/results/*.json and one summary table.

    PYTHONPATH=. python -m benchmarks [--suite decoder ...] [--size quick|full] [--repeats 3] [--readme]

Every suite measures its A/B baselines in the same run, interleaved (A B A B ...), and reports
medians over rounds. Each writes ``<suite>.json`` and ``<suite>.md``; then ``summary.md`` gathers the
headline rows of every suite result present (one markdown table), and ``--readme`` copies that
table into README.md between the ``benchmarks:begin``/``benchmarks:end`` markers. Never a test.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, write_result

# suite -> (module, result file name)
SUITES = {
    "decoder": ("benchmarks.decoder_speed", "decoder_speed"),
    "precision": ("benchmarks.precision_speed", "precision_speed"),
    "js": ("benchmarks.js_speed", "js_speed"),
    "step": ("benchmarks.step_overhead", "step_overhead"),
    "input": ("benchmarks.input_speed", "input_speed"),
    "scale": ("benchmarks.scale_cost", "scale_cost"),
    "server": ("benchmarks.server_load", "server_load"),
}
README_BEGIN, README_END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def summary_table(results_dir: Path = RESULTS) -> str:
    """One markdown table of the headline numbers of every suite result in ``results_dir``."""
    lines = ["| benchmark | measure | value | baseline | ratio |", "|---|---|---:|---:|---:|"]
    notes = []
    for suite, (module, name) in SUITES.items():
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        for row in importlib.import_module(module).summary_rows(result):
            lines.append("| " + " | ".join(row) + " |")
        env = result["environment"]
        notes.append(f"{suite}: {result.get('created', '?')}, size {result['size']}, {result['repeats']} rounds, "
                     f"{env['cpu']} x{env['cpu_count']}, load average {env['loadavg'][0]:.1f}-"
                     f"{env.get('loadavg_end', env['loadavg'])[0]:.1f}")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def update_readme(table: str, readme: Path = ROOT / "README.md") -> bool:
    """Replace the text between the markers in README.md by ``table``; False when the markers are missing."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    tmp = readme.with_name(".README.md.tmp")
    tmp.write_text(f"{head}{README_BEGIN}\n{table}{README_END}{tail}")
    os.replace(tmp, readme)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", nargs="*", choices=list(SUITES), default=list(SUITES),
                        help="suites to run (default: all); none (a bare --suite) only rebuilds the summary")
    parser.add_argument("--size", choices=("quick", "full"), default="quick",
                        help="quick: small models, minutes; full: the paper's sizes, tens of minutes")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (medians are reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--readme", action="store_true", help="copy the summary table into README.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(ROOT))
    for suite in args.suite:
        module_name, name = SUITES[suite]
        module = importlib.import_module(module_name)
        print(f"== {suite} ({args.size}, {args.repeats} rounds)", flush=True)
        result = module.run(size=args.size, repeats=args.repeats, log=lambda m: print(m, flush=True))
        result["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        result["command"] = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
        json_path, md_path = write_result(name, result, module.to_markdown(result), args.out)
        print(md_path.read_text(), flush=True)
    table = summary_table(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text("# Benchmark summary (`python -m benchmarks`)\n\n" + table)
    print(table)
    if args.readme and not update_readme(table):
        print(f"README.md has no {README_BEGIN} ... {README_END} markers: not updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
