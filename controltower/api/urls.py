"""Routes under /meta/control-tower/. The spec's curl examples have no trailing slash; both forms work."""
from django.urls import re_path

from controltower.api import views

app_name = "controltower_api"

urlpatterns = [
    re_path(r"^status(?:/)?$", views.StatusView.as_view(), name="status"),
    re_path(r"^health(?:/)?$", views.HealthView.as_view(), name="health"),
]
