from __future__ import annotations

from django.contrib import admin
from django.urls import path

from deliveries.views import status_callback
from extension.views import IntakeView

urlpatterns = [
    path("extension/", IntakeView.as_view(), name="extension-intake"),
    path("twilio/status/<uuid:delivery_id>/", status_callback, name="twilio-status-callback"),
    path("admin/", admin.site.urls),
]
