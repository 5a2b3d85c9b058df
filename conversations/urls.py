from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("conversations/", views.conversation_list, name="conversation-list"),
    path("c/<uuid:conversation_id>/", views.conversation, name="conversation"),
    path("c/<uuid:conversation_id>/older/", views.older_messages, name="older-messages"),
    path("c/<uuid:conversation_id>/menu/", views.conversation_menu, name="conversation-menu"),
    path("c/<uuid:conversation_id>/rename/", views.rename, name="conversation-rename"),
    path("c/<uuid:conversation_id>/archive/", views.archive, name="conversation-archive"),
    path("c/<uuid:conversation_id>/delete/", views.delete, name="conversation-delete"),
    path("c/<uuid:conversation_id>/settings/", views.configure, name="conversation-settings"),
    path(
        "c/<uuid:conversation_id>/export.md",
        views.export,
        {"fmt": "md"},
        name="conversation-export-md",
    ),
    path(
        "c/<uuid:conversation_id>/export.json",
        views.export,
        {"fmt": "json"},
        name="conversation-export-json",
    ),
]
