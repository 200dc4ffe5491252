"""The centre reads the ledger over HTTP: filtered by actor or action, paged, verbatim."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from services.context import Services
from storage.ledger import canonical_json
from tests.api.conftest import login, make_user

World = tuple[TestClient, Services]


def test_entries_filter_by_actor_and_page(world: World, admin_token: str) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    make_user(services, "zhang", "supervisor")
    login(client, "zhang")
    mine = client.get("/api/v1/ledger/entries?actor=supervisor:zhang", headers=admin).json()
    assert [e["action"] for e in mine["entries"]] == ["user.logged_in"]

    seen: list[int] = []
    after = 0
    while True:
        page = client.get(f"/api/v1/ledger/entries?after={after}&limit=2", headers=admin).json()
        seen += [entry["seq"] for entry in page["entries"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == list(range(1, len(seen) + 1)) and len(seen) > 4


def test_entries_are_verbatim_so_a_reader_can_rehash_them(world: World, admin_token: str) -> None:
    client, _ = world
    entries = client.get(
        "/api/v1/ledger/entries?limit=5", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()["entries"]
    previous = "0" * 64
    for entry in entries:
        assert entry["recorded_at"].endswith("+08:00")
        payload = canonical_json(
            {
                "seq": entry["seq"],
                "recorded_at": entry["recorded_at_hashed"],
                "actor": entry["actor"],
                "action": entry["action"],
                "subject_type": entry["subject_type"],
                "subject_id": entry["subject_id"],
                "details": entry["details"],
                "prev_hash": previous,
            }
        )
        assert hashlib.sha256(payload.encode()).hexdigest() == entry["entry_hash"]
        previous = entry["entry_hash"]


def test_only_the_centre_reads_entries(world: World) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    refused = client.get("/api/v1/ledger/entries", headers=login(client, "zhang"))
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
