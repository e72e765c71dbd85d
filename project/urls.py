"""URL configuration of dbsync."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("sync.ops.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("sync.web.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # The browsable API's log in and log out links.
    path("api/auth/", include("rest_framework.urls")),
    path("", include("sync.web.pages.urls")),
    # Browsers ask for it on every page the icon link does not name (the admin's, the API's).
    path("favicon.ico", RedirectView.as_view(url=static("sync/favicon.svg"), permanent=True)),
]

# Under /api/, unknown URLs and unexpected errors answer in the API's error shape too.
handler404 = "sync.web.api.errors.not_found"
handler500 = "sync.web.api.errors.server_error"
