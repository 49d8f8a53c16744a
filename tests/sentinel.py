"""A Redis primary, a replica and three sentinels (Debian's redis-server and redis-sentinel) on free loopback ports,
started and stopped by the test; files and logs under test-artifacts/sentinel-<port>/."""

import subprocess
import time
from pathlib import Path

import redis

from tests.deploy import require_binary
from tests.servers import PROJECT, free_port, terminate

SERVICE = "parley"
DOWN_AFTER_MS = 1000  # production would use a few seconds (docs/deploy.md); the test wants a quick failover


class RedisProcess:
    def __init__(self, binary: str, args: list[str], port: int, directory: Path, name: str):
        self.port, self.name = port, name
        self.log = directory / f"{name}.log"
        self.process = subprocess.Popen([binary, *args], cwd=directory, stdout=open(self.log, "w"),
                                        stderr=subprocess.STDOUT)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.process, timeout=15)


class SentinelGroup:
    """`primary`, `replica` and `sentinels`; `url` is what Parley's REDIS_URL would be."""

    def __init__(self):
        self.server_binary = require_binary("redis-server", "/usr/bin/redis-server")
        self.sentinel_binary = require_binary("redis-sentinel", "/usr/bin/redis-sentinel")
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dir = PROJECT / "test-artifacts" / f"sentinel-{self.primary_port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.primary = self.replica = None
        self.sentinels: list[RedisProcess] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _server(self, port: int, name: str, *extra: str) -> RedisProcess:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--dbfilename", f"{name}.rdb", *extra]
        return RedisProcess(self.server_binary, args, port, self.dir, name)

    def start(self) -> "SentinelGroup":
        self.primary = self._server(self.primary_port, "primary")
        self.primary.wait_ready()
        self.replica = self._server(self.replica_port, "replica", "--replicaof", "127.0.0.1",
                                    str(self.primary_port))
        self.replica.wait_ready()
        for n, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{n}.conf"  # a sentinel rewrites its own file: one each, writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            sentinel = RedisProcess(self.sentinel_binary, [str(conf)], port, self.dir, f"sentinel-{n}")
            self.sentinels.append(sentinel)
        for sentinel in self.sentinels:
            sentinel.wait_ready()
        self.wait_until_monitored()
        return self

    def wait_until_monitored(self, timeout: float = 30) -> None:
        """Every sentinel knows the replica and the two other sentinels: a failover can then be agreed on."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = all(
                    len(s.client().sentinel_slaves(SERVICE)) == 1 and len(s.client().sentinel_sentinels(SERVICE)) == 2
                    and self.replica.client().info("replication")["master_link_status"] == "up"
                    for s in self.sentinels
                )
            except redis.RedisError:
                ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinels did not see each other and the replica within {timeout} s")
            time.sleep(0.2)

    def primary_address(self) -> tuple[str, int]:
        host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return host, int(port)

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.primary]:
            if process is not None:
                process.stop()

    def __enter__(self) -> "SentinelGroup":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
