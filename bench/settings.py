"""Bench only: the settings `make bench` runs its gunicorn with (DJANGO_SETTINGS_MODULE=bench.settings,
set by bench/run.py). The service's settings unchanged, with a URLconf that adds the bench's floor
endpoints (bench/urls.py) and the skeleton's task (bench/skeleton.py). Production never loads this module."""

from config.settings import *

ROOT_URLCONF = "bench.urls"
CELERY_IMPORTS = ("bench.skeleton",)  # the skeleton's task, for the bench's workers
