"""Routes of the web UI, mounted at the root."""

from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from sync.web.pages import changes, push, views
from sync.web.throttling import LockedAuthenticationForm


class IdConverter:
    """A database id: digits that fit a bigint, so no id reaches SQL out of range."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("", views.databases, name="databases"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=LockedAuthenticationForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("databases/register/", views.register, name="register"),
    path("databases/<id:database_id>/schemas/", views.schemas, name="schemas"),
    path("databases/<id:database_id>/tables/", views.tables, name="tables"),
    path("databases/<id:database_id>/history/", views.history, name="history"),
    path("databases/<id:database_id>/changes/", changes.changes, name="changes"),
    path("databases/<id:database_id>/refresh/", views.refresh, name="refresh"),
    path("databases/<id:database_id>/import/", views.import_now, name="import"),
    path("tables/<id:table_id>/", views.table, name="table"),
    # The push channel's streams, served by the push role (project.asgi).
    path("push/", push.stream, name="push"),
    path("push/databases/<id:database_id>/", push.stream, name="push-database"),
]
