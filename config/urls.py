from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerView

from controltower.api.views import SchemaView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("meta/control-tower/", include("controltower.api.urls")),
    # Login/logout pages for the browsable API (session authentication, CSRF-protected).
    path("api/auth/", include("rest_framework.urls")),
    # Both are staff-only (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]).
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("metrics", include("controltower.metrics")),  # Prometheus; its own access rule (METRICS_TOKEN / IPs)
    path("", include("controltower.console.urls")),
]
