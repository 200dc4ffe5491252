"""A bounded load run in `make test` (bench/load.py's `run_load`): camera hosts pushing small
real segments while supervisors list sittings, read coverage and stream ranges, against a real
`examvault serve` in its own process, the load from another. What it pins: no answer is a 5xx,
every request is answered, every acknowledged segment is stored with the SHA-256 it was
acknowledged with, every range read returns the bytes pushed, and `ledger verify` passes.
No timing assertion: the figures live in bench/results/load.json (`make soak`).

With EXAMVAULT_SOAK=1: the full size (50 hosts, 20 supervisors) for two minutes.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.load import LoadConfig, run_load, summarise
from tests.reliability import Reliability

SOAK = os.environ.get("EXAMVAULT_SOAK") == "1"
CONFIG = (
    LoadConfig(hosts=50, supervisors=20, seconds=120, push_interval=3.0)
    if SOAK
    else LoadConfig(
        hosts=10, supervisors=5, seconds=20, push_interval=2.0, sittings_per_supervisor=2
    )
)


def test_load_answers_no_5xx_and_loses_no_acknowledged_segment(
    tmp_path: Path, database_url: str, reliability: Reliability
) -> None:
    report = run_load(database_url, tmp_path, CONFIG)
    figures = report.figures
    database = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    reliability.record(
        "load",
        f"{CONFIG.hosts} hosts + {CONFIG.supervisors} supervisors, {CONFIG.seconds:g} s, "
        f"{database}",
        tries=figures["requests"],
        acknowledged=report.verification.acknowledged,
        lost=report.lost + report.mismatched,
        answers=figures["answers"],
    )
    assert figures["server_errors_5xx"] == 0, figures["endpoints"]
    assert figures["transport_errors"] == 0, figures["endpoints"]
    assert report.verification.acknowledged > 0, figures["endpoints"]
    assert report.verification.lost == [], report.verification.lost[:10]
    assert report.verification.mismatched == [], report.verification.mismatched[:10]
    assert report.answer_mismatches == [], report.answer_mismatches[:10]
    assert report.range_reads_checked > 0, figures["endpoints"]
    assert report.range_mismatches == [], report.range_mismatches[:10]
    assert report.verification.ledger_verify_exit == 0, report.verification.ledger_verify_output


def test_the_summary_counts_5xx_and_unanswered_requests_and_ranks_percentiles() -> None:
    """What the load test asserts on is counted, not assumed: a 503 and a timeout show up."""
    figures = summarise(
        {
            "started": 0.0,
            "finished": 10.0,
            "samples": {"push": [float(ms) for ms in range(1, 101)], "coverage": [5.0]},
            "answers": {
                "push": {"201": 97, "503": 2, "error:ReadTimeout": 1},
                "coverage": {"200": 1},
            },
        }
    )
    assert figures["server_errors_5xx"] == 2
    assert figures["transport_errors"] == 1
    assert figures["requests"] == 101
    assert figures["requests_per_s"] == 10.1
    push = figures["endpoints"]["push"]
    assert (push["p50_ms"], push["p95_ms"], push["p99_ms"], push["max_ms"]) == (50, 95, 99, 100)
