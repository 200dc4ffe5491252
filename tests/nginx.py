"""Debian's nginx running deploy/nginx/examvault.conf from a temporary prefix, for the deploy
checks (`nginx -t`), the end-to-end test in front of a real `examvault serve`, and bench/api.py.

Only what differs on a test machine is replaced, each replacement checked to have hit: the
upstream addresses, the ports, the TLS files (self-signed, made here with `cryptography`) and
the objects directory. Everything else (timeouts, limits, the internal location) is the file
as deployed. `make test` installs nginx (the Makefile's `nginx` target)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx" / "examvault.conf"
OBJECTS = ROOT / "deploy" / "nginx" / "objects.conf"
NGINX = Path("/usr/sbin/nginx")
MIME_TYPES = Path("/etc/nginx/mime.types")
DEPLOYED_UPSTREAMS = (
    "    server api-1:8000 max_fails=1 fail_timeout=10s;\n"
    "    server api-2:8000 max_fails=1 fail_timeout=10s;\n"
)
FOOTAGE_LOCATION = "    # Footage after the API said yes"


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


def self_signed(directory: Path) -> Tls:
    """A key and a certificate for 127.0.0.1 / localhost, valid for a day."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    tls = Tls(cert=directory / "examvault.crt", key=directory / "examvault.key")
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls.key.chmod(0o600)
    return tls


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"deploy/nginx/examvault.conf no longer contains {old!r}")
    return text.replace(old, new)


def render_site(
    *,
    upstreams: list[str],
    objects_dir: Path,
    http_port: int,
    https_port: int,
    tls: Tls,
    extra_locations: str = "",
    plain: bool = False,
) -> str:
    """deploy/nginx/examvault.conf with this machine's addresses, ports, files and paths;
    `plain`: the main server on plain HTTP (bench/api.py: sendfile, as nginx serves files
    without TLS), everything else as deployed."""
    text = SITE.read_text(encoding="utf-8")
    servers = "".join(
        f"    server {address} max_fails=1 fail_timeout=10s;\n" for address in upstreams
    )
    text = _replace(text, DEPLOYED_UPSTREAMS, servers)
    text = _replace(
        text, "    listen 80;\n    listen [::]:80;\n", f"    listen 127.0.0.1:{http_port};\n"
    )
    text = _replace(
        text,
        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
        f"    listen 127.0.0.1:{https_port}{'' if plain else ' ssl http2'};\n",
    )
    text = _replace(text, "/etc/nginx/tls/examvault.crt", str(tls.cert))
    text = _replace(text, "/etc/nginx/tls/examvault.key", str(tls.key))
    text = _replace(text, "alias /var/lib/examvault/objects/;", f"alias {objects_dir.resolve()}/;")
    if extra_locations:
        text = _replace(text, FOOTAGE_LOCATION, extra_locations + "\n" + FOOTAGE_LOCATION)
    return text


def render_objects(*, upstream: str, https_port: int, tls: Tls) -> str:
    """deploy/nginx/objects.conf (presigned reads to the object store) on this machine."""
    text = OBJECTS.read_text(encoding="utf-8")
    text = _replace(text, "    server ceph:7480;\n", f"    server {upstream};\n")
    text = _replace(
        text,
        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
        f"    listen 127.0.0.1:{https_port} ssl http2;\n",
    )
    text = _replace(text, "/etc/nginx/tls/examvault.crt", str(tls.cert))
    return _replace(text, "/etc/nginx/tls/examvault.key", str(tls.key))


def main_conf(prefix: Path, site: Path) -> str:
    """The top level Debian's /etc/nginx/nginx.conf would be, confined to `prefix`."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    kinds = ("client", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = {name: prefix / "temp" / name for name in kinds}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    return (
        f"{user}worker_processes 1;\n"
        "daemon off;\n"
        "master_process on;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    include {MIME_TYPES};\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"    client_body_temp_path {temp['client']};\n"
        f"    proxy_temp_path {temp['proxy']};\n"
        f"    fastcgi_temp_path {temp['fastcgi']};\n"
        f"    uwsgi_temp_path {temp['uwsgi']};\n"
        f"    scgi_temp_path {temp['scgi']};\n"
        f"    include {site};\n"
        "}\n"
    )


def write_config(prefix: Path, site_text: str) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    site = prefix / "examvault.conf"
    site.write_text(site_text, encoding="utf-8")
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, site), encoding="utf-8")
    return conf


def nginx_command(prefix: Path, conf: Path, *args: str) -> list[str]:
    return [str(NGINX), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), *args]


def check_config(prefix: Path, site_text: str) -> subprocess.CompletedProcess[str]:
    conf = write_config(prefix, site_text)
    return subprocess.run(
        nginx_command(prefix, conf, "-t"), capture_output=True, text=True, timeout=30
    )


@contextmanager
def running_nginx(
    prefix: Path, site_text: str, https_port: int, *, scheme: str = "https"
) -> Iterator[str]:
    """nginx in the foreground (its own process, stopped at the end); yields its base URL."""
    conf = write_config(prefix, site_text)
    log = (prefix / "nginx.out").open("wb")
    process = subprocess.Popen(nginx_command(prefix, conf), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                errors = (prefix / "error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited with {process.returncode}: {errors}")
            try:
                with socket.create_connection(("127.0.0.1", https_port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen within 15 s") from None
                time.sleep(0.05)
        yield f"{scheme}://127.0.0.1:{https_port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def nginx_missing() -> str | None:
    """Why nginx cannot run here, or None."""
    if not NGINX.exists() or shutil.which(str(NGINX)) is None:
        return f"{NGINX} is missing (make nginx: apt-get install nginx-light)"
    if not MIME_TYPES.exists():
        return f"{MIME_TYPES} is missing (Debian's nginx-common)"
    return None
