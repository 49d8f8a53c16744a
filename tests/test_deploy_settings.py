"""Settings for several processes: Redis Sentinel, and the checks that refuse a deployment split in two."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.servers import PROJECT, database_url_of_test_db
from tests.test_settings import PRODUCTION, run_django

SENTINEL_URL = "redis+sentinel://:s3cret@10.0.0.11:26379,10.0.0.12:26379,[fd00::13]:26380/parley-ha/2"


def redis_settings_seen_with(env: dict[str, str]) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps({'layer': s.CHANNEL_LAYERS['default'], 'cache': s.CACHES['default'],"
            " 'db': s.DATABASES['default'].get('OPTIONS', {})}, default=list))")
    result = run_django("-c", code, env={"DJANGO_SETTINGS_MODULE": "config.settings", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_sentinel_url_configures_the_channel_layer_and_the_cache_for_sentinel():
    seen = redis_settings_seen_with({"REDIS_URL": SENTINEL_URL, "PARLEY_CHANNEL_PREFIX": "parley-ha"})
    [host] = seen["layer"]["CONFIG"]["hosts"]
    assert host["master_name"] == "parley-ha"
    assert host["sentinels"] == [["10.0.0.11", 26379], ["10.0.0.12", 26379], ["fd00::13", 26380]]
    assert host["db"] == 2 and host["password"] == "s3cret"
    assert host["socket_timeout"] is None  # the layer's blocking reads, as without Sentinel
    assert "password" not in host["sentinel_kwargs"]  # the sentinels have none of their own here
    assert seen["layer"]["CONFIG"]["prefix"] == "parley-ha"
    assert seen["cache"]["LOCATION"] == [SENTINEL_URL]
    assert seen["cache"]["OPTIONS"] == {"pool_class": "config.sentinel.SentinelConnectionPool"}


def test_redis_sentinels_is_a_shorthand_for_the_url():
    short = redis_settings_seen_with({"REDIS_SENTINELS": "10.0.0.11:26379, 10.0.0.12:26379",
                                      "REDIS_SENTINEL_MASTER": "parley-ha"})
    long = redis_settings_seen_with({"REDIS_URL": "redis+sentinel://10.0.0.11:26379,10.0.0.12:26379/parley-ha/0"})
    assert short == long
    assert short["layer"]["CONFIG"]["hosts"][0]["master_name"] == "parley-ha"


def test_both_redis_url_and_redis_sentinels_is_an_error():
    result = run_django("manage.py", "check", env={"REDIS_URL": "redis://r:6379/0", "REDIS_SENTINELS": "s:26379"})
    assert result.returncode != 0 and "Set REDIS_URL or REDIS_SENTINELS, not both" in result.stderr


@pytest.mark.parametrize("url", ["redis+sentinel://10.0.0.11/parley", "redis+sentinel://10.0.0.11:26379/",
                                 "redis+sentinel://10.0.0.11:26379/parley/zero"])
def test_a_malformed_sentinel_url_is_refused_with_its_shape(url):
    result = run_django("manage.py", "check", env={"REDIS_URL": url})
    assert result.returncode != 0 and "Redis Sentinel: expected" in result.stderr


def test_the_cache_pool_reads_the_sentinel_url_with_its_passwords():
    from config.sentinel import SentinelConnectionPool

    pool = SentinelConnectionPool.from_url(SENTINEL_URL + "?sentinel_password=watch", socket_timeout=3)
    assert pool.service_name == "parley-ha"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["socket_timeout"] == 3
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert (sentinel["host"], sentinel["port"], sentinel["password"]) == ("10.0.0.11", 26379, "watch")


def test_the_layer_fingerprint_names_no_secret_and_follows_server_database_and_prefix():
    seen = {url: redis_settings_seen_with({"REDIS_URL": url, "DATABASE_URL": "postgres://p@db/parley",
                                           **({"PARLEY_CHANNEL_PREFIX": prefix} if prefix else {})})
            ["db"]["application_name"]
            for url, prefix in [("redis://:pw@Redis.internal:6379/0", ""), ("redis://redis.internal/0", "")]}
    assert len(set(seen.values())) == 1  # password, case and the default port do not matter
    assert all(re.fullmatch(r"parley [0-9a-f]{12}", name) for name in seen.values())
    other_db = redis_settings_seen_with({"REDIS_URL": "redis://redis.internal/1", "DATABASE_URL": "postgres://p@db/x"})
    other_prefix = redis_settings_seen_with({"REDIS_URL": "redis://redis.internal/0", "DATABASE_URL": "postgres://p@db/x",
                                             "PARLEY_CHANNEL_PREFIX": "parley-b"})
    assert len({*seen.values(), other_db["db"]["application_name"], other_prefix["db"]["application_name"]}) == 3


def test_production_on_postgresql_without_redis_is_refused():
    result = run_django("manage.py", "check", env={**PRODUCTION, "DATABASE_URL": "postgres://p@db.internal/parley"})
    assert result.returncode != 0 and "parley.E010" in result.stderr


# --- parley.E011: the processes connected to the database now ---------------------------------------------------


class ConnectedProcess:
    """A Django process holding a connection to the test database, with the given environment."""

    def __init__(self, env: dict[str, str]):
        code = ("import sys, django; django.setup(); from django.db import connection; "
                "connection.ensure_connection(); print(connection.connection.info.backend_pid, flush=True); "
                "sys.stdin.read()")
        full_env = {**subprocess_env(), "DATABASE_URL": database_url_of_test_db(), **env}
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, env=full_env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.backend_pid = int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}


def check_database(env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--database", "default"], cwd=PROJECT,
                          env={**subprocess_env(), "DATABASE_URL": database_url_of_test_db(), **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def postgresql(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("parley.E011 looks at PostgreSQL's pg_stat_activity")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("this test process must be on the Redis layer the checked processes use (REDIS_URL)")


@pytest.mark.django_db(transaction=True)
def test_a_process_on_another_channel_prefix_is_refused(postgresql, redis_url):
    other = ConnectedProcess({"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": "another-deployment"})
    try:
        refused = check_database({"REDIS_URL": redis_url})
        assert refused.returncode != 0 and "parley.E011" in refused.stderr, refused.stderr
        assert f"backend pid {other.backend_pid} (client 127.0.0.1:" in refused.stderr
        same = check_database({"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": "another-deployment"})
        assert "parley.E011" in same.stderr  # now this test's own process is the one on another layer
    finally:
        other.stop()
    assert "parley.E011" not in check_database({"REDIS_URL": redis_url}).stderr


@pytest.mark.django_db(transaction=True)
def test_a_process_on_another_redis_database_is_refused(postgresql, redis_url):
    other_db = redis_url.rsplit("/", 1)[0] + "/15"
    other = ConnectedProcess({"REDIS_URL": other_db})
    try:
        refused = check_database({"REDIS_URL": redis_url})
        assert refused.returncode != 0 and "parley.E011" in refused.stderr
        assert f"backend pid {other.backend_pid} (client 127.0.0.1:" in refused.stderr
    finally:
        other.stop()


@pytest.mark.django_db(transaction=True)
def test_processes_on_the_same_layer_pass(postgresql, redis_url):
    other = ConnectedProcess({"REDIS_URL": redis_url})
    try:
        result = check_database({"REDIS_URL": redis_url})
        assert result.returncode == 0 and "parley.E011" not in result.stderr, result.stderr
    finally:
        other.stop()
