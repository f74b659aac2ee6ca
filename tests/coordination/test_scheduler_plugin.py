"""The scheduler plugin on an in-process cluster (gen_cluster)."""

from __future__ import annotations

import asyncio
import dataclasses

from distributed.core import Status
from distributed.protocol.pickle import dumps
from distributed.utils_test import async_poll_for, gen_cluster

from dask_asgd import _config
from dask_asgd.balancing import Settings, WorkerSignals
from dask_asgd.coordination import ASGDSchedulerPlugin
from dask_asgd.runtime import policy_limits

#: The balancer's bounds as the driver sends them, from the packaged config.
LIMITS = dataclasses.asdict(policy_limits(_config.load().balancing))

SIGNALS = dataclasses.asdict(
    WorkerSignals(
        samples_per_second=4e6,
        exchange_seconds=0.0005,
        send_latency=0.2,  # a slow link for an 8 MB state
        published=20,
        received=20,
        state_bytes=8 * 1024 * 1024,
    )
)
CURRENT = dataclasses.asdict(Settings(send_interval=4096, message_size=1.0))


async def install(c):
    await c.scheduler.register_scheduler_plugin(
        plugin=dumps(ASGDSchedulerPlugin()), name="asgd", idempotent=True
    )


@gen_cluster(client=True, nthreads=[("", 1), ("", 1)])
async def test_membership_stats_in_settings_out(c, s, a, b):
    await install(c)
    await install(c)  # idempotent: the same plugin object stays
    plugin = s.plugins["asgd"]
    assert {"asgd_fit_start", "asgd_epoch_report", "asgd_balance"} <= set(s.handlers)
    await c.scheduler.asgd_fit_start(
        fit_id="fit-1",
        members=[a.address, b.address],
        limits={**LIMITS, "min_send_interval": 512},
    )
    assert plugin.fits["fit-1"].members == {a.address, b.address}

    answer = await a.scheduler.asgd_balance(
        fit_id="fit-1",
        member=a.address,
        signals=SIGNALS,
        settings=CURRENT,
    )
    assert answer["status"] == "ok"
    decided = Settings(**answer["settings"])
    # 0.2 s per message: the law sends smaller messages less often.
    assert decided.message_size < 1.0 or decided.send_interval > 4096
    assert decided.send_interval >= 512
    events = [event for _, event in s.get_events("asgd")]
    assert any(
        e.get("action") == "settings" and e["worker"] == a.address for e in events
    )

    # The epoch barrier sums the members' values and answers both.
    first, second = await asyncio.gather(
        a.scheduler.asgd_epoch_report(
            fit_id="fit-1", member=a.address, epoch=0, values={"loss": 1.5}, timeout=5
        ),
        b.scheduler.asgd_epoch_report(
            fit_id="fit-1", member=b.address, epoch=0, values={"loss": 2.0}, timeout=5
        ),
    )
    assert first == second == {"status": "ok", "totals": {"loss": 3.5}}

    # A stranger is refused.
    foreign = await c.scheduler.asgd_balance(
        fit_id="fit-1",
        member="tcp://nowhere:1",
        signals=SIGNALS,
        settings=CURRENT,
    )
    assert foreign["status"] == "aborted"

    await c.scheduler.asgd_fit_end(fit_id="fit-1")
    assert plugin.fits == {}


@gen_cluster(client=True, nthreads=[("", 1), ("", 1)])
async def test_worker_leaving_aborts_the_fit(c, s, a, b):
    await install(c)
    await c.scheduler.asgd_fit_start(
        fit_id="fit-2", members=[a.address, b.address], limits=LIMITS
    )
    waiting = asyncio.ensure_future(
        a.scheduler.asgd_epoch_report(
            fit_id="fit-2", member=a.address, epoch=0, values={"loss": 1.0}, timeout=30
        )
    )
    await async_poll_for(lambda: s.plugins["asgd"].fits["fit-2"].reports[0], timeout=5)
    await b.close()
    answer = await asyncio.wait_for(waiting, 5)
    assert answer == {"status": "aborted", "reason": f"worker-lost:{b.address}"}
    events = [event for _, event in s.get_events("asgd")]
    assert {"action": "worker-lost", "fit_id": "fit-2", "worker": b.address} in events
    await c.scheduler.asgd_fit_end(fit_id="fit-2")


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_epoch_timeout_aborts(c, s, a):
    await install(c)
    await c.scheduler.asgd_fit_start(fit_id="fit-3", members=[a.address], limits=LIMITS)
    s.plugins["asgd"].fits["fit-3"].members.add("tcp://missing:1")
    answer = await a.scheduler.asgd_epoch_report(
        fit_id="fit-3", member=a.address, epoch=0, values={"loss": 1.0}, timeout=0.2
    )
    assert answer["status"] == "aborted"
    assert "did not report" in answer["reason"]


# No memory limit: the workers' own monitors would resume a worker paused here.
@gen_cluster(
    client=True, nthreads=[("", 1), ("", 1)], worker_kwargs={"memory_limit": 0}
)
async def test_epoch_timeout_names_workers_paused_by_memory(c, s, a, b):
    await install(c)
    await c.scheduler.asgd_fit_start(
        fit_id="fit-4", members=[a.address, b.address], limits=LIMITS
    )
    # What the memory monitor does when a worker's memory passes its pause
    # threshold; the scheduler hears of it and marks the worker paused.
    b.status = Status.paused
    await async_poll_for(lambda: s.workers[b.address].status == Status.paused, 5)
    answer = await a.scheduler.asgd_epoch_report(
        fit_id="fit-4", member=a.address, epoch=0, values={"loss": 1.0}, timeout=0.2
    )
    assert answer["status"] == "aborted"
    assert f"['{b.address}'] are paused by their memory monitor" in answer["reason"]
    b.status = Status.running


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_closing_the_plugin_removes_its_handlers(c, s, a):
    await install(c)

    async def remove(dask_scheduler):
        plugin = dask_scheduler.plugins["asgd"]
        await plugin.close()
        dask_scheduler.remove_plugin(name="asgd")

    await c.run_on_scheduler(remove)
    assert not [name for name in s.handlers if name.startswith("asgd_")]
