"""Celery discovers module tasks here."""

from meta_modules import jobs  # noqa: F401  (registers the 17 module tasks)
