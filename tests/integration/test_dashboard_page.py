"""The ``/asgd`` dashboard page in a real headless Chromium, during a real fit.

Chromium is Debian's ``chromium`` package (CI installs it); Playwright drives
it without downloading a browser of its own.
"""

from __future__ import annotations

import concurrent.futures
import shutil

import pytest
from distributed import Client
from distributed.utils_test import poll_for
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier, _config
from dask_asgd.backends import install_plugins, remove_plugins
from dask_asgd.coordination._dashboard_document import EXCHANGE_FIGURES, LOSS_TITLE

pytest.importorskip("bokeh", reason="Dask's dashboard needs bokeh")

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


def test_page_shows_a_running_fit_live_in_chromium(local_cluster):
    from playwright.sync_api import sync_playwright

    X, y = make_classification(n_samples=10_000, n_features=20, random_state=0)
    # Long enough (a few seconds) that the page is seen while it trains.
    model = ASGDClassifier(max_iter=300, tol=None, random_state=0)
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

        fitting = pool.submit(fit)
        poll_for(lambda: running_fits(client), TIMEOUT)
        (fit_id,) = running_fits(client)

        def seen_live() -> bool:
            seen = read_page(page)
            lines = seen["lines"]
            return (
                f"{fit_id}</b>: running" in seen["status"]
                and all(min(v["points"], default=0) > 0 for v in lines.values())
                and len(lines.get("asgd-loss", {}).get("workers", [])) == 2
            )

        poll_for(seen_live, TIMEOUT)
        # Seen while the fit still runs, with every figure and worker.
        assert not fitting.done()
        seen = read_page(page)
        expected = [LOSS_TITLE, *(title for _, title, _ in EXCHANGE_FIGURES)]
        assert sorted(seen["titles"]) == sorted(expected)
        workers = sorted(client.scheduler_info()["workers"])
        for name, _, _ in EXCHANGE_FIGURES:
            assert sorted(seen["lines"][f"asgd-{name}"]["workers"]) == workers

        fitting.result(timeout=300)
        poll_for(lambda: f"{fit_id}</b>: finished" in read_page(page)["status"], 30)
        epochs = read_page(page)["lines"]["asgd-loss-fit"]["points"][0]
        assert epochs == model.n_iter_

        application = local_cluster.scheduler.plugins["asgd"]._page.application
        assert len(application._clients) == 1
        remove_plugins(client)
        # The open page is disconnected: nothing of it stays on the scheduler.
        poll_for(lambda: len(application._clients) == 0, 30)
        assert application not in local_cluster.scheduler.http_application.applications
        browser.close()
