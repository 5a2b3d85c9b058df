from django.urls import path

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("alerts/<int:alert_id>/acknowledge", views.acknowledge_alert, name="alert-acknowledge"),
]
