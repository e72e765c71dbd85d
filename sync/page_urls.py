"""Routes of the web UI, mounted at the root."""

from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from sync import pages


class IdConverter:
    """A database id: digits that fit a bigint, so no id reaches SQL out of range."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("", pages.databases, name="databases"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("databases/register/", pages.register, name="register"),
    path("databases/<id:database_id>/schemas/", pages.schemas, name="schemas"),
    path("databases/<id:database_id>/tables/", pages.tables, name="tables"),
    path("databases/<id:database_id>/history/", pages.history, name="history"),
    path("databases/<id:database_id>/refresh/", pages.refresh, name="refresh"),
    path("databases/<id:database_id>/import/", pages.import_now, name="import"),
    path("tables/<id:table_id>/", pages.table, name="table"),
]
