"""Twilio's webhooks. The callback URL we give Twilio is built from these names with reverse()."""

from __future__ import annotations

from django.urls import path

from deliveries.views import StatusCallbackView

urlpatterns = [
    path("twilio/status/<uuid:delivery_id>/", StatusCallbackView.as_view(), name="twilio-status-callback"),
]
