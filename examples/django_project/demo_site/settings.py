"""A tiny Django project whose tasks run on raftq (``raftq.contrib.django``).

The cluster's nodes come from ``RAFTQ_NODES`` (default: ``make run``'s three-node cluster),
its token from ``RAFTQ_TOKEN`` when auth is on.
"""

import importlib.util
import os

SECRET_KEY = "raftq-demo-project-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
DATABASES: dict[str, dict[str, str]] = {}

# --8<-- [start:settings]
INSTALLED_APPS = [
    "raftq.contrib.django",  # the raftq_worker management command
    "demo_app",
]
if importlib.util.find_spec("django.tasks") is None:  # Django < 6: the django-tasks backport
    INSTALLED_APPS.insert(0, "django_tasks")

TASKS = {
    "default": {
        "BACKEND": "raftq.contrib.django.RaftqBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {
            "nodes": os.environ.get("RAFTQ_NODES", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"),
            "token": os.environ.get("RAFTQ_TOKEN") or None,
            # A task that raises is FAILED at once, as with Django's own backends; raise it
            # to let raftq retry with backoff.
            "max_attempts": 1,
        },
    }
}
# --8<-- [end:settings]

# The same cluster, with retries: a task enqueued with `.using(backend="retrying")` that raises
# is run again (after raftq's backoff) once more before it is FAILED.
TASKS["retrying"] = {
    **TASKS["default"],
    "OPTIONS": {**TASKS["default"]["OPTIONS"], "max_attempts": 2},
}
