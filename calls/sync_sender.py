"""Channel-layer sends from synchronous code (services, views, timers, management commands).

`async_to_sync` from a worker thread runs the send on the server's event loop and waits for it; when that loop is
stopping (a server shutting down) the wait never ends, and the process cannot exit (seen: daphne hung after
SIGTERM in `reap_stale_participants` -> `relay.send_items`). On Redis, sends from synchronous code therefore run on
an event loop of their own, in a daemon thread, with a layer instance of their own (channels-redis keeps its
connections per loop), and are waited for at most `TIMEOUT` seconds. The in-memory layer (one process, no Redis)
lives on the server's loop only, so there they still go through it.
"""

import asyncio
import threading

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.conf import settings

TIMEOUT = 10.0


class SyncSender:
    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()
        self.layer = None
        self.config = None

    def run(self, send) -> None:
        """Await `send(layer)` (an async function of the layer) to the end; its exceptions are raised here."""
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(send)(layer)
        else:
            asyncio.run_coroutine_threadsafe(send(self.own_layer()), self.running_loop()).result(TIMEOUT)

    def own_layer(self):
        """A layer instance of the sender's own, remade if the settings change (tests change them)."""
        config = settings.CHANNEL_LAYERS[DEFAULT_CHANNEL_LAYER]
        with self.lock:
            if self.layer is None or self.config != config:
                self.layer, self.config = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER), config
            return self.layer

    def running_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="layer-sender", daemon=True).start()
            return self.loop


sender = SyncSender()
