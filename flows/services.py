"""Start/stop the local Prefect server and process worker, and register the deployments of prefect.yaml.

    python -m flows.services up      # server on 127.0.0.1:$TATAR_PREFECT_PORT (4200), pool, deployments, worker
    python -m flows.services down    # stop worker (SIGINT) and server (SIGTERM)
    python -m flows.services status

State (SQLite database, logs, pid files) lives in $PREFECT_HOME (default: <project>/.prefect).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
POOL = "tatar-local"
ACTIVATE_MARKER = "# tatar: this project's local Prefect server (added by make install)"


@dataclass
class Services:
    home: Path
    port: int = 4200
    project: Path = PROJECT

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for every Prefect client, worker and flow run of this project."""
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_WORKER_QUERY_SECONDS=os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "1"),
            PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(self.home / "results"),
            PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
            TATAR_PROJECT_DIR=str(self.project),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        return env

    def _bin(self, name: str) -> str:
        return str(Path(sys.executable).with_name(name))

    def _pidfile(self, name: str) -> Path:
        return self.home / f"{name}.pid"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=self.project, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self._pidfile(name).write_text(str(proc.pid))
        return proc

    def start_server(self, timeout: float = 120) -> None:
        if self.healthy():
            print(f"Prefect server already up at {self.ui_url}")
            return
        proc = self._spawn("server", [self._bin("prefect"), "server", "start", "--host", "127.0.0.1",
                                      "--port", str(self.port)])
        t0 = time.time()
        while not self.healthy():
            if proc.poll() is not None:
                raise RuntimeError(f"Prefect server exited with {proc.returncode}; see {self.home / 'server.log'}")
            if time.time() - t0 > timeout:
                raise TimeoutError(f"Prefect server not healthy after {timeout:.0f} s; see {self.home / 'server.log'}")
            time.sleep(0.5)
        print(f"Prefect server up at {self.ui_url} ({time.time() - t0:.0f} s)")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([self._bin("prefect"), *args], cwd=self.project, env=self.env(), capture_output=True,
                           text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def deploy(self) -> None:
        if self.cli("work-pool", "inspect", POOL, check=False).returncode != 0:
            self.cli("work-pool", "create", POOL, "--type", "process")
        self.cli("--no-prompt", "deploy", "--all")
        print(f"Deployments registered on pool {POOL}")

    def start_worker(self) -> subprocess.Popen | None:
        pid = self._read_pid("worker")
        if pid and _alive(pid):
            print(f"Worker already running (pid {pid})")
            return None
        proc = self._spawn("worker", [self._bin("prefect"), "worker", "start", "--pool", POOL, "--type", "process"])
        print(f"Worker started (pid {proc.pid}), log {self.home / 'worker.log'}")
        return proc

    def _read_pid(self, name: str) -> int | None:
        f = self._pidfile(name)
        return int(f.read_text()) if f.exists() else None

    def stop(self, name: str, sig: int, timeout: float = 20) -> None:
        pid = self._read_pid(name)
        if not pid or not _alive(pid):
            self._pidfile(name).unlink(missing_ok=True)
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        t0 = time.time()
        while _alive(pid) and time.time() - t0 < timeout:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self._pidfile(name).unlink(missing_ok=True)
        print(f"Stopped {name} (pid {pid})")

    def up(self) -> None:
        self.start_server()
        self.deploy()
        self.start_worker()

    def down(self) -> None:
        self.stop("worker", signal.SIGINT)  # the worker ignores SIGTERM
        self.stop("server", signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def from_env() -> Services:
    return Services(home=Path(os.environ.get("PREFECT_HOME", PROJECT / ".prefect")).resolve(),
                    port=int(os.environ.get("TATAR_PREFECT_PORT", "4200")))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    s = from_env()
    cmd = argv[0] if argv else "status"
    if cmd == "up":
        s.up()
    elif cmd == "down":
        s.down()
    elif cmd == "env":  # shell exports, for `eval $(python -m flows.services env)` and .venv/bin/activate
        print(ACTIVATE_MARKER)
        for k in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "HF_HUB_OFFLINE",
                  "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "TATAR_PROJECT_DIR"):
            print(f"export {k}='{s.env()[k]}'")
    else:
        print(f"server: {'up at ' + s.ui_url if s.healthy() else 'down'}; worker pid: {s._read_pid('worker')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
