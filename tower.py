#!/usr/bin/env python3
"""Set up and run Control Tower with nothing but Python 3.11.

    python3 tower.py up                        # venv + install + migrate + modules, then run every process
    python3 tower.py test                      # venv + install (with test extras), then the whole test suite
    python3 tower.py lint                      # venv + install (with test extras), then the layer contract and ruff
    python3 tower.py reset-password [username] # a new password for a lost one, printed once

Only the standard library is used until the virtual environment exists; everything else
runs inside `.venv`. Environment variables (docs/settings.md) pass through to every process.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
VAR = Path(os.environ.get("TOWER_VAR_DIR", ROOT / "var"))


# One writer at a time: the processes' output, the tower's messages and the start-up box share the terminal.
OUTPUT = threading.Lock()


def say(message: str) -> None:
    with OUTPUT:
        print(f"[tower] {message}", flush=True)


def frame(lines: list[str], title: str) -> str:
    """`lines` in a box, so the start-up summary stands out of the processes' output."""
    width = max(len(line) for line in [title, *lines])
    return "\n".join(
        [
            f"╔═{'═' * width}═╗",
            f"║ {title.ljust(width)} ║",
            f"╟─{'─' * width}─╢",
            *(f"║ {line.ljust(width)} ║" for line in lines),
            f"╚═{'═' * width}═╝",
        ]
    )


def prefixed(name: str, width: int, line: str) -> str:
    """A process's output line under its name, as foreman and honcho show it: `web    | ...`."""
    return f"{name.ljust(width)} | {line}"


def relay(name: str, width: int, stream: IO[bytes], write: Callable[[str], None]) -> None:
    """Every line `stream` carries until it closes (the process and its children exited), prefixed."""
    with stream:
        for raw in iter(stream.readline, b""):
            write(prefixed(name, width, raw.decode("utf-8", "replace").rstrip("\r\n")))


def to_terminal(line: str) -> None:
    with OUTPUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def answers(host: str, port: int, within: float) -> bool:
    """Whether something accepts connections on host:port within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def ensure_venv(requirements: str) -> None:
    """Create .venv and install `requirements` unless the same file was installed already."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is required (this is {sys.version.split()[0]}).")
    if not PYTHON.exists():
        say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    marker = VENV / f".installed-{requirements}"
    digest = hashlib.sha256(
        b"".join((ROOT / name).read_bytes() for name in ("requirements.txt", requirements))
    ).hexdigest()
    if marker.exists() and marker.read_text() == digest:
        return
    say(f"installing {requirements}")
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(ROOT / requirements)],
        check=True,
    )
    marker.write_text(digest)


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents readable by the owner only (0700), as config.settings does
    (this script cannot import it before the virtual environment exists)."""
    for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env.setdefault("TOWER_VAR_DIR", str(VAR))
    if not env.get("SECRET_KEY"):
        # Generated once per installation and kept beside the embedded database, owner-only from the start.
        key_file = private_dir(VAR) / "secret_key"
        if not key_file.exists():
            with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                out.write(secrets.token_urlsafe(50))
        env["SECRET_KEY"] = key_file.read_text().strip()
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(PYTHON), str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, check=True)


def announce(env: dict[str, str], host: str, port: str, names: Iterable[str]) -> None:
    """Once the console answers, the box with where to go and how to log in. `startup_summary` makes the
    first operator account, so a generated password travels from its stdout to this terminal only."""
    url = f"http://{host}:{port}/"
    if not answers(host, int(port), within=60):
        say(f"the console does not answer on {url} after 60 s — see the web lines above")
    summary = subprocess.run(
        [str(PYTHON), str(ROOT / "manage.py"), "startup_summary", "--url", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if summary.returncode != 0:
        say(f"startup_summary failed:\n{summary.stderr}")
        return
    lines = [
        *summary.stdout.splitlines(),
        f"logs      this terminal only, each line under its process: {', '.join(names)}",
        "stop      Ctrl-C stops every process",
    ]
    to_terminal(frame(lines, "Control Tower is running"))


def web_command(host: str, port: str | int) -> list[str]:
    """The web process, as every way of serving the console starts it (tower.py up, the Dockerfile,
    docker-compose.yml, bench/, the tests): the worker model and its timeouts are in gunicorn.conf.py."""
    return [str(VENV / "bin" / "gunicorn"), "--bind", f"{host}:{port}"]


def sandbox_command(env: dict[str, str]) -> list[str]:
    """The Meta sandbox of `tower.py up`; META_SANDBOX_ARGS adds its own options (docs/meta-sandbox.md),
    e.g. "--reset --accounts 300 --campaigns-per-account 100 --latency-profile live"."""
    return [
        str(PYTHON),
        str(ROOT / "manage.py"),
        "meta_sandbox",
        "--port",
        env.get("META_SANDBOX_PORT", "8765"),
        "--store",
        str(VAR / "meta_sandbox.sqlite3"),
        *shlex.split(env.get("META_SANDBOX_ARGS", "")),
    ]


def up() -> int:
    ensure_venv("requirements.txt")
    env = base_env()
    host = env.get("TOWER_HOST", "127.0.0.1")
    port = env.get("TOWER_PORT", "8000")
    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "collectstatic", "--no-input", "-v0")
    manage(env, "sync_modules")
    bin_dir = VENV / "bin"
    processes = {
        "web": web_command(host, port),
        "worker": [
            str(bin_dir / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "info",
            "--concurrency",
            env.get("WORKER_CONCURRENCY", "2"),
        ],
        "beat": [str(bin_dir / "celery"), "-A", "config", "beat", "--loglevel", "info"],
        "watchdog": [str(PYTHON), str(ROOT / "manage.py"), "watchdog"],
    }
    if env.get("META_MODE", "stub") == "stub":
        from meta_sandbox.access import APP_ID  # standard library only, like this script

        # The sandbox's app, so readiness asks debug_token with an app token as in live mode.
        env.setdefault("META_APP_ID", APP_ID)
        env.setdefault("META_APP_SECRET", "sandbox-app-secret")
        processes["sandbox"] = sandbox_command(env)
    return supervise(processes, env, lambda: announce(env, host, port, processes))


def supervise(processes: dict[str, list[str]], env: dict[str, str], started: Callable[[], None]) -> int:
    """Run the processes until Ctrl-C, each one's output (stdout and stderr) shown line by line under
    its name; `started` runs beside them once all are started. One that exits is reported and the others
    keep running, so the console can show (and alert on) the outage, as it would in production."""
    child_env = {**env, "PYTHONUNBUFFERED": "1"}  # lines as they are written, not when a pipe buffer fills
    width = max(len(name) for name in processes)
    running: dict[str, subprocess.Popen[bytes]] = {}
    relays: list[threading.Thread] = []
    for name, cmd in processes.items():
        running[name] = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        relays.append(
            threading.Thread(target=relay, args=(name, width, running[name].stdout, to_terminal), daemon=True)
        )
        relays[-1].start()
    say(f"started {', '.join(running)} (Ctrl-C stops everything)")
    threading.Thread(target=started, daemon=True).start()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    reported: set[str] = set()
    while not stopping and len(reported) < len(running):
        for name, proc in running.items():
            if proc.poll() is not None and name not in reported:
                reported.add(name)
                say(f"{name} exited with code {proc.returncode}; the others keep running (Ctrl-C stops everything)")
        time.sleep(0.5)
    for proc in running.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in running.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    for thread in relays:  # the last lines each process wrote before it exited
        thread.join(timeout=5)
    return 0 if stopping else 1


def test(args: list[str]) -> int:
    ensure_venv("requirements-dev.txt")
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.test_settings"
    return subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def lint() -> int:
    """The import contracts of .importlinter (who may import whom, see docs/design.md), then ruff's
    lint and format check (ruff.toml). Every check runs; the first failure's code is returned."""
    ensure_venv("requirements-dev.txt")
    checks = [["lint-imports"], ["ruff", "check", "."], ["ruff", "format", "--check", "."]]
    codes = [subprocess.run([str(VENV / "bin" / tool), *rest], cwd=ROOT).returncode for tool, *rest in checks]
    return next((code for code in codes if code), 0)


def reset_password(args: list[str]) -> int:
    """A lost password, on the machine `up` runs on: same virtual environment, same generated secret key."""
    ensure_venv("requirements.txt")
    return subprocess.run(
        [str(PYTHON), str(ROOT / "manage.py"), "reset_password", *args[:1]], cwd=ROOT, env=base_env()
    ).returncode


def main() -> int:
    sys.stdout.reconfigure(errors="replace")  # the box's lines on a terminal that is not UTF-8
    command, *rest = sys.argv[1:] or ["help"]
    if command == "up":
        return up()
    if command == "test":
        return test(rest)
    if command == "lint":
        return lint()
    if command == "reset-password":
        return reset_password(rest)
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    sys.exit(main())
