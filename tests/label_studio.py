"""A real Label Studio on 127.0.0.1 for tests, and the few HTTP API calls a reviewer's tools make.

Label Studio lives in its own virtual environment, ``.label-studio/`` at the root of the
checkout, made by ``make label-studio`` (``make test`` makes it when missing): its pins
(Django and more) would break this package's. Tests reach it over HTTP only, with the
standard library, so nothing of it is imported here.

Under ``CI=true`` a missing Label Studio fails the test; elsewhere it skips with the
command that installs it.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".label-studio"
EXECUTABLE = VENV / "bin" / "label-studio"
#: How long the first start may take (database migrations; about 20 s on an idle 2-core machine).
START_TIMEOUT_S = 300.0


def require_label_studio() -> Path:
    """The ``label-studio`` command of ``.label-studio/``; the test fails when it is missing."""
    installed = EXECUTABLE.is_file() and any(VENV.glob("installed-*"))
    if not installed:
        message = (f"Label Studio is not installed in {VENV}: run `make label-studio` "
                   f"(a virtual environment of its own, about 1 GB)")
        pytest.fail(message + "; `make test` makes it")
    return EXECUTABLE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def labeling_config(labels: list[str]) -> str:
    """The labeling config that ``review.label_studio.json`` tasks are made for."""
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return (f'<View><Text name="text" value="$text"/>'
            f'<Choices name="label" toName="text" choice="single">{choices}</Choices></View>')


def choices_result(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


class LabelStudioError(RuntimeError):
    pass


class Client:
    """Label Studio's HTTP API as one user: legacy token auth (``Authorization: Token ...``)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path + query, data=data, method=method,
                                         headers={"Authorization": f"Token {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise LabelStudioError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:500]}") from None
        return json.loads(text) if text else None

    def whoami(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/current-user/whoami"))

    def create_project(self, title: str, labels: list[str]) -> int:
        return int(self.call("POST", "/api/projects", {"title": title, "label_config": labeling_config(labels)})["id"])

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.call("POST", f"/api/projects/{project}/import", tasks))

    def tasks(self, project: int) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/tasks", project=project, page_size=1000)["tasks"])

    def annotate(self, task: int, label: str) -> dict[str, Any]:
        """Submit an annotation, as the labeling page does."""
        return dict(self.call("POST", f"/api/tasks/{task}/annotations",
                              {"result": choices_result(label), "was_cancelled": False, "lead_time": 4.2}))

    def skip(self, task: int) -> dict[str, Any]:
        """Skip a task: Label Studio stores a cancelled annotation with no result."""
        return dict(self.call("POST", f"/api/tasks/{task}/annotations", {"result": [], "was_cancelled": True}))

    def change(self, annotation: int, label: str) -> dict[str, Any]:
        return dict(self.call("PATCH", f"/api/annotations/{annotation}", {"result": choices_result(label)}))

    def export(self, project: int, export_type: str = "JSON") -> bytes:
        """The project's export as the Export button downloads it (annotated tasks only)."""
        request = urllib.request.Request(
            f"{self.url}/api/projects/{project}/export?exportType={export_type}",
            headers={"Authorization": f"Token {self.token}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return bytes(response.read())


class LabelStudio:
    """``label-studio start`` on a free 127.0.0.1 port with its own data directory.

    The first user (``admin``) and its API token are made at start; ``sign_up`` makes
    more through the sign-up page, as a second person would. ``stop`` ends the whole
    process group.
    """

    def __init__(self, data_dir: Path) -> None:
        self.executable = require_label_studio()
        self.data_dir = data_dir
        self.log = data_dir / "label-studio.log"
        self.email = "admin@example.com"
        self.password = secrets.token_urlsafe(12)
        self.token = secrets.token_hex(20)
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LabelStudio:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        home = self.data_dir / "home"
        home.mkdir(exist_ok=True)
        # a clean environment: Label Studio reads many unprefixed names (USERNAME, PORT, DEBUG...)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
               "PYTHONUNBUFFERED": "1",  # the log shows where it listens as soon as it does
               "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
               "SECRET_KEY": secrets.token_hex(32),
               # nothing leaves the machine: no version check, analytics or error reports
               "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
               "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
        command = [str(self.executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
                   "--port", str(free_port()), "--data-dir", str(self.data_dir),
                   "--username", self.email, "--password", self.password, "--user-token", self.token,
                   "--enable-legacy-api-token"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=env, cwd=self.data_dir,
                                            start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabelStudioError(f"label-studio exited with {self.process.returncode}:\n{self.log_tail()}")
            # it moves to the next port when the chosen one was taken meanwhile: read where it is
            found = re.search(r"Starting development server at (http://127\.0\.0\.1:\d+)/", self._log_text())
            if found:
                try:
                    with urllib.request.urlopen(found.group(1) + "/health", timeout=5) as response:
                        if response.status == 200:
                            self.url = found.group(1)
                            return
                except OSError:
                    pass
            time.sleep(0.5)
        raise LabelStudioError(f"label-studio not ready after {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def admin(self) -> Client:
        return Client(self.url, self.token)

    def sign_up(self, email: str, password: str) -> Client:
        """A new user through the sign-up page (a form with a CSRF token); their API token."""
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.open(f"{self.url}/user/signup/", timeout=60).read()
        csrf = next(c.value for c in jar if c.name == "csrftoken")
        form = urllib.parse.urlencode({"email": email, "password": password, "csrfmiddlewaretoken": csrf}).encode()
        browser.open(urllib.request.Request(f"{self.url}/user/signup/", data=form,
                                            headers={"Referer": f"{self.url}/user/signup/"}), timeout=60).read()
        with browser.open(f"{self.url}/api/current-user/token", timeout=60) as response:
            token = json.loads(response.read())["token"]
        return Client(self.url, str(token))
