"""ASGI entry point: HTTP through Django, WebSockets through the origin check and sessions to Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Build the Django app (and with it the app registry) before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.routing import OriginCheckMiddleware, SessionUserMiddleware, websocket_urlpatterns  # noqa: E402
from config.collector import tune_garbage_collector  # noqa: E402
from config.edge import install_daphne_edge  # noqa: E402
from people.routing import websocket_urlpatterns as people_urlpatterns  # noqa: E402

install_daphne_edge()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginCheckMiddleware(
            SessionUserMiddleware(URLRouter([*websocket_urlpatterns, *people_urlpatterns]))
        ),
    }
)
tune_garbage_collector()  # last: what exists now lives as long as the process
