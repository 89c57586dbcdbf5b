"""``python -m bench``: run the sections, write JSON (+ PNG, + BENCHMARKS.md on a full run), print the table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import agent_scale, audio, backlog, capture_cost, delivery, latency, machine, memory, plot, report
from bench.common import production_logging
from bench.sizes import FULL, QUICK

SECTIONS = {"capture": capture_cost, "delivery": delivery, "latency": latency, "backlog": backlog,
            "agent_scale": agent_scale, "memory": memory, "audio": audio}
RESULTS = Path(__file__).resolve().parent / "results"
MARKDOWN = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small loads, for CI (well under 2 minutes)")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only this section (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where JSON and PNG go (default {RESULTS})")
    parser.add_argument("--markdown", type=Path, help="BENCHMARKS.md to update (default: the repo's, full runs only)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG even if matplotlib is installed")
    parser.add_argument("--keep-work", action="store_true", help="keep the spools, backups and logs of the run")
    return parser


def _run_sections(names: Sequence[str], sizes: Any, work: Path, results: dict[str, Any]) -> None:
    seconds: dict[str, float] = {}
    # Other work on a shared box skews absolute numbers; the load average says how busy it was.
    load = {"start": [round(x, 2) for x in os.getloadavg()]}
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            results[name] = SECTIONS[name].run(sizes, work / name)
        except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' numbers
            print(f"bench: {name} FAILED: {error!r}", file=sys.stderr, flush=True)
            results.setdefault("failed", {})[name] = f"{type(error).__name__}: {error}"
        seconds[name] = round(time.perf_counter() - started, 1)
        load[name] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["section_seconds"] = seconds
    results["meta"]["loadavg"] = load


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; 0 when they all ran (a missed target still exits 0: numbers, not a test)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="voicelog-bench-"))
    production_logging(work / "voicelog.log")
    results: dict[str, Any] = {"meta": {**machine.describe(argv), "sizes": sizes.name,
                                        "load": dataclasses.asdict(sizes)}}
    try:
        _run_sections(args.only or list(SECTIONS), sizes, work, results)
    finally:
        if args.keep_work:
            print(f"bench: work files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["targets"] = report.targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{sizes.name}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
    png = None
    if not args.no_plot and plot.available():
        png = plot.write(args.out / f"{sizes.name}.png", results)
    # A full run updates BENCHMARKS.md, unless a section failed: keep the last complete numbers.
    complete = not args.quick and not args.only and not results.get("failed")
    markdown = args.markdown or (MARKDOWN if complete else None)
    if markdown is not None:
        relative = Path(os.path.relpath(png.resolve(), markdown.resolve().parent)).as_posix() if png else None
        report.write_markdown(markdown, results, relative)
    print(report.table(results))
    print(f"\nbench: results in {args.out / (sizes.name + '.json')}" + (f" and {png}" if png else ""))
    return 1 if results.get("failed") else 0
