"""gunicorn settings, read from the working directory by every way the console is served
(tower.py, docker-compose.yml, the Dockerfile, bench/).

gunicorn kills a worker whose request outlasts `timeout`. An emergency stop works inside its
request for up to EMERGENCY_STOP_DEADLINE_SECONDS, then alerts on every channel (email up to
EMAIL_TIMEOUT, Slack and the webhook up to 3 attempts of ALERT_HTTP_TIMEOUT_SECONDS each, with
1.5 s of pauses): the worker timeout outlasts all of it, so a slow Slack never cuts a stop short.
"""
import os


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


timeout = int(_seconds("EMERGENCY_STOP_DEADLINE_SECONDS", 20) + _seconds("EMAIL_TIMEOUT", 10)
              + 2 * (3 * _seconds("ALERT_HTTP_TIMEOUT_SECONDS", 10) + 1.5) + 30)
