"""API routes of the sync app, mounted under /api/v1/."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from sync.web.api import changes, views

router = DefaultRouter()
router.register("databases", views.DatabaseViewSet, basename="database")
router.register("schemas", views.SchemaViewSet, basename="schema")
router.register("tables", views.TableViewSet, basename="table")
router.register("tasks", views.TaskViewSet, basename="task")

# The change feed of each kind of object, one view with its scope.
feeds = [
    path(
        f"{plural}/<str:pk>/changes/",
        changes.ChangeFeedViewSet.as_view({"get": "list"}, scope=scope),
        name=f"{scope}-changes",
    )
    for scope, plural in (("database", "databases"), ("schema", "schemas"), ("table", "tables"))
]

urlpatterns = feeds + router.urls
