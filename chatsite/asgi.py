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
