from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import path

from extension.views import IntakeView

urlpatterns = [
    path("extension/", IntakeView.as_view(), name="extension-intake"),
    path(settings.ADMIN_URL, admin.site.urls),
]
