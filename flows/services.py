"""Start/stop the local Prefect server and process workers, and register the deployments of prefect.yaml.

    python -m flows.services up      # server on 127.0.0.1:$TATAR_PREFECT_PORT (4200), the two pools, deployments,
                                     # one process worker per pool
    python -m flows.services down    # stop the workers (SIGINT) and the server (SIGTERM)
    python -m flows.services status

Two work pools (prefect.yaml routes each deployment to one): the CPU pool $TATAR_CPU_POOL (default tatar-cpu: the
tatar flow, samples, rationales, filtered) and the GPU pool $TATAR_GPU_POOL (default tatar-gpu: sft, grpo,
benchmark). On one machine both workers run here. State (SQLite database, logs, pid files) lives in $PREFECT_HOME
(default: <project>/.prefect).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
ROLES = ("cpu", "gpu")  # one work pool and one local worker each
ACTIVATE_MARKER = "# tatar: this project's local Prefect server (added by make install)"


@dataclass
class Services:
    home: Path
    port: int = 4200
    project: Path = PROJECT
    pools: dict[str, str] = field(
        default_factory=lambda: {r: os.environ.get(f"TATAR_{r.upper()}_POOL", f"tatar-{r}") for r in ROLES}
    )
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. server settings in tests

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
            TATAR_CPU_POOL=self.pools["cpu"],
            TATAR_GPU_POOL=self.pools["gpu"],
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
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
        proc = subprocess.Popen(
            args, cwd=self.project, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._pidfile(name).write_text(str(proc.pid))
        return proc

    def start_server(self, timeout: float = 120) -> None:
        if self.healthy():
            print(f"Prefect server already up at {self.ui_url}")
            return
        proc = self._spawn(
            "server", [self._bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        )
        t0 = time.time()
        while not self.healthy():
            if proc.poll() is not None:
                raise RuntimeError(f"Prefect server exited with {proc.returncode}; see {self.home / 'server.log'}")
            if time.time() - t0 > timeout:
                raise TimeoutError(f"Prefect server not healthy after {timeout:.0f} s; see {self.home / 'server.log'}")
            time.sleep(0.5)
        print(f"Prefect server up at {self.ui_url} ({time.time() - t0:.0f} s)")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [self._bin("prefect"), *args], cwd=self.project, env=self.env(), capture_output=True, text=True
        )
        if check and p.returncode != 0:
            raise RuntimeError(
                f"prefect {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
            )
        return p

    def deploy(self) -> None:
        for pool in self.pools.values():
            if self.cli("work-pool", "inspect", pool, check=False).returncode != 0:
                self.cli("work-pool", "create", pool, "--type", "process")
        self.cli("--no-prompt", "deploy", "--all")
        print(f"Deployments registered on pools {self.pools['cpu']} (CPU) and {self.pools['gpu']} (GPU)")

    def worker_name(self, role: str) -> str:
        return f"{self.pools[role]}-worker"

    def start_worker(self, role: str) -> subprocess.Popen | None:
        """A process worker for the `role` ("cpu" / "gpu") pool; pid in $PREFECT_HOME/worker-<role>.pid."""
        name = f"worker-{role}"
        pid = self._read_pid(name)
        if pid and _alive(pid):
            print(f"{role.upper()} worker already running (pid {pid})")
            return None
        proc = self._spawn(
            name,
            [
                self._bin("prefect"),
                "worker",
                "start",
                "--pool",
                self.pools[role],
                "--type",
                "process",
                "--name",
                self.worker_name(role),
            ],
        )
        print(f"{role.upper()} worker on pool {self.pools[role]} started (pid {proc.pid}), log {self.home / name}.log")
        return proc

    def stop_worker(self, role: str) -> None:
        self.stop(f"worker-{role}", signal.SIGINT)  # the worker ignores SIGTERM

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
        for role in ROLES:
            self.start_worker(role)

    def down(self) -> None:
        for role in ROLES:
            self.stop_worker(role)
        self.stop("worker", signal.SIGINT)  # the single worker of earlier versions
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
    return Services(
        home=Path(os.environ.get("PREFECT_HOME", PROJECT / ".prefect")).resolve(),
        port=int(os.environ.get("TATAR_PREFECT_PORT", "4200")),
    )


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
        for k in (
            "PREFECT_HOME",
            "PREFECT_API_URL",
            "PREFECT_SERVER_ANALYTICS_ENABLED",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "TOKENIZERS_PARALLELISM",
            "TATAR_PROJECT_DIR",
            "TATAR_CPU_POOL",
            "TATAR_GPU_POOL",
        ):
            print(f"export {k}='{s.env()[k]}'")
    else:
        workers = ", ".join(f"{s.pools[r]} worker pid {s._read_pid(f'worker-{r}')}" for r in ROLES)
        print(f"server: {'up at ' + s.ui_url if s.healthy() else 'down'}; {workers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
