"""The web process's entry point (gunicorn.conf.py serves it with uvicorn workers).

Django runs each ASGI request's view in a thread of its own that ends with the request, so a
database connection kept open past a request (DB_CONN_MAX_AGE) would belong to a finished thread:
never reused, closed only when the garbage collector gets to it. The web therefore closes its
connections at the end of every request; DB_CONN_MAX_AGE applies to the other processes.
"""

import os

os.environ["DB_CONN_MAX_AGE"] = "0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402 - after the settings' environment

application = get_asgi_application()
