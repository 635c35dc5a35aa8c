"""Routes under /meta/control-tower/. The spec's curl examples have no trailing slash; both forms work."""
from django.urls import re_path

from controltower.api import views

app_name = "controltower_api"

urlpatterns = [
    re_path(r"^status(?:/)?$", views.StatusView.as_view(), name="status"),
    re_path(r"^health(?:/)?$", views.HealthView.as_view(), name="health"),
    re_path(r"^command(?:/)?$", views.CommandView.as_view(), name="command"),
    re_path(r"^emergency-stop(?:/)?$", views.EmergencyStopView.as_view(), name="emergency-stop"),
    re_path(r"^resume(?:/)?$", views.ResumeView.as_view(), name="resume"),
    re_path(r"^recovery(?:/)?$", views.RecoveryView.as_view(), name="recovery"),
]
