"""deploy/prometheus/alerts.yml: every rule is complete, and every examvault_* metric it names
is one a real /metrics scrape exports (or a placeholder the merger still has to replace), so a
renamed metric cannot leave an alert that silently never fires; Prometheus's own `promtool`
accepts the file and its unit tests (tests/deploy/alerts_test.yml) show the subtler rules fire
when they should and stay quiet when they should."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_app
from services.context import Services
from services.ingest.worker import IngestWorker
from services.jobs import queue_depths
from services.ledger.checkpoints import make_checkpoint
from services.ledger.keys import load_or_create_signer
from services.operations.ledger_watch import LedgerWatch
from services.retention.purge import execute_purge
from services.witness.cosignatures import Cosignature
from services.witness.cosigning import keep_cosignature
from services.witness.server import Witness, load_or_create_witness_signer, log_keys_by_id
from services.witness.state import WitnessState
from tests.conftest import CAMERA_FRONT, STRICT
from tests.deploy.units import DEPLOY
from tests.retention.test_purge import SegmentSpec, make_segments
from tests.witness.harness import add_entries

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
SCRAPER = "alerts-test-scraper-0123456789"
SEVERITIES = {"critical", "warning", "ticket"}
# Exported only where there is a job queue (PostgreSQL); on SQLite the work runs in-process.
POSTGRES_ONLY_METRICS = {"examvault_queue_jobs"}
_METRIC_NAME = re.compile(r"\bexamvault_[a-zA-Z0-9_]+")


def _rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _referenced() -> set[str]:
    return {name for rule in _rules() for name in _METRIC_NAME.findall(rule["expr"])}


def test_every_rule_has_a_name_an_expression_a_severity_and_a_summary() -> None:
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)), names
    for rule in _rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["expr"].strip() and rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]


def _exported(text: str) -> set[str]:
    """Every name a query can use: families and their samples, with the suffixes Prometheus
    adds to a counter (_total) and a histogram (_bucket, _sum, _count) even before a sample."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


@pytest.fixture
def full_scrape(registered: Services, tmp_path: Path) -> str:
    """/metrics of a serve-like app with everything that makes a metric appear: the spool
    worker, a signed checkpoint and a witness's cosignature, a completed purge."""
    services = registered
    services.settings.metrics_token = SCRAPER
    if services.settings.database_url.startswith("postgresql"):
        # As `serve` does on PostgreSQL: the job queue's depth joins /metrics.
        services.metrics.watch_queue(lambda: queue_depths(services))
    centre_key = load_or_create_signer(services.settings.data_dir)
    witness = Witness(
        load_or_create_witness_signer(tmp_path / "witness"),
        WitnessState(tmp_path / "witness"),
        log_keys_by_id([centre_key.public_key]),
    )
    services.readiness.ledger_watch = LedgerWatch(
        services.db, (witness.signer.key_id,), interval=0.1
    )
    add_entries(services, 3)
    checkpoint = make_checkpoint(services.db, services.store, centre_key).checkpoint
    answer = witness.add_checkpoint(
        {"old_size": 0, "consistency_proof": [], "checkpoint": checkpoint.as_json()}
    )
    keep_cosignature(services.db, Cosignature.from_json(answer["cosignature"]))
    end = datetime.now(UTC) - timedelta(days=4 * 365)
    make_segments(
        services,
        [SegmentSpec(CAMERA_FRONT, end - timedelta(minutes=5), end, end + timedelta(days=1))],
        tmp_path / "expired",
    )
    execute_purge(services.db, services.store, services.settings, actor="test")
    worker = IngestWorker(services.pipeline, watch=False)
    with TestClient(create_app(services, worker=worker)) as client:
        for check in services.readiness.checks.values():
            check.run_once()
        services.readiness.ledger_watch.run_once()
        services.readiness.purge_watch.run_once()
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
    assert answer.status_code == 200, answer.text
    return answer.text


def test_every_metric_an_alert_names_is_exported(full_scrape: str, database_url: str) -> None:
    missing = _referenced() - _exported(full_scrape)
    if database_url.startswith("sqlite"):
        missing -= POSTGRES_ONLY_METRICS
    assert not missing, f"alerts.yml names metrics /metrics does not export: {sorted(missing)}"


def test_the_alerts_cover_what_operations_md_promises() -> None:
    referenced = _referenced()
    for needed in (
        "examvault_ready",
        "examvault_dependency_up",
        "examvault_free_bytes",
        "examvault_spool_oldest_waiting_seconds",
        "examvault_http_ingest_answers_total",
        "examvault_purge_runs",
        "examvault_ledger_unsigned_age_seconds",
        "examvault_ledger_checkpoint_age_seconds",
        "examvault_witness_waiting_seconds",
        "examvault_witness_cosignature_age_seconds",
    ):
        assert needed in referenced, needed


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if STRICT:
            pytest.fail("promtool is missing (make nginx installs Debian's prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_fire_as_their_unit_tests_say() -> None:
    tested = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
