"""gunicorn settings, read from the working directory by every way the console is served
(tower.py, docker-compose.yml, the Dockerfile, bench/): the command line is only
`gunicorn --bind HOST:PORT` (tower.web_command), everything else is here.

Worker model (README, "Why async workers"): each gunicorn worker is a uvicorn event loop serving
Django over ASGI. Connections that send nothing, or their headers a byte at a time, cost the loop
a few kilobytes and no thread, so no number of them takes a worker away from the stop button
(sync and gthread workers read headers on a blocking socket in a worker or thread: two idle
clients were enough). Django runs each request's view in a thread of its own
(asgiref's ThreadSensitiveContext), so a 20 s stop never holds the dashboard or `GET status`.

`timeout` changes meaning under this worker: the worker's heartbeat is sent by its event loop, so
gunicorn kills a worker only when the loop itself is stuck, never because one request (running
in its own thread) is long. It keeps the value the sync workers needed — longer than a whole stop:
its deadline (EMERGENCY_STOP_DEADLINE_SECONDS), then alerts on every channel (email up to
EMAIL_TIMEOUT, Slack and the webhook up to 3 attempts of ALERT_HTTP_TIMEOUT_SECONDS each, with
1.5 s of pauses) — so a loop blocked by a stop's synchronous work would never be cut short either.
"""

import os


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


wsgi_app = "config.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
accesslog = "-"
timeout = int(
    _seconds("EMERGENCY_STOP_DEADLINE_SECONDS", 20)
    + _seconds("EMAIL_TIMEOUT", 10)
    + 2 * (3 * _seconds("ALERT_HTTP_TIMEOUT_SECONDS", 10) + 1.5)
    + 30
)
