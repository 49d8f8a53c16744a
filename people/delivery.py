"""Delivery of /ws/me/ frames from synchronous code (views, services, timers) to the channel-layer group
`user.<id>` of each user: the relay-node channels of the processes that hold their sockets (people.consumers.Hub)."""

import asyncio
import logging
import threading

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class Sender:
    """Group sends from synchronous code. On Redis they run on an event loop of the sender's own, in one thread,
    with a layer instance of its own (channels-redis keeps connections per loop): while developing, group sends
    made through the server's loop from worker threads (async_to_sync) were seen to reach nobody, and this was
    reliable (tests/test_people_socket.py, tests/test_people_redis.py). The in-memory layer (one process, no Redis)
    is only safe on the server's loop."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()
        self.layer = None
        self.config = None

    def send(self, user_ids: list[int], text: str, *, kind: str | None = None, message: str = "me.frame") -> None:
        """Send `text` to the users' sockets; with message="me.close", close them (4401) instead."""
        layer = get_channel_layer()
        try:
            if isinstance(layer, InMemoryChannelLayer):
                async_to_sync(send_all)(layer, user_ids, text, message)
            else:
                coroutine = send_all(self.own_layer(), user_ids, text, message)
                asyncio.run_coroutine_threadsafe(coroutine, self.running_loop()).result(10)
        except Exception:  # the channel layer (Redis) is down
            logger.exception("people: could not send %s to users %s", kind, user_ids)

    def own_layer(self):
        """A layer instance of the sender's own (its connections belong to its loop), remade if the settings
        change."""
        config = settings.CHANNEL_LAYERS[DEFAULT_CHANNEL_LAYER]
        with self.lock:
            if self.layer is None or self.config != config:
                self.layer, self.config = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER), config
            return self.layer

    def running_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="people-sender", daemon=True).start()
            return self.loop


sender = Sender()


async def send_all(layer, user_ids: list[int], text: str, message: str = "me.frame") -> None:
    for user_id in user_ids:
        await layer.group_send(user_group(user_id), {"type": message, "user": user_id, "text": text})
