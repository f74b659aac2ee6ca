"""Take the screenshot of the ``/asgd`` dashboard page shown in the user guide.

Starts a local cluster of three worker processes, opens the page in headless
Chromium (Debian's ``chromium`` package, driven by Playwright), fits an
``ASGDClassifier`` and photographs the page while the fit runs::

    python docs/dashboard_screenshot.py [--out docs/_static/dashboard_asgd.png]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import time

from distributed import Client, LocalCluster
from playwright.sync_api import sync_playwright
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Epochs the fit has completed on the page when it is photographed.
EPOCHS_SHOWN = 25

EPOCHS_ON_PAGE = """() => {
  const doc = window.Bokeh && Bokeh.documents.length && Bokeh.documents[0];
  const fit = doc && doc.get_model_by_name("asgd-loss-fit");
  return fit ? fit.data.time.length : 0;
}"""


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not show the fit in time")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/_static/dashboard_asgd.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs chromium on PATH (Debian: apt-get install chromium)")
    X, y = make_classification(
        n_samples=200_000, n_features=50, n_informative=20, random_state=0
    )
    model = ASGDClassifier(max_iter=60, tol=None, random_state=0)
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        sync_playwright() as playwright,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 960})

        def fit():
            with client.as_current():
                return model.fit(X, y)

        fitting = pool.submit(fit)
        url = cluster.dashboard_link.replace("/status", "/asgd")
        wait_for(
            lambda: client.run_on_scheduler(
                lambda dask_scheduler: bool(
                    "asgd" in dask_scheduler.plugins
                    and dask_scheduler.plugins["asgd"].fits
                )
            ),
            120,
        )
        page.goto(url)
        wait_for(lambda: page.evaluate(EPOCHS_ON_PAGE) >= EPOCHS_SHOWN, 300)
        page.screenshot(path=args.out, full_page=True)
        print(f"wrote {args.out} (fit still running: {not fitting.done()})")
        fitting.result()
        browser.close()


if __name__ == "__main__":
    main()
