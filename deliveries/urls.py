"""Twilio's webhooks. The callback URL we give Twilio is built from these names with reverse()."""

from __future__ import annotations

from django.urls import path

from deliveries.views import CallGatherView, InboundMessageView, StatusCallbackView

urlpatterns = [
    path("twilio/status/<uuid:delivery_id>/", StatusCallbackView.as_view(), name="twilio-status-callback"),
    path("twilio/inbound/<str:oid>/", InboundMessageView.as_view(), name="twilio-inbound"),
    path("twilio/voice/<uuid:delivery_id>/gather/", CallGatherView.as_view(), name="twilio-call-gather"),
]
