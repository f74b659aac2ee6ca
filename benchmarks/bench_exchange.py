"""Throughput of the exchange layer's push against a raw distributed rpc call.

Two process workers on one host. Worker A's task sends ``n`` messages of one
payload size to worker B in three ways, back to back in each repeat (the
order rotates from repeat to repeat):

* ``ours``: ``Endpoint.publish(arr)`` from the task thread (snapshot copy,
  in-flight bound, send on the loop) into B's mailbox, drained by B's task;
* ``ours, copy=False``: the same without the snapshot, as the training loop
  publishes a freshly packed array that nobody writes to any more;
* ``raw``: ``worker.rpc(B).bench_raw_receive(x=to_serialize(arr))`` started
  from the task thread with ``asyncio.run_coroutine_threadsafe``, into a
  handler that only records the arrival.

Every mode keeps at most ``window`` messages in flight (the sender polls the
count, so all pay the same waiting). Arrival times are taken on the receiver;
throughput is ``n / (last arrival - first send)`` and the one-way latency is
``arrival - send`` per message (one host: one clock). Ratios are taken within
each repeat, where the modes ran seconds apart under the same load, and the
median over repeats is reported. Run::

    PYTHONPATH=. python benchmarks/bench_exchange.py
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from dask.utils import parse_bytes
from distributed import Client, Event, LocalCluster, get_worker, secede
from distributed.protocol import to_serialize

from dask_asgd import _config
from dask_asgd.exchange import PLUGIN_NAME, ExchangeWorkerPlugin, TopicSpec, join_topic

RAW_HANDLER = "bench_raw_receive"
MODES = ("ours", "nocopy", "raw")
#: Messages per round by payload size: about 0.1-0.3 s of sending each; many
#: short rounds beat few long ones on a shared, noisy host.
DEFAULT_MESSAGES = {8_000: 500, 800_000: 150, 8_000_000: 30}

Arrival = tuple[float, float, str]  # (arrived, sent, round id)


def install_raw_handler(dask_worker: Any) -> None:
    """Install the baseline handler: record the arrival, drop the payload."""
    arrivals: list[Arrival] = []
    dask_worker._bench_raw_arrivals = arrivals

    def bench_raw_receive(x: Any, sent_at: float, round_id: str) -> dict[str, str]:
        arrivals.append((time.time(), sent_at, round_id))
        return {"status": "OK"}

    dask_worker.handlers[RAW_HANDLER] = bench_raw_receive


def remove_raw_handler(dask_worker: Any) -> list[Arrival]:
    """Remove the baseline handler and return what it recorded."""
    dask_worker.handlers.pop(RAW_HANDLER, None)
    return dask_worker._bench_raw_arrivals


def topic_spec(topic: str, **settings: Any) -> TopicSpec:
    """The exchange settings a fit would use (``asgd.exchange.*``), overridden."""
    config = _config.load().exchange
    spec = TopicSpec(
        topic=topic,
        mailbox_slots=config.mailbox_slots,
        max_in_flight=config.max_in_flight,
        send_timeout=config.send_timeout,
        min_bandwidth=config.min_bandwidth,
    )
    return dataclasses.replace(spec, **settings)


def receiver(spec: TopicSpec, peers: list[str]) -> list[Arrival]:
    """B's task: drain the mailbox like a training loop until told to stop."""
    secede()
    stop = Event(f"{spec.topic}-stop")
    records: list[Arrival] = []
    with join_topic(spec, peers) as endpoint:
        Event(f"{spec.topic}-ready").set()
        last_check = time.monotonic()
        while True:
            for message in endpoint.receive():
                records.append(
                    (message.received_at, message.sent_at, message.metadata["round"])
                )
            now = time.monotonic()
            if now - last_check > 0.05:  # the Event costs a scheduler round trip
                last_check = now
                if stop.is_set():
                    break
            # Arrival times are taken by the handler, so the drain cadence
            # does not enter the figures; a slow one leaves the CPUs to the
            # senders and loops (a 2-core host has none to spare).
            time.sleep(0.001)
        records.extend(
            (m.received_at, m.sent_at, m.metadata["round"]) for m in endpoint.receive()
        )
        lost = endpoint.stats()["lost"]
    if lost:
        raise RuntimeError(f"{lost} messages were overwritten: raise the slots")
    return records


def _wait_below(count: Callable[[], int], limit: int) -> None:
    # Polls the in-flight count (a GIL-releasing sleep), as a training loop
    # would look at it between minibatches; every mode waits the same way.
    while count() >= limit:
        time.sleep(50e-6)


def sender(
    spec: TopicSpec,
    peer: str,
    sizes: list[int],
    messages: dict[int, int],
    window: int,
    repeats: int,
) -> list[dict[str, Any]]:
    """A's task: send every round in every mode, rotating the order."""
    secede()
    worker = get_worker()
    loop = worker.loop.asyncio_loop  # type: ignore[attr-defined]
    Event(f"{spec.topic}-ready").wait(30)
    rounds: list[dict[str, Any]] = []
    with join_topic(spec, [peer]) as endpoint:
        outstanding = [0]
        lock = threading.Lock()

        def raw_done(_: Any) -> None:
            with lock:
                outstanding[0] -= 1

        def send_raw(arr: np.ndarray, n: int, round_id: str) -> None:
            for _ in range(n):
                _wait_below(lambda: outstanding[0], window)
                with lock:
                    outstanding[0] += 1
                call = worker.rpc(peer).bench_raw_receive(
                    x=to_serialize(arr), sent_at=time.time(), round_id=round_id
                )
                future = asyncio.run_coroutine_threadsafe(call, loop)
                future.add_done_callback(raw_done)
            _wait_below(lambda: outstanding[0], 1)

        def send_ours(arr: np.ndarray, n: int, round_id: str, copy: bool) -> None:
            for _ in range(n):
                _wait_below(lambda: endpoint.in_flight, window)
                if not endpoint.publish(arr, {"round": round_id}, copy=copy):
                    raise RuntimeError("dropped although below the in-flight bound")
            _wait_below(lambda: endpoint.in_flight, 1)

        send = {
            "ours": lambda arr, n, rid: send_ours(arr, n, rid, True),
            "nocopy": lambda arr, n, rid: send_ours(arr, n, rid, False),
            "raw": send_raw,
        }
        for size in sizes:
            arr = np.random.default_rng(0).random(size // 8)
            n = messages[size]
            for mode in MODES:  # warm-up: connections, allocator, first calls
                send[mode](arr, max(5, n // 10), f"warmup-{mode}-{size}")
            for rep in range(repeats):
                shift = rep % len(MODES)
                for mode in MODES[shift:] + MODES[:shift]:
                    round_id = f"{mode}-{size}-{rep}"
                    send[mode](arr, n, round_id)
                    rounds.append(
                        {"round": round_id, "mode": mode, "repeat": rep, "size": size}
                    )
                    rounds[-1]["n"] = n
        stats = endpoint.stats()
    if stats["failed"] or stats["dropped"]:
        raise RuntimeError(f"exchange errors during the benchmark: {stats}")
    return rounds


def summarize(
    rounds: list[dict[str, Any]], arrivals: list[Arrival]
) -> list[dict[str, Any]]:
    """Per size and mode: median msg/s, MB/s, one-way latency; paired ratios."""
    by_round: dict[str, list[tuple[float, float]]] = {}
    for arrived, sent, round_id in arrivals:
        by_round.setdefault(round_id, []).append((arrived, sent))
    measured: dict[tuple[int, int], dict[str, tuple[float, float]]] = {}
    for info in rounds:
        records = by_round.get(info["round"], [])
        if len(records) != info["n"]:
            raise RuntimeError(
                f"round {info['round']}: {len(records)} of {info['n']} arrived"
            )
        first_sent = min(sent for _, sent in records)
        last_arrival = max(arrived for arrived, _ in records)
        rate = info["n"] / (last_arrival - first_sent)
        one_way = statistics.median(arrived - sent for arrived, sent in records)
        key = (info["size"], info["repeat"])
        measured.setdefault(key, {})[info["mode"]] = (rate, one_way)
    rows = []
    for size in sorted({size for size, _ in measured}):
        repeats = [modes for (sz, _), modes in sorted(measured.items()) if sz == size]
        row: dict[str, Any] = {"size": size, "repeats": len(repeats)}
        for mode in MODES:
            rate = statistics.median(r[mode][0] for r in repeats)
            row[mode] = {
                "msg_s": rate,
                "mb_s": rate * size / 1e6,
                "one_way_ms": statistics.median(r[mode][1] for r in repeats) * 1e3,
            }
        for mode in ("ours", "nocopy"):
            # Time per payload against raw rpc, within each repeat; goal <= 1.5.
            ratios = [r["raw"][0] / r[mode][0] for r in repeats]
            quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else []
            row[f"{mode}_ratio"] = statistics.median(ratios)
            row[f"{mode}_iqr"] = (
                (quartiles[0], quartiles[-1]) if quartiles else (ratios[0],) * 2
            )
        rows.append(row)
    return rows


def _label(size: int) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the summary."""
    lines = [
        "| payload | ours msg/s (MB/s) | ours copy=False msg/s (MB/s) "
        "| raw rpc msg/s (MB/s) | time ratio ours/raw, median (IQR) "
        "| copy=False/raw | one-way p50 ours / copy=False / raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row[mode]['msg_s']:,.0f} ({row[mode]['mb_s']:,.0f})" for mode in MODES
        ]
        low, high = row["ours_iqr"]
        latency = " / ".join(f"{row[mode]['one_way_ms']:.2f}" for mode in MODES)
        lines.append(
            f"| {_label(row['size'])} | {' | '.join(cells)} "
            f"| {row['ours_ratio']:.2f} ({low:.2f}-{high:.2f}) "
            f"| {row['nocopy_ratio']:.2f} | {latency} ms |"
        )
    return "\n".join(lines)


def run(
    sizes: list[int], window: int, repeats: int, scale: float
) -> list[dict[str, Any]]:
    """Start the cluster, run the sender and receiver tasks, summarize."""
    messages = {
        size: max(10, int(DEFAULT_MESSAGES.get(size, 100) * scale)) for size in sizes
    }
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(ExchangeWorkerPlugin(), name=PLUGIN_NAME)
        a, b = sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])
        client.run(install_raw_handler, workers=[b])
        topic = f"bench-{time.time_ns()}"
        slots = 2 * max(messages.values()) + 10  # the receiver must lose nothing
        received = client.submit(
            receiver,
            topic_spec(topic, mailbox_slots=slots),
            [a, b],
            workers=[b],
            pure=False,
        )
        rounds = client.submit(
            sender,
            topic_spec(topic, max_in_flight=window, send_timeout=60.0),
            b,
            sizes,
            messages,
            window,
            repeats,
            workers=[a],
            pure=False,
        ).result()
        Event(f"{topic}-stop", client=client).set()
        ours = received.result()
        raw = client.run(remove_raw_handler, workers=[b])[b]
        client.unregister_worker_plugin(PLUGIN_NAME)
    return summarize(rounds, [*ours, *raw])


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["8kB", "800kB", "8MB"])
    parser.add_argument(
        "--window", type=int, nargs="+", default=[1, 2], help="messages in flight"
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the messages per round"
    )
    args = parser.parse_args()
    sizes = [int(parse_bytes(size)) for size in args.sizes]
    print(f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()}")
    for window in args.window:
        rows = run(sizes, window, args.repeats, args.scale)
        print(
            f"\nwindow = {window} message(s) in flight (max_in_flight), "
            f"{args.repeats} repeats"
        )
        print(format_table(rows))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
