"""Routes under /meta/control-tower/. The spec's curl examples have no trailing slash; both forms work."""

from django.urls import re_path

from controltower.api import drill_views, external, report_views, views, viewsets

app_name = "controltower_api"

router = viewsets.OptionalSlashRouter()
router.register("runs", viewsets.RunViewSet, basename="run")
router.register("health-logs", viewsets.HealthLogViewSet, basename="health-log")
router.register("modules", viewsets.ModuleViewSet, basename="module")

urlpatterns = [
    re_path(r"^$", views.ApiRootView.as_view(), name="root"),
    re_path(r"^status(?:/)?$", views.StatusView.as_view(), name="status"),
    re_path(r"^health(?:/)?$", views.HealthView.as_view(), name="health"),
    re_path(r"^command(?:/)?$", views.CommandView.as_view(), name="command"),
    re_path(r"^emergency-stop(?:/)?$", views.EmergencyStopView.as_view(), name="emergency-stop"),
    re_path(r"^resume(?:/)?$", views.ResumeView.as_view(), name="resume"),
    re_path(r"^recovery(?:/)?$", views.RecoveryView.as_view(), name="recovery"),
    re_path(r"^readiness(?:/)?$", views.ReadinessView.as_view(), name="readiness"),
    re_path(r"^alert-channels(?:/)?$", views.AlertChannelsView.as_view(), name="alert-channels"),
    re_path(r"^alert-channels/(?P<channel>[^/\x00]+)/test(?:/)?$", views.AlertTestView.as_view(), name="alert-test"),
    re_path(r"^report(?:/)?$", report_views.ReportView.as_view(), name="report"),
    re_path(r"^canaries(?:/)?$", drill_views.CanariesView.as_view(), name="canaries"),
    re_path(r"^canaries/(?P<canary_id>[^/\x00]+?)(?:/)?$", drill_views.CanaryView.as_view(), name="canary"),
    re_path(r"^drills(?:/)?$", drill_views.DrillsView.as_view(), name="drills"),
    re_path(r"^modules/(?P<code>[^/\x00]+)/runs(?:/)?$", external.ExternalRunView.as_view(), name="module-runs"),
    *router.urls,
    re_path(r"", views.UnknownEndpointView.as_view(), name="unknown"),  # last: matches every other path
]
