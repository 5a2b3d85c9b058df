"""ASGI entry point: HTTP through Django, websockets through Channels.

Websocket handshakes must come from the site's own pages (an allowed host, and the page's
own origin: chatsite/origin.py), which refuses cross-site websocket hijacking; the session
authenticates the user. Every HTTP body is capped (chatsite/bodylimit.py).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chatsite.bodylimit import BodySizeLimit  # noqa: E402
from chatsite.origin import SameOriginValidator  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": BodySizeLimit(django_asgi_app),
        # The Origin's host must be an allowed host, and the page's own origin (port
        # included) or a trusted one: chatsite/origin.py.
        "websocket": AllowedHostsOriginValidator(
            SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)


def _tune_garbage_collection() -> None:
    """Freeze what loading the app made (it lives as long as the process) out of every
    collection, and collect the young generation less often: see GC_TUNING in settings.
    Here, at the end of loading, in each server process (uvicorn's workers import this
    module themselves)."""
    import gc

    from django.conf import settings

    if settings.GC_TUNING:
        gc.set_threshold(settings.GC_GEN0_THRESHOLD, 10, 10)
        gc.collect()
        gc.freeze()


_tune_garbage_collection()
