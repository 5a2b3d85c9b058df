from django.urls import path

from . import views

urlpatterns = [
    path("support/", views.dashboard, name="support-dashboard"),
    path("usage/", views.usage, name="usage"),
]
