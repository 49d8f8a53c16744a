import os
import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import cache

from calls import services

IN_CI = os.environ.get("CI", "").lower() == "true"

# Playwright fixtures (browser, browsers) for the tests marked `browser`.
pytest_plugins = ["tests.browser"]


def require_service(name: str, url: str) -> None:
    """Skip locally when a real service is not answering; in CI a missing service is a failure."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
    except OSError as error:
        message = f"{name} at {parsed.hostname}:{parsed.port} is not answering: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    require_service("Redis", url)
    return url


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """Throttles and used tickets live in the cache: start every test with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    """Personas are created in almost every test: a deliberately slow hash would dominate the run.

    Not in browser tests: people log in there through a real server process, which hashes as production does.
    """
    if request.node.get_closest_marker("browser") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def password() -> str:
    return "correct-horse-battery"


@pytest.fixture
def alice(django_user_model, password):
    """Owner of the rooms in most tests."""
    return django_user_model.objects.create_user("alice", email="alice@example.com", password=password,
                                                 display_name="Alice A.")


@pytest.fixture
def bob(django_user_model, password):
    """A member."""
    return django_user_model.objects.create_user("bob", email="bob@example.com", password=password)


@pytest.fixture
def carol(django_user_model, password):
    """A moderator, in the rooms that tests make her one of."""
    return django_user_model.objects.create_user("carol", email="carol@example.com", password=password)


@pytest.fixture
def mallory(django_user_model, password):
    """An outsider: logged in, member of nothing."""
    return django_user_model.objects.create_user("mallory", email="mallory@example.com", password=password)


@pytest.fixture
def admin_user(django_user_model, password):
    return django_user_model.objects.create_superuser("root", email="root@example.com", password=password)


@pytest.fixture
def public_room(alice):
    return services.create_room(owner=alice, name="Town hall", visibility="public")


@pytest.fixture
def private_room(alice, bob):
    room = services.create_room(owner=alice, name="Board room", visibility="private")
    room.memberships.create(user=bob, role="member")
    return room


@pytest.fixture(scope="session")
def live_server_process(django_db_setup, django_db_blocker):
    """One real daphne process for the session, on the test database (tests writing to it need transaction=True)."""
    from tests.servers import DaphneServer

    with django_db_blocker.unblock():
        server = DaphneServer()
        server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def layer(request, settings):
    """The signaling tests run on the in-memory channel layer and on real Redis (channels-redis)."""
    import uuid

    from channels.layers import channel_layers

    from calls import relay
    from config.settings import channel_layer_for

    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings.CHANNEL_LAYERS = {"default": channel_layer_for(url, prefix=f"parley-test-{uuid.uuid4().hex[:8]}")}
    channel_layers.backends.clear()
    yield request.param
    await relay.stop_node()
    layer = channel_layers.backends.get("default")
    if layer is not None and hasattr(layer, "flush"):
        await layer.flush()
    channel_layers.backends.clear()


@pytest.fixture
async def peers(layer):
    """Opens signaling sockets on the layer: `await peers(bob, room)` is bob in the room's call, welcomed.

    Every socket opened through it is disconnected at teardown, whatever the test's outcome.
    """
    from tests.signaling import Peers

    opened = Peers()
    yield opened
    await opened.disconnect_all()


@pytest.fixture(scope="session", autouse=True)
def _close_database_threads(django_db_setup):
    """Threads that ran database work for async code each keep a connection: close them before the test database
    is dropped at the end of the session (depending on django_db_setup makes this run first)."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from calls.consumers import db_threads

    db_threads.shutdown(wait=True)  # the signaling consumer's pool; its threads' connections go with them
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
    import gc

    gc.collect()
