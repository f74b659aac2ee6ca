"""Real slow links for the benchmark: ASGD fits over shaped network links.

As root (default): a ``dask scheduler`` and N ``dask worker`` processes
(``--nthreads 1``), each worker in its own network namespace, joined by veth
pairs to a bridge in a hub namespace; a ``tbf`` qdisc on each worker's veth
egress sets its bandwidth; latency comes from dask-asgd's link simulator
(environment variable on the workers), since netem is absent. Every
namespace and link is the tool's own and is removed at the end, also on
errors and signals.

With ``--simulate`` (no root): the same, with plain processes on 127.0.0.1
and both bandwidth and latency from the link simulator (which shapes only
the state messages the workers exchange).

Two runs, written to ``benchmarks/netshape/results/<time>-<root|simulate>``:

1. sweep: time to a target training loss for each link speed and
   ``communication`` "off", "fixed" (each send interval) and "adaptive";
2. change: an adaptive fit whose links drop from unshaped to 10 Mbit/s in the
   middle; plots ``communication_history_`` over time.

Usage (from the repository root)::

    python benchmarks/netshape/netshape.py --quick            # root, minutes
    python benchmarks/netshape/netshape.py --quick --simulate # no root
    python benchmarks/netshape/netshape.py                    # full, ~30 min
    python benchmarks/netshape/netshape.py --cleanup-stale    # after a kill -9
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for path in (str(HERE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

import netns  # noqa: E402

QUICK = {
    "rows": 200_000,
    "links": "unshaped,10mbit",
    "intervals": "1024,65536",
    "change_after": 4.0,
}
FULL = {
    "rows": 1_500_000,
    "links": "unshaped,1gbit,100mbit,10mbit",
    "intervals": "256,1024,4096,16384,65536,262144",
    "change_after": 8.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage (from the repository root)::")[1],
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="no namespaces or tc: workers on 127.0.0.1, links from the "
        "exchange's link simulator (no root needed)",
    )
    p.add_argument("--quick", action="store_true", help=f"a few minutes: {QUICK}")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rows", type=int, help="rows of the data set")
    p.add_argument("--features", type=int, default=100_000)
    p.add_argument(
        "--classes",
        type=int,
        default=4,
        help="classes (one-vs-rest): the state is classes x (features+1)",
    )
    p.add_argument(
        "--links",
        help="comma-separated: unshaped, 10mbit, 100mbit, "
        "1gbit, or any tc rate like 50mbit; the first "
        "defines the target",
    )
    p.add_argument(
        "--latency",
        type=float,
        help="simulated latency (s) of every shaped link "
        f"(default per link: {json.dumps(_latencies())})",
    )
    p.add_argument("--intervals", help="comma-separated send intervals of 'fixed'")
    p.add_argument(
        "--target-epochs",
        type=int,
        default=3,
        help="the target is the objective of 'off' after this many "
        "epochs on the first link",
    )
    p.add_argument(
        "--slack",
        type=float,
        default=0.002,
        help="relative slack added to the target, so that a mode as good "
        "per epoch as 'off' is not failed by run-to-run noise",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        help="give up a mode after this many epochs (default target-epochs + 3)",
    )
    p.add_argument(
        "--cap",
        type=float,
        default=6.0,
        help="give up a mode once one fit took longer than CAP x the "
        "time to target of 'off' on that link",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fits per mode and epoch count; the median wall time counts",
    )
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--skip-change", action="store_true")
    p.add_argument(
        "--change-after",
        type=float,
        help="seconds into training at which the link changes",
    )
    p.add_argument("--change-to", default="10mbit")
    p.add_argument(
        "--out", type=Path, help="output folder (default: results/<time>-...)"
    )
    p.add_argument(
        "--cleanup-stale",
        action="store_true",
        help="delete namespaces left by runs of this tool that were "
        "killed with SIGKILL, then exit",
    )
    p.add_argument(
        "--report-only",
        type=Path,
        metavar="DIR",
        help="rebuild the tables and plot of an earlier sweep in DIR for "
        "another target (--slack or --target-value), without fitting",
    )
    p.add_argument(
        "--target-value",
        type=float,
        help="with --report-only: the target objective itself",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    # Internal: the driver, run inside the scheduler's namespace.
    p.add_argument("--driver-prefix", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.max_epochs is None:
        args.max_epochs = args.target_epochs + 3
    return args


def _latencies() -> dict[str, float]:
    from sweep import DEFAULT_LATENCY

    return DEFAULT_LATENCY


# ---------------------------------------------------------------------------
# Orchestrator (root): namespaces around a driver process


def orchestrate(args: argparse.Namespace, argv: list[str]) -> int:
    """Create the namespaces, run the driver inside the scheduler's, clean up."""
    if os.geteuid() != 0:
        print(
            "netshape: namespaces and tc need root; run as root or use --simulate",
            file=sys.stderr,
        )
        return 2
    stale = netns.stale_namespaces()
    if stale:
        print(
            f"netshape: namespaces of killed earlier runs exist: {stale}; "
            "remove them with --cleanup-stale",
            file=sys.stderr,
        )
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with netns.Topology(args.workers) as topology:
        print(f"netshape: namespaces {', '.join(topology.namespaces)}", flush=True)
        command = netns.in_netns(
            topology.scheduler_ns,
            [
                sys.executable,
                str(Path(__file__).resolve()),
                *argv,
                "--out",
                str(out),
                "--driver-prefix",
                topology.prefix,
            ],
        )
        driver = subprocess.Popen(command)
        try:
            code = driver.wait()
        finally:
            if driver.poll() is None:
                driver.terminate()
                try:
                    driver.wait(20)
                except subprocess.TimeoutExpired:
                    driver.kill()
    left = [n for n in netns.our_namespaces() if n.startswith(topology.prefix)]
    print(f"netshape: cleaned up; namespaces of this run left: {left or 'none'}")
    return code


# ---------------------------------------------------------------------------
# Driver: cluster, data, measurements, report


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.simulate = args.driver_prefix is None
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        self._log = open(self.out / "run.log", "a")

    def log(self, line: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        print(line, flush=True)
        self._log.write(f"{stamp} {line}\n")
        self._log.flush()

    # -------------------------------------------------------------- shaping
    def link_simulator(
        self, link, for_change: bool = False
    ) -> tuple[float | None, float]:
        """Bandwidth (bytes/s or None) and latency (s) of the simulator."""
        bandwidth = None
        if self.simulate:
            if for_change:
                # A simulator must exist to be changed: start "unshaped" as
                # 1 TB/s, changed through the running plugin later.
                bandwidth = 1e12
            elif link.bytes_per_second is not None:
                bandwidth = float(link.bytes_per_second)
        return bandwidth, float(link.latency)

    def shape(self, rate: str | None) -> None:
        """Set every worker's egress rate with tc (root mode only)."""
        if self.simulate:
            return
        for i in range(self.args.workers):
            netns.shape_device(f"{self.args.driver_prefix}w{i}", rate)

    def start_workers(self, cluster, link, for_change: bool = False) -> None:
        bandwidth, latency = self.link_simulator(link, for_change)
        if not for_change:
            self.shape(link.rate)
        else:
            self.shape(None)
        t = time.perf_counter()
        cluster.start_workers()
        cluster.install_link_simulator(bandwidth, latency)
        self.log(
            f"workers started for {link.name} in {time.perf_counter() - t:.1f} s "
            f"(simulator bandwidth {bandwidth or 'none'} B/s, latency {latency} s"
            + ("" if self.simulate else f", tc rate {link.rate or 'none'}")
            + ")"
        )
        if not self.simulate:
            for i in range(self.args.workers):
                q = netns.show_qdisc(f"{self.args.driver_prefix}w{i}").splitlines()
                self.log(f"  w{i} qdisc: {q[0] if q else '?'}")
        self.warm_up()
        self.probe_result_transfer(cluster)

    def probe_result_transfer(self, cluster) -> None:
        """Log how long state-sized results take to come back from the
        workers: the floor under every mode's time after training."""
        import numpy as np
        from distributed import wait

        client = cluster.client
        size = self.args.classes * (self.args.features + 1)
        workers = list(client.scheduler_info(n_workers=-1)["workers"])
        futures = [
            client.submit(np.zeros, size, workers=[w], pure=False) for w in workers
        ]
        wait(futures)
        seconds = []
        for chosen in (futures, futures[:1]):
            started = time.perf_counter()
            client.gather(chosen)
            seconds.append(time.perf_counter() - started)
        self.log(
            f"  a {size * 8 / 1e6:.1f} MB result from each of {len(workers)} "
            f"workers at once came back in {seconds[0]:.2f} s, from one in "
            f"{seconds[1]:.2f} s"
        )
        client.cancel(futures)

    def warm_up(self) -> None:
        """Untimed small fits: numba compilation, plugin registration."""
        import workload

        from dask_asgd import ASGDClassifier

        n = min(20_000, self.X.shape[0])
        for communication in ("off", "fixed", "adaptive"):
            try:
                ASGDClassifier(
                    max_iter=1,
                    communication=communication,
                    **workload.estimator_params(),
                ).fit(self.X[:n], self.y[:n])
            except Exception as e:
                self.log(
                    f"  warm-up fit ({communication}) failed: {type(e).__name__}: {e}"
                )

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        import workload
        from cluster import ProcessCluster
        from sweep import Runner, dump, make_link, make_modes

        args = self.args
        kind = (
            "simulate (link simulator on 127.0.0.1)"
            if self.simulate
            else f"root (namespaces {args.driver_prefix}*, tc tbf)"
        )
        self.log(f"netshape: {kind}; {args.workers} workers; output {self.out}")
        self.log(f"command: {' '.join(shlex.quote(a) for a in sys.argv)}")
        t = time.perf_counter()
        self.X, self.y = workload.make_data(args.rows, args.features, args.classes)
        state_mb = args.classes * (args.features + 1) * 8 / 1e6
        self.log(
            f"data: {args.rows} x {args.features} sparse CSR, {self.X.nnz} nonzeros "
            f"({(self.X.data.nbytes + self.X.indices.nbytes) / 1e6:.0f} MB), "
            f"{args.classes} classes one-vs-rest; state {state_mb:.1f} MB; "
            f"made in {time.perf_counter() - t:.1f} s"
        )
        links = [make_link(name, args.latency) for name in args.links.split(",")]
        modes = make_modes([int(i) for i in args.intervals.split(",")])
        runner = Runner(self.X, self.y, self.log, repeats=args.repeats)
        results = []
        target = math.nan
        status = 0
        with ProcessCluster(
            args.workers, self.out / "logs", args.driver_prefix
        ) as cluster:
            # Stop the worker processes also on signals and at exit. SIGINT
            # too: a shell starts background jobs with SIGINT ignored.
            atexit.register(cluster.close)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _exit_on_signal)
            cluster.start()
            if not args.skip_sweep:
                try:
                    _, results, target = self.sweep(cluster, runner, links, modes)
                finally:
                    dump(self.out / "fits.json", runner.fits)
                if results:
                    dump(
                        self.out / "sweep.json",
                        {
                            "target": target,
                            "target_base": target / (1 + args.slack),
                            "slack": args.slack,
                            "header": self.header(),
                            "title": self.title(target),
                            "results": results,
                        },
                    )
            if not args.skip_change:
                try:
                    self.change(cluster, runner)
                except Exception as e:
                    self.log(f"the change run failed: {type(e).__name__}: {e}")
                    status = 1
                finally:
                    dump(self.out / "fits.json", runner.fits)
        self.log(f"done; results in {self.out}")
        return status

    def sweep(self, cluster, runner, links, modes):
        import report

        args = self.args
        results = []
        target = math.nan
        off_mode = modes[0]
        for index, link in enumerate(links):
            self.log(
                f"== link {link.name} (rate {link.rate or 'unshaped'}, "
                f"latency {link.latency * 1e3:g} ms)"
            )
            self.start_workers(cluster, link)
            if index == 0:
                self.log(
                    f"  target: objective of 'off' after {args.target_epochs} epochs"
                    f" x (1 + {args.slack})"
                )
                fit, _ = runner.fit(link, off_mode, args.target_epochs)
                if not math.isfinite(fit.objective):
                    raise RuntimeError(f"the target fit failed: {fit.error}")
                target = fit.objective * (1 + args.slack)
                self.log(
                    f"  'off' after {args.target_epochs} epochs: "
                    f"{fit.objective:.5f} ({fit.wall:.1f} s); target {target:.5f}"
                )
            off = runner.time_to_target(
                link, off_mode, target, args.max_epochs, math.inf
            )
            results.append(off)
            cap = args.cap * off.wall if off.reached else math.inf
            for mode in modes[1:]:
                results.append(
                    runner.time_to_target(link, mode, target, args.max_epochs, cap)
                )
            # Partial results survive an interrupted sweep.
            (self.out / "sweep.md").write_text(
                report.tables(results, target, self.header())
            )
        header = self.header()
        text = report.tables(results, target, header)
        (self.out / "sweep.md").write_text(text)
        self.log("\n" + text)
        report.plot_sweep(results, self.out / "time_to_target.png", self.title(target))
        self.log(f"wrote {self.out / 'sweep.md'} and {self.out / 'time_to_target.png'}")
        return header, results, target

    def title(self, target: float) -> str:
        args = self.args
        return (
            f"{'simulated' if self.simulate else 'tc tbf'} links, "
            f"{args.workers} workers, {args.rows} x {args.features} sparse, "
            f"{args.classes} classes; target objective {target:.4f}"
        )

    def header(self) -> str:
        a = self.args
        kind = (
            "link simulator only (--simulate)"
            if self.simulate
            else "network namespaces + tc tbf on each worker's egress"
        )
        return (
            f"## netshape sweep: {kind}\n\n"
            f"{a.workers} `dask worker --nthreads 1`; data {a.rows} x {a.features} "
            f"sparse, {a.classes} classes (log_loss one-vs-rest, alpha "
            f"{__import__('workload').ALPHA}); state "
            f"{a.classes * (a.features + 1) * 8 / 1e6:.1f} MB; latency per link: "
            f"{a.latency if a.latency is not None else _latencies()} s; "
            f"{datetime.now():%Y-%m-%d %H:%M}"
        )

    def change(self, cluster, runner) -> None:
        import report
        from sweep import make_link, run_change

        args = self.args
        link_to = make_link(args.change_to, args.latency)
        self.log(
            f"== bandwidth change: unshaped -> {link_to.name} after "
            f"{args.change_after} s of training (adaptive; latency "
            f"{link_to.latency * 1e3:g} ms throughout)"
        )
        self.start_workers(cluster, link_to, for_change=True)
        # Size the fit so that it runs about 3x change_after: measure an epoch.
        from sweep import Mode

        _, model = runner.fit(
            make_link("unshaped"), Mode("adaptive", {"communication": "adaptive"}), 3
        )
        epoch = 1.0
        if model is not None:
            epoch = float(model.history_.groupby("epoch")["seconds"].max().min())
        max_iter = max(4, math.ceil(2.5 * args.change_after / max(epoch, 0.02)))
        self.log(
            f"  the fastest of 3 epochs took {epoch:.2f} s unshaped: "
            f"max_iter={max_iter}"
        )

        if self.simulate:
            bandwidth = link_to.bytes_per_second

            def apply_change() -> None:
                from sweep import _set_simulated_bandwidth

                done = cluster.client.run(_set_simulated_bandwidth, bandwidth=bandwidth)
                if not all(done.values()):
                    raise RuntimeError(f"no link simulator on some workers: {done}")
        else:

            def apply_change() -> None:
                self.shape(link_to.rate)

        if self.simulate:

            def reset() -> None:
                from sweep import _set_simulated_bandwidth

                cluster.client.run(_set_simulated_bandwidth, bandwidth=1e12)
        else:

            def reset() -> None:
                self.shape(None)

        note = ""
        run = run_change(
            cluster.client,
            runner,
            link_to,
            args.change_after,
            max_iter,
            apply_change,
            reset,
            self.log,
            attempts=3,
        )
        run.control.to_csv(self.out / "change_control.csv", index=False)
        run.history.to_csv(self.out / "change_history.csv", index=False)
        with open(self.out / "change.json", "w") as f:
            json.dump(
                {
                    "change_at": run.change_at,
                    "wall": run.wall,
                    "objective": run.objective,
                    "max_iter": max_iter,
                    "failed_attempts": run.failures,
                    "note": note,
                    "from": run.change_from,
                    "to": run.change_to,
                },
                f,
                indent=1,
            )
        title = (
            f"adaptive fit, {'simulated' if self.simulate else 'tc tbf'} links: "
            f"unshaped -> {report._pretty(link_to.name)} at the dashed line "
            f"({args.workers} workers, state "
            f"{args.classes * (args.features + 1) * 8 / 1e6:.1f} MB"
            + (f"; {note}" if note else "")
            + ")"
        )
        report.plot_change(run, self.out / "change.png", title)
        summary = run.control[
            ["worker", "time", "send_interval", "message_size", "reason"]
        ].to_string(index=False)
        self.log(
            f"  fit: {run.wall:.1f} s, objective {run.objective:.5f}; change at "
            + ", ".join(f"{v:.2f} s" for v in run.change_at.values())
            + f"\n{summary}"
        )
        self.log(f"wrote {self.out / 'change.png'}")


def report_only(args: argparse.Namespace) -> int:
    """Tables and plot of an earlier sweep for another target (no fitting)."""
    import report

    folder = args.report_only
    data = json.loads((folder / "sweep.json").read_text())
    base = data.get("target_base") or data["target"] / 1.002
    target = (
        args.target_value if args.target_value is not None else base * (1 + args.slack)
    )
    if target < data["target"] * (1 - 1e-9):
        print(
            f"netshape: {target:.5f} is stricter than the sweep's target "
            f"{data['target']:.5f}: modes may show as not reached only because "
            "their search stopped",
            file=sys.stderr,
        )
    results = report.retarget(data["results"], target)
    same = abs(target - data["target"]) <= 1e-9 * data["target"]
    header = data.get("header", "## netshape sweep")
    if not same:
        header += (
            f"\n\nRecomputed from the recorded fits for target {target:.5f} "
            f"(the run's target was {data['target']:.5f}; 'off' after the "
            f"target epochs: {base:.5f})."
        )
    text = report.tables(results, target, header)
    title = data.get("title", "netshape sweep").rsplit("; target", 1)[0]
    # The run's own target: redraw its table and plot in place.
    name = f"retarget-{target:.5f}"
    md, png = (
        (folder / "sweep.md", folder / "time_to_target.png")
        if same
        else (folder / f"{name}.md", folder / f"{name}.png")
    )
    md.write_text(text)
    report.plot_sweep(results, png, f"{title}; target objective {target:.4f}")
    print(text)
    print(f"wrote {md} and {png}")
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(f"netshape: got signal {signum}, stopping")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.cleanup_stale:
        removed = netns.remove_stale()
        print(f"netshape: removed {removed or 'nothing'}")
        return 0
    if args.report_only is not None:
        return report_only(args)
    if args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        suffix = ("simulate" if args.simulate else "root") + (
            "-quick" if args.quick else ""
        )
        args.out = HERE / "results" / f"{stamp}-{suffix}"
    if args.driver_prefix is not None or args.simulate:
        return Driver(args).run()
    return orchestrate(args, argv)


if __name__ == "__main__":
    sys.exit(main())
