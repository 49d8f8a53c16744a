"""Settings are read from the environment: check them the way a deployment would, in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "x" * 60 + "-a-long-random-production-secret",
    "DJANGO_ALLOWED_HOSTS": "parley.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://parley.example.com",
}


def run_django(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "PARLEY_"))}
    return subprocess.run([sys.executable, *args], cwd=PROJECT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def settings_seen_with(env: dict[str, str]) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
            " 'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'cache': s.CACHES['default']['BACKEND'],"
            " 'debug': s.DEBUG}))")
    result = run_django("-c", code, env={"DJANGO_SETTINGS_MODULE": "config.settings", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_check_deploy_is_clean_under_production_settings():
    result = run_django("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run_django("manage.py", "check", env={**PRODUCTION, "DJANGO_SECRET_KEY": ""})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_wildcard_host():
    result = run_django("manage.py", "check", env={**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "*"})
    assert result.returncode != 0
    assert "parley.E001" in result.stderr


def test_a_malformed_boolean_is_an_error_not_a_guess():
    result = run_django("manage.py", "check", env={"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG: expected a boolean" in result.stderr


def test_embedded_defaults_are_sqlite_and_the_in_memory_layer():
    seen = settings_seen_with({})
    assert seen == {"db": "django.db.backends.sqlite3", "name": str(PROJECT / "db.sqlite3"),
                    "layer": "channels.layers.InMemoryChannelLayer",
                    "cache": "django.core.cache.backends.locmem.LocMemCache", "debug": True}


def test_urls_switch_to_postgresql_and_redis():
    seen = settings_seen_with({"DATABASE_URL": "postgres://parley@db.internal:5432/parley",
                               "REDIS_URL": "redis://cache.internal:6379/2"})
    assert seen["db"] == "django.db.backends.postgresql" and seen["name"] == "parley"
    assert seen["layer"] == "channels_redis.core.RedisChannelLayer"
    assert seen["cache"] == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.django_db
def test_ci_runs_on_the_real_services():
    """In CI the suite must run on PostgreSQL and Redis, never fall back to the embedded defaults."""
    from django.conf import settings
    from django.db import connection

    if os.environ.get("CI", "").lower() != "true":
        pytest.skip("only meaningful in CI")
    assert connection.vendor == "postgresql"
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


def collector_seen_with(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The garbage collector of a process that built the ASGI application, as daphne and uvicorn do."""
    code = "import gc, config.asgi; print(list(gc.get_threshold()), gc.get_freeze_count() > 0)"
    return run_django("-c", code, env={"DJANGO_SETTINGS_MODULE": "config.settings", **env})


def test_a_server_process_freezes_its_startup_objects_and_collects_less_often():
    result = collector_seen_with({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[10000,", "10,", "100]", "True"]


def test_the_collector_thresholds_are_a_setting_and_python_keeps_its_own():
    assert collector_seen_with({"PARLEY_GC_THRESHOLDS": "5000,5,50"}).stdout.split()[:3] == ["[5000,", "5,", "50]"]
    assert collector_seen_with({"PARLEY_GC_THRESHOLDS": "python"}).stdout.split() == ["[700,", "10,", "10]", "False"]
    refused = collector_seen_with({"PARLEY_GC_THRESHOLDS": "10000,10"})
    assert refused.returncode != 0 and "PARLEY_GC_THRESHOLDS: expected three positive integers" in refused.stderr
