"""The files under deploy/ as the machine's own tools read them: `nginx -t`, `systemd-analyze verify`, checks."""

import re
import subprocess
import sys

from tests.deploy import PRODUCTION_ENV, SHIPPED_APP, SHIPPED_VENV_BIN, UNITS, VENV_BIN, require_binary
from tests.deploy import unit_directives as directives
from tests.nginx import SHIPPED, Nginx
from tests.servers import PROJECT
from tests.test_settings import run_django

UNIT_FILES = ["parley@.service", "parley.target", "parley-reaper.service", "parley-reaper.timer",
              "parley-webhooks.service", "parley-purge.service", "parley-purge.timer"]
ENV_EXAMPLE = UNITS / "parley.env.example"


def test_nginx_accepts_the_shipped_config(tmp_path):
    nginx = Nginx(upstream_ports=[8001, 8002], static_root=tmp_path, directory=tmp_path)
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_nginx_timeouts_on_websockets_outlast_parleys_own_peer_timeout():
    """nginx must never be the one to end a call's socket: Parley closes silent peers itself (4408)."""
    ws_block = SHIPPED.read_text().split("location /ws/ {", 1)[1].split("}", 1)[0]
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(re.search(rf"{directive} (\d+)s;", ws_block).group(1))
        assert seconds >= 2 * 60 + 20, directive  # PARLEY_PEER_TIMEOUT (60 s) plus a heartbeat, twice over


def test_systemd_analyze_verifies_the_shipped_units(tmp_path):
    """Verified as installed, with this run's virtualenv and checkout in place of /srv/parley."""
    analyze = require_binary("systemd-analyze", "/usr/bin/systemd-analyze")
    for name in UNIT_FILES:
        text = (UNITS / name).read_text().replace(SHIPPED_VENV_BIN, f"{VENV_BIN}/").replace(SHIPPED_APP, str(PROJECT))
        (tmp_path / name).write_text(text)
    instances = [str(tmp_path / n.replace("@.", "@8001.")) for n in UNIT_FILES]
    result = subprocess.run([analyze, "verify", "--man=no", *instances], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    # verify exits 0 on some problems (unknown keys, bad values) but always prints them: silence is the pass.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_every_unit_runs_as_the_dedicated_user_with_the_hardening_directives():
    for name in UNIT_FILES:
        found = dict(directives(UNITS / name))
        if name.endswith(".service"):
            assert found["User"] == "parley" and found["Group"] == "parley", name
            assert found["NoNewPrivileges"] == "yes" and found["ProtectSystem"] == "strict", name
            assert found["EnvironmentFile"] == "/etc/parley/parley.env", name
            assert found["CapabilityBoundingSet"] == "", name


def test_the_server_unit_starts_the_recommended_server_with_parleys_size_limit():
    [start] = [value for key, value in directives(UNITS / "parley@.service") if key == "ExecStart"]
    assert start.startswith(f"{SHIPPED_VENV_BIN}uvicorn config.asgi:application --host 127.0.0.1 --port %i")
    # The one edge setting (docs/security.md), with its default in the unit itself.
    assert "--ws-max-size ${PARLEY_WS_MAX_BYTES}" in start
    environment = " ".join(value for key, value in directives(UNITS / "parley@.service") if key == "Environment")
    assert "PARLEY_WS_MAX_BYTES=1048576" in environment.split()


def settings_variables() -> set[str]:
    source = (PROJECT / "config" / "settings.py").read_text()
    return set(re.findall(r"""(?:environ\.get|env_bool|env_int|env_float|env_list)\(\s*["']([A-Z][A-Z0-9_]+)["']""",
                          source))


def test_the_environment_example_names_every_variable_the_settings_read():
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    missing = settings_variables() - named
    assert not missing, f"add to {ENV_EXAMPLE.relative_to(PROJECT)}: {sorted(missing)}"


def test_check_deploy_is_clean_with_the_environment_example():
    """The example as it stands, with a real secret, passes `check --deploy` (which connects to nothing)."""
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.removeprefix('"').removesuffix('"')
    env["DJANGO_SECRET_KEY"] = PRODUCTION_ENV["DJANGO_SECRET_KEY"]
    result = run_django("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_webhook_units_condition_finds_its_command():
    """ExecCondition skips the unit cleanly on a release without `deliver_webhooks`, and runs it on this one."""
    [condition] = [value for key, value in directives(UNITS / "parley-webhooks.service") if key == "ExecCondition"]
    result = subprocess.run([sys.executable, *condition.split()[1:]], cwd=PROJECT, capture_output=True, text=True,
                            timeout=60)
    if (PROJECT / "webhooks" / "management" / "commands" / "deliver_webhooks.py").exists():
        assert result.returncode == 0
    else:
        assert 1 <= result.returncode <= 254, "ExecCondition skips the unit on exit codes 1 to 254"
