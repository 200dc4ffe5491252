"""A real Ceph RGW for the S3 tests: a one-node cluster (one monitor, one manager, one OSD on
memstore) and radosgw on 127.0.0.1, all under a temporary directory, stopped at the end.

moto is a lenient S3: it does not enforce Object Lock. RGW does (COMPLIANCE retention, legal
holds), so the WORM promises are proven against it. The recipe and why each setting is there:
FIELD-NOTES.md "Ceph RGW". The binaries come from Debian's packages (`make ceph`, a
prerequisite of `make test`). Run `python -m tests.ceph` to start one by hand and see the time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port
from tests.s3server import ACCESS_KEY, SECRET_KEY

BINARIES = ("ceph-authtool", "monmaptool", "ceph-mon", "ceph-mgr", "ceph-osd", "ceph")
BINARIES += ("radosgw", "radosgw-admin")
START_TIMEOUT = 120.0
_LOG_TAIL_LINES = 30
# Start-up times of this process's clusters, for the suite's summary line.
STARTED: list[float] = []


class CephUnavailable(RuntimeError):
    """The cluster could not be started here: binaries missing, or it did not come up in time."""


@dataclass(frozen=True)
class CephRgw:
    endpoint: str  # "127.0.0.1:PORT", plain HTTP
    access_key: str
    secret_key: str
    root: Path
    started_seconds: float


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def _config(root: Path, *, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
# No cephx: a throwaway cluster on loopback; keys would only add set-up steps.
auth cluster required = none
auth service required = none
auth client required = none
# Without these radosgw hangs in authentication (get_initial_auth_request returned -13).
ms mon client mode = crc
ms client mode = crc
ms mon service mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon cluster mode = crc
# Only the mon's port is chosen; the other daemons bind from this range, away from the
# default 6800+ so a system cluster on the same machine is left alone.
ms bind port min = {mon_port + 1}
ms bind port max = {mon_port + 200}
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
# RGW makes about eight pools; small fixed PG counts keep one OSD under its PG limit.
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
# Everything this cluster writes stays under its directory, nothing in /var or /etc.
run dir = {root}/run
crash dir = {root}/crash
pid file = {root}/run/$name.pid
log file = {root}/log/$name.log
admin socket = {root}/run/$name.asok
keyring = {root}/keyring
mon data = {root}/mon/$cluster-$id
mgr data = {root}/mgr/$cluster-$id
osd data = {root}/osd/$cluster-$id
log to stderr = false
err to stderr = false

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {root}/rgw
"""


class _Cluster:
    """The daemons of one cluster, all in one process group so one signal stops them all."""

    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.conf = root / "ceph.conf"
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.group: int | None = None
        self.daemons: list[subprocess.Popen[bytes]] = []

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CephUnavailable(f"the cluster did not come up within {self.timeout:.0f} s")
        return left

    def run(self, *args: str, config: bool = True) -> str:
        """A short command (a tool or the `ceph` CLI), bounded by what is left of the start-up;
        `config`: pass our ceph.conf (the keyring and monmap tools take none)."""
        command = [*args[:1], "-c", str(self.conf), *args[1:]] if config else list(args)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=min(self._remaining(), 60),
                process_group=self.group if self.group is not None else 0,
            )
        except subprocess.TimeoutExpired as exc:
            raise CephUnavailable(f"{' '.join(args)} did not finish in time") from exc
        if done.returncode != 0:
            raise CephUnavailable(
                f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        return done.stdout

    def start(self, *args: str) -> None:
        """A daemon in the foreground (-f), so it stays our child and in our process group.

        Under `setpriv --pdeathsig KILL` where util-linux has it: a test run killed outright
        (SIGKILL, or SIGTERM, which pytest does not turn into teardown) takes its cluster with
        it instead of leaving four daemons behind."""
        name = args[0]
        guard = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        with (self.root / "log" / f"{name}.out").open("ab") as sink:
            daemon = subprocess.Popen(
                [*guard, *args[:1], "-c", str(self.conf), "-f", *args[1:]],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # The first daemon leads a new group; the others join it. Not a new session:
                # a group can only be joined from within its session.
                process_group=self.group if self.group is not None else 0,
            )
        if self.group is None:
            self.group = daemon.pid
        self.daemons.append(daemon)

    def check_alive(self) -> None:
        for daemon in self.daemons:
            if daemon.poll() is not None:
                raise CephUnavailable(f"{' '.join(daemon.args)} exited with {daemon.returncode}")

    def stop(self) -> None:
        """TERM the group, then KILL what is left; memstore keeps nothing worth a clean stop.

        The grace is short: with the monitor gone, the OSD waits 5 s to report its own exit."""
        if self.group is None:
            return
        for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.group, sig)
            except ProcessLookupError:
                break
            until = time.monotonic() + grace
            while time.monotonic() < until and any(d.poll() is None for d in self.daemons):
                time.sleep(0.1)
        for daemon in self.daemons:
            if daemon.poll() is None:
                daemon.kill()
            daemon.wait(timeout=5)
        # A tool still running in the group (a `ceph` command cut short) goes too.
        with suppress(ProcessLookupError):
            os.killpg(self.group, signal.SIGKILL)

    def log_tails(self) -> str:
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            if not lines:
                continue
            parts.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)


def _bootstrap(cluster: _Cluster, *, fsid: str, mon_port: int, rgw_port: int) -> None:
    root = cluster.root
    for sub in ("run", "crash", "log", "mon", "mgr/ceph-a", "osd/ceph-0", "rgw"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster.conf.write_text(_config(root, fsid=fsid, mon_port=mon_port, rgw_port=rgw_port))

    keyring, monmap = root / "keyring", root / "monmap"
    # ceph-mon --mkfs wants a mon. key even with auth none.
    cluster.run(
        "ceph-authtool", "--create-keyring", str(keyring), "--gen-key", "-n", "mon.",
        "--cap", "mon", "allow *", config=False,
    )  # fmt: skip
    cluster.run(
        "monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
        str(monmap), config=False,
    )  # fmt: skip
    cluster.run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(keyring))
    cluster.start("ceph-mon", "-i", "a")
    cluster.start("ceph-mgr", "-i", "a")

    osd_uuid = str(uuid.uuid4())
    # `ceph osd new` talks to the monitor, so it also waits for the monitor to be up.
    osd_id = cluster.run("ceph", "--connect-timeout", "30", "osd", "new", osd_uuid).strip()
    if osd_id != "0":
        raise CephUnavailable(f"ceph osd new gave id {osd_id!r}, expected 0")
    cluster.run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
    cluster.start("ceph-osd", "-i", "0")
    cluster.start("radosgw", "-n", "client.rgw.a")
    # radosgw-admin waits for the pools RGW creates, so it also waits for the OSD to be up.
    cluster.run(
        "radosgw-admin", "user", "create", "--uid=examvault-test", "--display-name=examvault tests",
        f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}",
    )  # fmt: skip


def _wait_for_rgw(cluster: _Cluster, endpoint: str) -> None:
    """Until RGW answers an S3 request over HTTP (any status: it is RGW speaking)."""
    while True:
        cluster.check_alive()
        try:
            with urllib.request.urlopen(f"http://{endpoint}/", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            pass
        cluster._remaining()
        time.sleep(0.3)


@contextmanager
def ceph_rgw(timeout: float = START_TIMEOUT) -> Iterator[CephRgw]:
    """Start the cluster, yield its RGW, then stop every process and remove the directory.

    Raises CephUnavailable, with the tail of every daemon's log, when the binaries are missing
    or the cluster does not answer within `timeout` seconds.
    """
    missing = missing_binaries()
    if missing:
        raise CephUnavailable(
            f"Ceph is not installed ({', '.join(missing)} missing): run `make ceph`"
        )
    started = time.monotonic()
    # A short path of our own: admin sockets are Unix sockets, limited to ~107 characters.
    root = Path(tempfile.mkdtemp(prefix="examvault-ceph-"))
    cluster = _Cluster(root, timeout=timeout)
    mon_port, rgw_port = free_port(), free_port()
    endpoint = f"127.0.0.1:{rgw_port}"
    try:
        try:
            _bootstrap(cluster, fsid=str(uuid.uuid4()), mon_port=mon_port, rgw_port=rgw_port)
            _wait_for_rgw(cluster, endpoint)
        except (CephUnavailable, subprocess.SubprocessError, OSError) as exc:
            raise CephUnavailable(f"{exc}\n{cluster.log_tails()}") from exc
        yield CephRgw(
            endpoint=endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            root=root,
            started_seconds=time.monotonic() - started,
        )
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def ceph_rgw_server() -> Iterator[CephRgw]:
    """One cluster for the whole session (about 12 s to start); tests use fresh buckets.

    Without Ceph installed the RGW cases skip locally; under EXAMVAULT_TEST_STRICT=1 (CI) a
    cluster that does not come up fails them, with the daemons' log tails in the message."""
    try:
        with ceph_rgw() as rgw:
            # Shown with -s or on a failure; the suite's summary shows it too (tests/conftest).
            print(f"Ceph RGW at {rgw.endpoint} answered after {rgw.started_seconds:.1f} s")
            STARTED.append(rgw.started_seconds)
            yield rgw
    except CephUnavailable as exc:
        if os.environ.get("EXAMVAULT_TEST_STRICT") == "1":
            pytest.fail(f"Ceph RGW did not come up; CI must run the S3 tests on it: {exc}")
        pytest.skip(f"no Ceph RGW here: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="session")
def ceph_endpoint(ceph_rgw_server: CephRgw) -> str:
    return ceph_rgw_server.endpoint


if __name__ == "__main__":
    with ceph_rgw() as rgw:
        print(f"RGW at http://{rgw.endpoint} after {rgw.started_seconds:.1f} s (root {rgw.root})")
