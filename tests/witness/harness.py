"""Witness processes and a centre's ledger for the witness tests."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.context import Services
from services.witness.cosignatures import WitnessEndpoint, witness_key_from_text
from storage import ledger
from tests.processes import examvault_env, free_port, spawn, wait_for_health


@dataclass
class WitnessProcess:
    data_dir: Path
    log_key_pem: Path
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    public_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = examvault_env(self.data_dir, "sqlite://")
        self.process = spawn(
            env,
            "witness",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--log-key",
            str(self.log_key_pem),
            log=self.log,
        )
        wait_for_health(self.url, self.process, self.log, timeout=30)
        with urllib.request.urlopen(f"{self.url}/key", timeout=5) as response:
            self.public_key = json.loads(response.read())["public_key"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    @property
    def endpoint(self) -> WitnessEndpoint:
        return WitnessEndpoint(self.url, witness_key_from_text(self.public_key))

    @property
    def setting(self) -> str:
        return f"{self.url} {self.public_key}"


def add_entries(services: Services, count: int, what: str = "witnessed") -> None:
    def write(session: object) -> None:
        for index in range(count):
            ledger.append(
                session,  # type: ignore[arg-type]
                actor="test",
                action=f"test.{what}",
                subject_type="test",
                subject_id=index,
            )

    services.db.run_write(write)
