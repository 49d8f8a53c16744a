"""Debian's nginx with the shipped `deploy/nginx/parley.conf`, on free loopback ports, started and stopped by a test.

The shipped file is used as it is except for what a machine must change: its listen ports, the upstream's server
ports, the certificate, the static root and the ACME webroot. Each replacement must match the shipped text, so a
change of the file's shape fails here rather than being silently left out.
"""

import datetime
import ipaddress
import os
import re
import subprocess
import time
from pathlib import Path

from tests.deploy import DEPLOY, require_binary
from tests.servers import PROJECT, free_port, terminate

SHIPPED = DEPLOY / "nginx" / "parley.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", re.MULTILINE)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and parley.example.com), made here; returns (certificate, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parley.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("parley.example.com"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def replace(text: str, old: str, new: str, *, count: int) -> str:
    found = text.count(old)
    assert found == count, f"expected {count} of {old!r} in {SHIPPED}, found {found}"
    return text.replace(old, new)


def render(*, http_port: int, https_port: int, upstream_ports: list[int], certificate: Path, key: Path,
           static_root: Path, acme_root: Path) -> str:
    text = SHIPPED.read_text()
    text = replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};", count=1)
    text = replace(text, "listen [::]:80;\n", "", count=1)
    text = replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", count=1)
    text = replace(text, "listen [::]:443 ssl http2;\n", "", count=1)
    text = replace(text, "/etc/letsencrypt/live/parley.example.com/fullchain.pem", str(certificate), count=1)
    text = replace(text, "/etc/letsencrypt/live/parley.example.com/privkey.pem", str(key), count=1)
    text = replace(text, "alias /srv/parley/app/staticfiles/;", f"alias {static_root}/;", count=1)
    text = replace(text, "root /var/www/letsencrypt;", f"root {acme_root};", count=1)
    servers = list(UPSTREAM_SERVER.finditer(text))
    assert servers, f"no `server 127.0.0.1:<port> ...;` lines in the upstream of {SHIPPED}"
    indent, options = servers[0].group(1), servers[0].group(2) or ""
    lines = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstream_ports)
    return text[:servers[0].start()] + lines + text[servers[-1].end():]


MAIN_CONF = """\
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 2048; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/parley.conf;
}}
"""


class Nginx:
    """nginx in the foreground (`daemon off`), its own prefix, config and logs under test-artifacts/."""

    def __init__(self, *, upstream_ports: list[int], static_root: Path, directory: Path | None = None):
        self.binary = require_binary("nginx", "/usr/sbin/nginx")
        self.http_port, self.https_port = free_port(), free_port()
        self.dir = directory or PROJECT / "test-artifacts" / f"nginx-{self.https_port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "acme").mkdir(exist_ok=True)
        self.certificate, self.key = self_signed_certificate(self.dir)
        self.upstream_ports = upstream_ports
        self.static_root = static_root
        self.process: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.dir / "nginx.conf"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write(self) -> None:
        (self.dir / "parley.conf").write_text(render(
            http_port=self.http_port, https_port=self.https_port, upstream_ports=self.upstream_ports,
            certificate=self.certificate, key=self.key, static_root=self.static_root, acme_root=self.dir / "acme"))
        # As root, nginx's workers would otherwise be `nobody`, who cannot enter pytest's private directories.
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf.write_text(MAIN_CONF.format(dir=self.dir, user=user))

    def nginx(self, *args: str) -> list[str]:
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.dir / "error.log"), *args]

    def test_config(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the rendered configuration."""
        self.write()
        return subprocess.run(self.nginx("-t"), capture_output=True, text=True, timeout=30)

    def start(self, timeout: float = 15.0) -> "Nginx":
        checked = self.test_config()
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(self.nginx("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                        stderr=open(self.dir / "stderr.log", "w"))
        import socket

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.error_log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not listen within {timeout} s: {self.error_log()[-2000:]}") from None
                time.sleep(0.05)

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        terminate(self.process)  # SIGTERM: nginx's fast shutdown

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
