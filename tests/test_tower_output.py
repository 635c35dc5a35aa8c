"""tower.py's terminal: each process's lines under its name, nothing lost when it exits, the start-up box."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import tower
from tests.support import ROOT, wait_for


def test_it_frames_every_line_in_a_box_as_wide_as_the_longest() -> None:
    box = tower.frame(["console   http://127.0.0.1:8000/", "password  abc"], "Control Tower is running").splitlines()

    assert len({len(line) for line in box}) == 1
    assert box[0].startswith("╔") and box[-1].startswith("╚")
    assert box[1] == "║ Control Tower is running         ║"
    assert box[3] == "║ console   http://127.0.0.1:8000/ ║"
    assert box[4] == "║ password  abc                    ║"


def test_it_prefixes_a_line_with_the_process_name_padded_to_the_longest() -> None:
    assert tower.prefixed("web", 8, "GET / 200") == "web      | GET / 200"
    assert tower.prefixed("watchdog", 8, "") == "watchdog | "


def test_it_relays_stdout_and_stderr_lines_including_an_unterminated_last_one() -> None:
    code = "import sys; print('one'); print('two', file=sys.stderr); sys.stdout.write('last')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []

    tower.relay("worker", 6, proc.stdout, lines.append)

    assert proc.wait() == 0
    assert sorted(lines) == ["worker | last", "worker | one", "worker | two"]


def test_it_says_whether_the_console_answers() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert tower.answers("127.0.0.1", port, within=1)
    assert not tower.answers("127.0.0.1", port, within=0)


SUPERVISED = """
import sys, tower
child = ("import signal, sys, time\\n"
         "def bye(*_): print('bye from ' + sys.argv[1]); sys.exit(0)\\n"
         "signal.signal(signal.SIGTERM, bye)\\n"
         "print('hello from ' + sys.argv[1])\\n"
         "time.sleep(60)\\n")
sys.exit(tower.supervise({"web": [sys.executable, "-c", child, "web"],
                          "watchdog": [sys.executable, "-c", child, "watchdog"]},
                         dict(__import__("os").environ), lambda: tower.to_terminal("STARTED")))
"""


def test_supervise_prefixes_each_process_and_keeps_its_last_lines_after_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = []
    for line in proc.stdout:  # until both children said hello
        seen.append(line.rstrip("\n"))
        if sum("hello from" in s for s in seen) == 2:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    output = seen + rest.splitlines()

    assert proc.returncode == 0
    assert "web      | hello from web" in output and "watchdog | hello from watchdog" in output
    assert "web      | bye from web" in output and "watchdog | bye from watchdog" in output
    assert "STARTED" in output


def test_the_watchdog_ends_quietly_on_ctrl_c(tmp_path) -> None:
    # Ctrl-C on `tower.py up` reaches every process; each ends without a traceback on the terminal.
    log = tmp_path / "watchdog.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "watchdog"],
            cwd=ROOT,
            env={
                **{
                    k: v
                    for k, v in os.environ.items()  # its own embedded database and broker
                    if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")
                },
                "DJANGO_SETTINGS_MODULE": "config.test_settings",
                "TOWER_VAR_DIR": str(tmp_path),
                "PYTHONPATH": str(ROOT),
                "WATCHDOG_INTERVAL_SECONDS": "60",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # In its loop once its first check is done: on this empty database that check fails (and is logged).
    wait_for(lambda: "Watchdog check failed" in log.read_text(), timeout=60, message="the watchdog's first check")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert "KeyboardInterrupt" not in log.read_text()
