"""A private network of namespaces: one per worker, joined by a bridge.

Layout (``P`` is the unique prefix ``nsh-<pid>-<random>``)::

    P-hub:  bridge br0 (10.231.77.254/24) with ports s, w0, w1, ...
    P-s:    eth0 10.231.77.1   <- veth -> s  in P-hub    (scheduler, client)
    P-w0:   eth0 10.231.77.10  <- veth -> w0 in P-hub    (worker 0)
    P-w1:   eth0 10.231.77.11  <- veth -> w1 in P-hub    (worker 1)

Every veth pair is created directly between two of our namespaces
(``ip -n <hub> link add ... peer ... netns <ns>``), so no interface ever
appears in the host's namespace, and nothing outside the namespaces this
module created is touched. Deleting the namespaces removes the links.

Bandwidth is shaped by a ``tbf`` qdisc on the egress of each worker's
``eth0`` (traffic the worker sends). netem is not available on this kernel
(``CONFIG_NET_SCH_NETEM`` unset, no module), so latency is not set here.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: Every namespace this tool creates starts with this, then the creator's pid.
PREFIX = "nsh-"
#: The subnet used inside our namespaces (invisible outside them).
SUBNET = "10.231.77"
SCHEDULER_IP = f"{SUBNET}.1"
HUB_IP = f"{SUBNET}.254"
#: Name of the interface inside the scheduler and worker namespaces.
DEVICE = "eth0"


def worker_ip(index: int) -> str:
    """Address of worker ``index`` inside its namespace."""
    if not 0 <= index < 200:
        raise ValueError(f"worker index out of range: {index}")
    return f"{SUBNET}.{10 + index}"


def run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, log it, and raise with its stderr if it fails."""
    logger.debug("$ %s", " ".join(args))
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(args)}\n{result.stderr}"
        )
    return result


def in_netns(namespace: str, args: list[str]) -> list[str]:
    """``args`` prefixed to run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *args]


def parse_rate(rate: str) -> float:
    """Bits per second of a tc rate such as ``10mbit``, ``1gbit``, ``500kbit``."""
    match = re.fullmatch(r"([0-9.]+)\s*([kmg]?)bit", rate.strip().lower())
    if not match:
        raise ValueError(f"rate must look like 10mbit, 1gbit or 500kbit: {rate!r}")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]
    return float(match.group(1)) * scale


def tbf_args(rate: str) -> list[str]:
    """tc arguments of the token bucket used for ``rate``.

    The burst holds 10 ms of traffic but at least 64 KiB: a veth hands tbf
    GSO packets of up to 64 KiB, and tbf needs ``burst >= rate / HZ`` to
    reach its rate. The queue holds 100 ms of traffic (at least 2 bursts),
    so TCP sees a short, realistic buffer rather than drops at every burst.
    """
    bytes_per_second = parse_rate(rate) / 8
    burst = max(64 * 1024, int(bytes_per_second * 0.010))
    limit = max(2 * burst, int(bytes_per_second * 0.100))
    return ["tbf", "rate", rate, "burst", str(burst), "limit", str(limit)]


@dataclass
class Topology:
    """Namespaces and links for one scheduler and ``n_workers`` workers.

    Use as a context manager: the namespaces are created on entry and always
    deleted on exit, at interpreter exit, and on SIGINT/SIGTERM/SIGHUP.

    Parameters
    ----------
    n_workers : int
        Number of worker namespaces.
    """

    n_workers: int
    prefix: str = field(default="")
    namespaces: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def __post_init__(self) -> None:
        if not self.prefix:
            self.prefix = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}-"

    # ---------------------------------------------------------------- names
    @property
    def hub(self) -> str:
        return f"{self.prefix}hub"

    @property
    def scheduler_ns(self) -> str:
        return f"{self.prefix}s"

    def worker_ns(self, index: int) -> str:
        return f"{self.prefix}w{index}"

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> Topology:
        install_cleanup(self)
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def _add_namespace(self, name: str) -> None:
        # Record the name before creating it: a failure half-way must still
        # delete it.
        self.namespaces.append(name)
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def create(self) -> None:
        """Create the namespaces, the bridge and one veth pair per endpoint."""
        self._add_namespace(self.hub)
        run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.hub, "addr", "add", f"{HUB_IP}/24", "dev", "br0"])
        run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
        endpoints = [("s", self.scheduler_ns, SCHEDULER_IP)] + [
            (f"w{i}", self.worker_ns(i), worker_ip(i)) for i in range(self.n_workers)
        ]
        for port, namespace, address in endpoints:
            self._add_namespace(namespace)
            # Both ends are born in our namespaces: nothing in the host's.
            run(
                [
                    "ip",
                    "-n",
                    self.hub,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    DEVICE,
                    "netns",
                    namespace,
                ]
            )
            run(["ip", "-n", self.hub, "link", "set", port, "master", "br0"])
            run(["ip", "-n", self.hub, "link", "set", port, "up"])
            run(["ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", DEVICE])
            run(["ip", "-n", namespace, "link", "set", DEVICE, "up"])
        self._wait_reachable()
        logger.info(
            "Created namespaces %s (scheduler %s, workers %s)",
            ", ".join(self.namespaces),
            SCHEDULER_IP,
            ", ".join(worker_ip(i) for i in range(self.n_workers)),
        )

    def _wait_reachable(self, timeout: float = 10.0) -> None:
        # veth links come up asynchronously; wait until every end is UP (the
        # bridge has STP off, so its ports forward at once). There is no
        # ping on this machine: the cluster start checks the rest.
        checks = [
            (self.hub, p)
            for p in ["br0", "s"] + [f"w{i}" for i in range(self.n_workers)]
        ]
        checks += [(ns, DEVICE) for ns in self.namespaces if ns != self.hub]
        deadline = time.monotonic() + timeout
        for namespace, device in checks:
            while True:
                out = run(["ip", "-n", namespace, "-o", "link", "show", device]).stdout
                if "state UP" in out or ("LOWER_UP" in out and device == "br0"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{device} in {namespace} did not come up: {out}"
                    )
                time.sleep(0.05)

    def destroy(self) -> None:
        """Kill what runs in our namespaces and delete them (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            names = list(self.namespaces)
        for name in reversed(names):
            _kill_namespace_processes(name)
        for name in reversed(names):
            result = run(["ip", "netns", "del", name], check=False)
            if result.returncode != 0 and "No such file" not in result.stderr:
                print(
                    f"netshape: could not delete namespace {name}: {result.stderr}",
                    file=sys.stderr,
                )
        logger.info("Deleted namespaces %s", ", ".join(names))

    # -------------------------------------------------------------- shaping
    def shape(self, index: int, rate: str | None) -> None:
        """Set worker ``index``'s egress to ``rate`` (``None``: unshaped)."""
        shape_device(self.worker_ns(index), rate)


def shape_device(namespace: str, rate: str | None, device: str = DEVICE) -> None:
    """Put a tbf of ``rate`` on ``device``'s egress in ``namespace``, or remove it.

    ``tc qdisc replace`` works whether or not a qdisc is there, so the same
    call changes the rate of a running link (also in the middle of a fit).
    """
    if rate is None:
        result = run(
            in_netns(namespace, ["tc", "qdisc", "del", "dev", device, "root"]),
            check=False,
        )
        if (
            result.returncode != 0
            and "No such file" not in result.stderr
            and "Cannot delete qdisc with handle of zero" not in result.stderr
        ):
            raise RuntimeError(result.stderr)
        return
    run(
        in_netns(
            namespace,
            ["tc", "qdisc", "replace", "dev", device, "root", *tbf_args(rate)],
        )
    )


def show_qdisc(namespace: str, device: str = DEVICE) -> str:
    """``tc -s qdisc show`` of ``device`` in ``namespace``."""
    return run(in_netns(namespace, ["tc", "-s", "qdisc", "show", "dev", device])).stdout


def _kill_namespace_processes(namespace: str) -> None:
    # Only processes inside a namespace this tool created: ours.
    result = run(["ip", "netns", "pids", namespace], check=False)
    pids = [int(p) for p in result.stdout.split() if p.strip().isdigit()]
    pids = [p for p in pids if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        deadline = time.monotonic() + 5.0
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _alive(p)]
            time.sleep(0.1)
        pids = alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still "exists"; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


_registered: list[Topology] = []


def install_cleanup(topology: Topology) -> None:
    """Delete ``topology`` at exit and on SIGINT, SIGTERM and SIGHUP."""
    _registered.append(topology)
    if len(_registered) > 1:
        return
    atexit.register(_cleanup_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: object, previous: object = previous) -> None:
            # Raise in the main thread so that try/finally blocks run;
            # the atexit hook is the backstop.
            signal.signal(signum, signal.SIG_DFL)
            raise SystemExit(f"netshape: got signal {signum}, cleaning up")

        signal.signal(sig, handler)


def _cleanup_all() -> None:
    for topology in _registered:
        try:
            topology.destroy()
        except Exception as e:  # pragma: no cover - best effort at exit
            print(f"netshape: cleanup failed: {e}", file=sys.stderr)


def stale_namespaces() -> list[str]:
    """Our namespaces whose creating process is gone (a killed earlier run)."""
    result = run(["ip", "netns", "list"], check=False)
    stale = []
    for line in result.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{re.escape(PREFIX)}(\d+)-[0-9a-f]{{4}}-\w+", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            stale.append(name)
    return stale


def remove_stale() -> list[str]:
    """Delete namespaces left by earlier runs of this tool that were SIGKILLed."""
    removed = []
    for name in stale_namespaces():
        _kill_namespace_processes(name)
        if run(["ip", "netns", "del", name], check=False).returncode == 0:
            removed.append(name)
    return removed


def our_namespaces() -> list[str]:
    """Every namespace named by this tool (live or stale)."""
    result = run(["ip", "netns", "list"], check=False)
    return [
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0].startswith(PREFIX)
    ]
