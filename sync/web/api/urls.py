"""API routes of the sync app, mounted under /api/v1/."""

from rest_framework.routers import DefaultRouter

from sync.web.api import views

router = DefaultRouter()
router.register("databases", views.DatabaseViewSet, basename="database")
router.register("schemas", views.SchemaViewSet, basename="schema")
router.register("tables", views.TableViewSet, basename="table")
router.register("tasks", views.TaskViewSet, basename="task")

urlpatterns = router.urls
