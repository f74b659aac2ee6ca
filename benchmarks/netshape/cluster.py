"""Start a ``dask scheduler`` and N ``dask worker`` processes, and stop them.

Two placements:

* in namespaces (root): the scheduler in ``<prefix>s``, worker ``i`` in
  ``<prefix>w<i>``, each started through ``ip netns exec``; links are shaped
  with tc by :mod:`netns`;
* on 127.0.0.1 (``--simulate``, no root): plain processes; the exchange's
  link simulator shapes the workers' outgoing state messages.

Either way the link simulator's latency (and, with ``--simulate``, its
bandwidth) reaches the workers as the settings of the exchange's worker
plugin, which :meth:`ProcessCluster.install_link_simulator` installs anew for
each link setting. A fit installs that plugin only on a cluster that has none,
so the fits use the one installed here.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import netns
from distributed import Client
from distributed.protocol.pickle import dumps

from dask_asgd.exchange import PLUGIN_NAME, ExchangeWorkerPlugin

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask_command() -> list[str]:
    # The `dask` entry point of this interpreter's environment.
    script = Path(sys.executable).parent / "dask"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dask"]


class ProcessCluster:
    """Scheduler and worker processes, in namespaces or on loopback.

    Parameters
    ----------
    n_workers : int
        Number of ``dask worker`` processes (``--nthreads 1`` each).
    log_dir : Path
        Where each process's output goes.
    prefix : str or None
        Namespace prefix of a :class:`netns.Topology` (root mode); None for
        plain processes on 127.0.0.1.
    """

    def __init__(
        self, n_workers: int, log_dir: Path, prefix: str | None = None
    ) -> None:
        self.n_workers = n_workers
        self.log_dir = log_dir
        self.prefix = prefix
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.client: Client | None = None
        self._generation = 0
        if prefix is None:
            self.host = "127.0.0.1"
            self.port = _free_port()
        else:
            self.host = netns.SCHEDULER_IP
            self.port = 8786
        self.address = f"tcp://{self.host}:{self.port}"

    # --------------------------------------------------------------- helpers
    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            # The package, and this folder for the functions that the
            # driver runs on workers (client.run) by reference.
            [str(REPO), str(HERE), *filter(None, [env.get("PYTHONPATH")])]
        )
        # Quiet worker logs; warnings still land in the log files.
        env.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        env.update(extra or {})
        return env

    def _popen(
        self, namespace: str | None, args: list[str], name: str, env: dict[str, str]
    ) -> subprocess.Popen:
        command = netns.in_netns(namespace, args) if namespace else args
        log = open(self.log_dir / f"{name}.log", "ab")
        logger.debug("start %s: %s", name, " ".join(command))
        # A session of its own: the process group is ours to signal.
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Client:
        """Start the scheduler and connect a client to it."""
        namespace = f"{self.prefix}s" if self.prefix else None
        self.scheduler = self._popen(
            namespace,
            [
                *_dask_command(),
                "scheduler",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--no-dashboard",
            ],
            "scheduler",
            self._env(),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = Client(self.address, timeout="5s")
                break
            except OSError as error:
                if self.scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"scheduler did not start; see {self.log_dir / 'scheduler.log'}"
                    ) from error
                time.sleep(0.5)
        return self.client

    def start_workers(self, env: dict[str, str] | None = None) -> None:
        """(Re)start the workers with ``env`` added to their environment."""
        self.stop_workers()
        self._generation += 1
        for i in range(self.n_workers):
            namespace = f"{self.prefix}w{i}" if self.prefix else None
            host = netns.worker_ip(i) if self.prefix else "127.0.0.1"
            self.workers.append(
                self._popen(
                    namespace,
                    [
                        *_dask_command(),
                        "worker",
                        self.address,
                        "--host",
                        host,
                        "--nthreads",
                        "1",
                        "--name",
                        f"w{i}-{self._generation}",
                        "--no-dashboard",
                    ],
                    f"worker{i}",
                    self._env(env),
                )
            )
        assert self.client is not None
        deadline = time.monotonic() + 120
        while len(self.client.scheduler_info(n_workers=-1)["workers"]) < self.n_workers:
            for worker in self.workers:
                if worker.poll() is not None:
                    raise RuntimeError(
                        f"a worker exited; see {self.log_dir}/worker*.log"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not connect within 120 s")
            time.sleep(0.25)

    def install_link_simulator(self, bandwidth: float | None, latency: float) -> None:
        """Install the exchange plugin with this link simulator on the workers.

        Parameters
        ----------
        bandwidth : float or None
            Outgoing bytes/s of each worker; None for no rate limit.
        latency : float
            Seconds added to every state message.
        """
        assert self.client is not None
        plugin = ExchangeWorkerPlugin(bandwidth=bandwidth, latency=latency)
        self.client.sync(
            self.client.scheduler.register_worker_plugin,
            plugin=dumps(plugin),
            name=PLUGIN_NAME,
            # Not idempotent: it replaces the previous link setting's plugin,
            # on the scheduler and on the running workers.
            idempotent=False,
        )

    def stop_workers(self) -> None:
        """Stop the worker processes (SIGTERM, then SIGKILL) and wait until
        the scheduler has forgotten them."""
        for process in self.workers:
            _stop(process)
        self.workers = []
        if self.client is not None:
            deadline = time.monotonic() + 30
            while self.client.scheduler_info(n_workers=-1)["workers"]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)

    def close(self) -> None:
        """Stop everything this object started (idempotent)."""
        if self.client is not None:
            try:
                self.client.close(timeout=5)
            except Exception:
                pass
            self.client = None
        for process in self.workers:
            _stop(process)
        self.workers = []
        if self.scheduler is not None:
            _stop(self.scheduler)
            self.scheduler = None

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process we started, and its children, by its process group."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            # The nanny's worker child may outlive it by a moment.
            time.sleep(0.2)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue
