import os
import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import cache

from calls import services
from tests.helpers import IN_CI as IN_CI  # re-exported: tests import it from here
from tests.helpers import api_as, unavailable

# Playwright fixtures (browser, browsers) for the tests marked `browser`.
pytest_plugins = ["tests.browser"]


def _flush_retrying_deadlocks(flush):
    """The database flush after a transactional test TRUNCATEs every table while the real server processes may
    still be recording what the test's sockets did (a leave, a suspension, a heartbeat); PostgreSQL then aborts one
    side as a deadlock. The flush is tried again: the server's write went through or was rolled back whole."""
    import time

    def fixture_teardown(self):
        for attempt in range(5):
            try:
                return flush(self)
            except Exception as error:  # flush raises CommandError from the OperationalError
                if "deadlock detected" not in f"{error} {error.__cause__}" or attempt == 4:
                    raise
                time.sleep(0.2)

    return fixture_teardown


def pytest_configure(config):
    from django.test import TransactionTestCase

    TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks(TransactionTestCase._fixture_teardown)


def require_service(name: str, url: str) -> None:
    """Skip locally when a real service is not answering; in CI a missing service is a failure."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
    except OSError as error:
        unavailable(f"{name} at {parsed.hostname}:{parsed.port} is not answering: {error}")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    require_service("Redis", url)
    return url


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """Throttles and used tickets live in the cache: start every test with none. The process's copy of the webhook
    endpoints too: a rolled-back test never commits the change that would renew it."""
    from webhooks.outbox import enabled_endpoints

    cache.clear()
    enabled_endpoints.kept = None
    yield
    cache.clear()
    enabled_endpoints.kept = None


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    """Personas are created in almost every test: a deliberately slow hash would dominate the run.

    Not in browser tests: people log in there through a real server process, which hashes as production does.
    """
    if request.node.get_closest_marker("browser") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api():  # a REST API client, anonymous until the test logs in or sets credentials
    return api_as(None)


@pytest.fixture
def password() -> str:
    return "correct-horse-battery"


# --- The persona world: the same people in the same roles in every test ---------------------------


@pytest.fixture
def alice(django_user_model, password):  # the owner of `room` and of `public_room`
    return django_user_model.objects.create_user("alice", email="alice@example.com", password=password,
                                                 display_name="Alice A.")


@pytest.fixture
def bob(django_user_model, password):  # a plain member of both rooms
    return django_user_model.objects.create_user("bob", email="bob@example.com", password=password)


@pytest.fixture
def carol(django_user_model, password):  # a moderator of both rooms
    return django_user_model.objects.create_user("carol", email="carol@example.com", password=password)


@pytest.fixture
def mallory(django_user_model, password):  # an outsider: logged in, member of nothing
    return django_user_model.objects.create_user("mallory", email="mallory@example.com", password=password)


@pytest.fixture
def admin_user(django_user_model, password):  # an operator: staff superuser, member of nothing
    return django_user_model.objects.create_superuser("root", email="root@example.com", password=password)


def room_of_the_world(*, name: str, visibility: str, owner, moderator, member):
    room = services.create_room(owner=owner, name=name, visibility=visibility)
    services.add_member(by=owner, room=room, user=moderator, role=services.Role.MODERATOR)
    services.add_member(by=owner, room=room, user=member, role=services.Role.MEMBER)
    return room


@pytest.fixture
def room(alice, bob, carol):
    """Alice's private "Board room": carol moderates it, bob is a member; to mallory it does not exist."""
    return room_of_the_world(name="Board room", visibility="private", owner=alice, moderator=carol, member=bob)


@pytest.fixture
def private_room(room):
    """`room`, by the name that says it is private."""
    return room


@pytest.fixture
def public_room(alice, bob, carol):
    """Alice's public "Town hall", with the same roles as `room`: mallory sees it and may join its call, but is
    no member of it."""
    return room_of_the_world(name="Town hall", visibility="public", owner=alice, moderator=carol, member=bob)


# Extra people, for the tests that need a second one of a role. They have it in both rooms.


@pytest.fixture
def another_member(extra_person):  # dave: a member of both rooms too
    return extra_person("dave", services.Role.MEMBER)


@pytest.fixture
def another_moderator(extra_person):  # frank: a moderator of both rooms too
    return extra_person("frank", services.Role.MODERATOR)


@pytest.fixture
def extra_person(django_user_model, password, alice, room, public_room):
    def add(username: str, role: str):
        user = django_user_model.objects.create_user(username, password=password)
        for each in (room, public_room):
            services.add_member(by=alice, room=each, user=user, role=role)
        return user
    return add


# --- Servers, channel layers, sockets --------------------------------------------------------------


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

    from calls.db_threads import db_threads

    db_threads.shutdown(wait=True)  # the signaling consumer's pool; its threads' connections go with them
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
    import gc

    gc.collect()
