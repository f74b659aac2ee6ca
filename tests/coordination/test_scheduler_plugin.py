"""The scheduler plugin on an in-process cluster (gen_cluster)."""

from __future__ import annotations

import asyncio
import contextlib
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


async def start(c, fit_id, members, **rules):
    return await c.scheduler.asgd_fit_start(
        fit_id=fit_id, members=members, limits=LIMITS, **rules
    )


async def report(server, fit_id, token, member, epoch, values=None, timeout=5):
    """An epoch report through ``server``'s line to the scheduler."""
    return await server.scheduler.asgd_epoch_report(
        fit_id=fit_id,
        token=token,
        member=member,
        epoch=epoch,
        values=values or {"n": 1.0},
        timeout=timeout,
    )


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
    token = await c.scheduler.asgd_fit_start(
        fit_id="fit-1",
        members=[a.address, b.address],
        limits={**LIMITS, "min_send_interval": 512},
    )
    assert plugin.fits["fit-1"].members == {a.address: a.address, b.address: b.address}

    answer = await a.scheduler.asgd_balance(
        fit_id="fit-1",
        token=token,
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
        report(a, "fit-1", token, a.address, 0, {"loss": 1.5}),
        report(b, "fit-1", token, b.address, 0, {"loss": 2.0}),
    )
    assert first == second == {"status": "ok", "totals": {"loss": 3.5}}

    # A stranger is refused.
    foreign = await c.scheduler.asgd_balance(
        fit_id="fit-1",
        token=token,
        member="tcp://nowhere:1",
        signals=SIGNALS,
        settings=CURRENT,
    )
    assert foreign["status"] == "aborted"

    await c.scheduler.asgd_fit_end(fit_id="fit-1", token=token)
    assert plugin.fits == {}


@gen_cluster(client=True, nthreads=[("", 1), ("", 1)])
async def test_worker_leaving_aborts_a_fit_that_does_not_replace(c, s, a, b):
    await install(c)
    token = await start(c, "fit-2", [a.address, b.address])
    waiting = asyncio.ensure_future(report(a, "fit-2", token, a.address, 0, timeout=30))
    await async_poll_for(lambda: s.plugins["asgd"].fits["fit-2"].reports[0], timeout=5)
    await b.close()
    answer = await asyncio.wait_for(waiting, 5)
    assert answer == {"status": "aborted", "reason": f"worker {b.address} left"}
    events = [event for _, event in s.get_events("asgd")]
    assert {"action": "worker-lost", "fit_id": "fit-2", "worker": b.address} in events
    ended = await c.scheduler.asgd_fit_end(fit_id="fit-2", token=token)
    assert ended["abort"]["kind"] == "worker-lost"
    assert ended["abort"]["worker"] == b.address


@gen_cluster(client=True, nthreads=[("", 1), ("", 1), ("", 1)])
async def test_a_lost_member_leaves_and_a_newcomer_joins_the_barrier(c, s, a, b, w):
    await install(c)
    members = [a.address, b.address, w.address]
    token = await start(c, "fit-5", members, replace_lost=True)
    fit = s.plugins["asgd"].fits["fit-5"]
    first = await asyncio.gather(
        *(report(x, "fit-5", token, x.address, 0, {"n": 1.0}) for x in (a, b, w))
    )
    assert all(answer["totals"] == {"n": 3.0} for answer in first)
    # Epoch 1: ``w`` reports, then leaves before the barrier completes; ``a``
    # and ``b`` are answered with their own sums, without ``w``'s report.
    reported = asyncio.ensure_future(report(a, "fit-5", token, a.address, 1))
    leaving = asyncio.ensure_future(report(w, "fit-5", token, w.address, 1, {"n": 5}))
    await async_poll_for(lambda: len(fit.reports[1]) == 2, timeout=5)
    await w.close()
    with contextlib.suppress(Exception):  # its line closed with it
        await leaving
    answers = await asyncio.gather(
        reported, report(b, "fit-5", token, b.address, 1, {"n": 1.0})
    )
    assert [answer["totals"] for answer in answers] == [{"n": 2.0}, {"n": 2.0}]
    progress = await c.scheduler.asgd_progress(fit_id="fit-5", token=token, since=0)
    [departure] = progress["departures"]
    assert departure["worker"] == w.address
    assert list(departure["members"]) == [w.address]
    # A newcomer on ``a`` joins from epoch 2, with the sums it missed.
    joined = await c.scheduler.asgd_fit_join(
        fit_id="fit-5", token=token, member="new", worker=a.address
    )
    assert joined["first_epoch"] == 2
    assert list(joined["replay"]) == [{"n": 3.0}, {"n": 2.0}]
    answers = await asyncio.gather(
        report(a, "fit-5", token, a.address, 2, {"n": 1.0}),
        report(b, "fit-5", token, b.address, 2, {"n": 1.0}),
        report(a, "fit-5", token, "new", 2, {"n": 1.0}),
    )
    assert all(answer["totals"] == {"n": 3.0} for answer in answers)
    # Losing every member gives the fit up.
    await b.close()
    await a.close()
    ended = await c.scheduler.asgd_fit_end(fit_id="fit-5", token=token)
    assert ended["abort"]["kind"] == "worker-lost"


@gen_cluster(client=True, nthreads=[("", 1), ("", 1)])
async def test_calls_without_the_token_are_refused_and_change_nothing(c, s, a, b):
    await install(c)
    token = await start(c, "fit-6", [a.address, b.address])
    forged = "x" * len(token)
    # Another client that read the fit's id from its task keys cannot end
    # it, report for a member (a non-finite report would end it), join it,
    # or read it.
    refused = [
        await c.scheduler.asgd_fit_end(fit_id="fit-6", token=forged),
        await c.scheduler.asgd_fit_end(fit_id="fit-6"),
        await report(c, "fit-6", forged, a.address, 0, {"nonfinite": 1.0}),
        await c.scheduler.asgd_heartbeat(
            fit_id="fit-6", token=forged, member=a.address
        ),
        await c.scheduler.asgd_fit_join(
            fit_id="fit-6", token=forged, member="m", worker=a.address
        ),
    ]
    assert all(answer["status"] == "refused" for answer in refused), refused
    progress = await c.scheduler.asgd_progress(fit_id="fit-6", token=forged, since=0)
    assert not progress["departures"] and progress["abort"] is None
    fit = s.plugins["asgd"].fits["fit-6"]
    assert fit.abort is None and dict(fit.reports) == {}
    answers = await asyncio.gather(
        report(a, "fit-6", token, a.address, 0, {"loss": 1.0}),
        report(b, "fit-6", token, b.address, 0, {"loss": 1.0}),
    )
    assert all(answer["totals"] == {"loss": 2.0} for answer in answers)
    await c.scheduler.asgd_fit_end(fit_id="fit-6", token=token)


@gen_cluster(client=True, nthreads=[("", 1), ("", 1)])
async def test_a_non_finite_report_aborts_at_once_naming_worker_and_cause(c, s, a, b):
    await install(c)
    for fit_id, values, kind, cause in [
        ("fit-7", {"nonfinite": 1.0, "nonfinite_peer": 0.0}, "own", "its own steps"),
        ("fit-8", {"nonfinite": 1.0, "nonfinite_peer": 1.0}, "peer", "from a peer"),
    ]:
        token = await start(c, fit_id, [a.address, b.address])
        waiting = asyncio.ensure_future(report(a, fit_id, token, a.address, 0))
        answer = await report(b, fit_id, token, b.address, 0, values)
        assert answer["status"] == "aborted"
        assert b.address in answer["reason"] and cause in answer["reason"]
        # The member waiting at the barrier is released at once.
        assert (await asyncio.wait_for(waiting, 5))["status"] == "aborted"
        ended = await c.scheduler.asgd_fit_end(fit_id=fit_id, token=token)
        assert ended["abort"]["kind"] == f"nonfinite-{kind}"
        assert ended["abort"]["worker"] == b.address


@gen_cluster(client=True, nthreads=[("", 1), ("", 1)])
async def test_a_silent_member_ends_the_fit_long_before_the_epoch_timeout(c, s, a, b):
    await install(c)
    token = await start(c, "fit-9", [a.address, b.address], liveness_timeout=0.5)
    # ``b`` has started (one heartbeat), then falls silent.
    await b.scheduler.asgd_heartbeat(fit_id="fit-9", token=token, member=b.address)
    answer = await asyncio.wait_for(
        report(a, "fit-9", token, a.address, 0, timeout=60), 30
    )
    assert answer["status"] == "aborted"
    assert "sent no heartbeat" in answer["reason"] and b.address in answer["reason"]
    ended = await c.scheduler.asgd_fit_end(fit_id="fit-9", token=token)
    assert ended["abort"]["kind"] == "silent"
    assert ended["abort"]["worker"] == b.address


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_epoch_timeout_aborts(c, s, a):
    await install(c)
    token = await start(c, "fit-3", [a.address])
    s.plugins["asgd"].fits["fit-3"].members["tcp://missing:1"] = "tcp://missing:1"
    answer = await report(a, "fit-3", token, a.address, 0, timeout=0.2)
    assert answer["status"] == "aborted"
    assert "did not report" in answer["reason"]


# No memory limit: the workers' own monitors would resume a worker paused here.
@gen_cluster(
    client=True, nthreads=[("", 1), ("", 1)], worker_kwargs={"memory_limit": 0}
)
async def test_epoch_timeout_names_workers_paused_by_memory(c, s, a, b):
    await install(c)
    token = await start(c, "fit-4", [a.address, b.address])
    # What the memory monitor does when a worker's memory passes its pause
    # threshold; the scheduler hears of it and marks the worker paused.
    b.status = Status.paused
    await async_poll_for(lambda: s.workers[b.address].status == Status.paused, 5)
    answer = await report(a, "fit-4", token, a.address, 0, timeout=0.2)
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
