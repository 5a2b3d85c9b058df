from django.urls import path

from .consumers import ChatConsumer
from .sockets import SocketSession

websocket_urlpatterns = [
    path("ws/chat/", SocketSession(ChatConsumer.as_asgi())),
]
