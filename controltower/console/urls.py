"""The operator console at the site root (staff only; actions need operate_tower)."""

from django.urls import path

from controltower.console import views

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("fragments/", views.dashboard_fragments, name="dashboard-fragments"),
    path("emergency-stop/", views.emergency_stop, name="emergency-stop"),
    path("stops/<uuid:run_id>/", views.stop_result, name="stop-result"),
    path("stops/<uuid:run_id>/fragments/", views.stop_result_fragments, name="stop-result-fragments"),
    path("resume/", views.resume, name="resume"),
    path("readiness/", views.readiness, name="readiness"),
    path("readiness/check/", views.readiness_check, name="readiness-check"),
    path("alert-channels/<slug:kind>/test/", views.test_alert, name="test-alert"),
    path("commands/<slug:name>/", views.command, name="command"),
    path("modules/<str:code>/", views.module_detail, name="module"),
    path("modules/<str:code>/fragments/", views.module_fragments, name="module-fragments"),
    path("modules/<str:code>/actions/<slug:name>/", views.module_action, name="module-action"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run"),
    path("notifications/", views.notification_list, name="notifications"),
    path("report/", views.report, name="report"),
    path("drills/", views.drills, name="drills"),
]
