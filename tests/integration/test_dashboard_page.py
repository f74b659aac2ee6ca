"""The ``/asgd`` dashboard page in a real headless Chromium, during a real fit.

Chromium is Debian's ``chromium`` package (CI installs it); Playwright drives
it without downloading a browser of its own.

The test looks at the page while the fit is certainly running, however fast
the machine: once every worker has reported an epoch and a balancing report,
the scheduler's epoch-report handler (the real one) holds the next reports
until the test has seen the page; the fit then trains on to its end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import threading

import pytest
from distributed import Client
from distributed.utils_test import poll_for
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier, _config
from dask_asgd.backends import install_plugins, remove_plugins
from dask_asgd.coordination._dashboard import PAGE_PATH

pytest.importorskip("bokeh", reason="Dask's dashboard needs bokeh")

# Needs bokeh: imported after the skip.
from dask_asgd.coordination._dashboard_document import (
    EXCHANGE_FIGURES,
    LOSS_TITLE,
)

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; CI installs it)",
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: What the page's Bokeh document holds, as the browser has it.
READ_PAGE = """() => {
  const doc = window.Bokeh && Bokeh.documents.length && Bokeh.documents[0];
  if (!doc) return null;
  const titles = [], lines = {}, status = [];
  for (const model of doc._all_models.values()) {
    if (model.type === "Figure") titles.push(model.title.text);
    if (model.name && model.name.startsWith("asgd-") && model.data) {
      lines[model.name] = model.data.xs
        ? {workers: model.data.worker, points: model.data.xs.map(x => x.length)}
        : {workers: ["all"], points: [model.data.time.length]};
    }
    if (model.type === "Div") status.push(model.text);
  }
  return {titles, lines, status: status.join(" ")};
}"""

TIMEOUT = 60


def read_page(page) -> dict:
    return page.evaluate(READ_PAGE) or {"titles": [], "lines": {}, "status": ""}


def running_fits(client) -> list[str]:
    return client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.plugins["asgd"].fits)
    )


def page_callbacks(application) -> list:
    """The periodic callbacks of every document of the page on the scheduler."""
    return [
        callback
        for session in application.get_sessions(PAGE_PATH)
        for callback in session.document.session_callbacks
    ]


def every_worker_recorded(scheduler, n_workers: int) -> bool:
    """The running fit has loss and balancing rows of every worker."""
    records = scheduler.plugins["asgd"].records
    return any(
        len(record.workers) == n_workers
        and all(len(w.loss) and len(w.exchange) for w in record.workers.values())
        for record in records.running.values()
    )


def look_at_the_running_fit(page, client, fit_id: str) -> None:
    """The page shows ``fit_id`` running, every figure, a line per worker."""

    def seen_live() -> bool:
        seen = read_page(page)
        lines = seen["lines"]
        return (
            f"{fit_id}</b>: running" in seen["status"]
            and len(lines) == 1 + len(EXCHANGE_FIGURES) + 1
            and all(min(v["points"], default=0) > 0 for v in lines.values())
            and len(lines["asgd-loss"]["workers"]) == 2
        )

    poll_for(seen_live, TIMEOUT)
    seen = read_page(page)
    expected = [LOSS_TITLE, *(title for _, title, _ in EXCHANGE_FIGURES)]
    assert sorted(seen["titles"]) == sorted(expected)
    workers = sorted(client.scheduler_info()["workers"])
    for name in ("loss", *(name for name, _, _ in EXCHANGE_FIGURES)):
        assert sorted(seen["lines"][f"asgd-{name}"]["workers"]) == workers


@contextlib.contextmanager
def held_at_the_barrier(scheduler, n_workers: int):
    """Hold the fit's epoch reports once ``every_worker_recorded``, until the
    block ends. Yields an event set when the first report is held."""
    real = scheduler.handlers["asgd_epoch_report"]
    held, release = threading.Event(), threading.Event()

    async def epoch_report(**message):
        if not release.is_set() and every_worker_recorded(scheduler, n_workers):
            held.set()
            await asyncio.to_thread(release.wait, TIMEOUT)
        return await real(**message)

    scheduler.handlers["asgd_epoch_report"] = epoch_report
    try:
        yield held
    finally:
        release.set()
        scheduler.handlers["asgd_epoch_report"] = real


def test_page_shows_a_running_fit_live_in_chromium(local_cluster):
    from playwright.sync_api import sync_playwright

    X, y = make_classification(n_samples=10_000, n_features=20, random_state=0)
    # Enough epochs that every worker sends a balancing report (twice a
    # second) before the fit would end.
    model = ASGDClassifier(max_iter=100, tol=None, random_state=0)
    with (
        Client(local_cluster, set_as_default=False) as client,
        sync_playwright() as playwright,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        install_plugins(client, _config.load().exchange, exchange=True)
        url = local_cluster.dashboard_link.replace("/status", "/asgd")
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        assert page.goto(url).status == 200
        poll_for(lambda: "No ASGD fit" in read_page(page)["status"], TIMEOUT)

        def fit():
            with client.as_current():
                return model.fit(X, y)

        scheduler = local_cluster.scheduler
        with held_at_the_barrier(scheduler, n_workers=2) as held:
            fitting = pool.submit(fit)
            poll_for(lambda: running_fits(client), TIMEOUT)
            (fit_id,) = running_fits(client)
            poll_for(held.is_set, TIMEOUT)
            look_at_the_running_fit(page, client, fit_id)
            assert not fitting.done()

        # Released: the fit trains on, and the page follows it to its end.
        fitting.result(timeout=300)
        poll_for(lambda: f"{fit_id}</b>: finished" in read_page(page)["status"], 30)
        # Every epoch of the fit is on the page.
        epochs = read_page(page)["lines"]["asgd-loss-fit"]["points"][0]
        assert epochs == model.n_iter_ == 100

        application = local_cluster.scheduler.plugins["asgd"]._page.application
        assert len(application._clients) == 1 and page_callbacks(application)
        remove_plugins(client)
        # The open page is disconnected and its document stops updating:
        # nothing of it runs on the scheduler any more.
        poll_for(lambda: len(application._clients) == 0, 30)
        poll_for(lambda: not page_callbacks(application), 30)
        assert application not in local_cluster.scheduler.http_application.applications
        browser.close()
