"""Bench only: the settings `make bench` runs its gunicorn with (DJANGO_SETTINGS_MODULE=bench.settings,
set by bench/run.py). The service's settings unchanged, with a URLconf that adds the bench's floor
endpoint (bench/urls.py). Production never loads this module."""

from config.settings import *

ROOT_URLCONF = "bench.urls"
