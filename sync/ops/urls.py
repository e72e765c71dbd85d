"""Routes of the operators' endpoints, mounted at the root."""

from django.urls import path

from sync.ops.views import MetricsView, healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]
