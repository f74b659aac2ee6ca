"""The ``/asgd`` page comes and goes with the scheduler plugin (gen_cluster).

The page's figures in a real browser are tested in
``tests/integration/test_dashboard_page.py``.
"""

from __future__ import annotations

import json

import pytest
from distributed.protocol.pickle import dumps
from distributed.utils_test import gen_cluster
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from dask_asgd.coordination import ASGDSchedulerPlugin

pytest.importorskip("bokeh", reason="Dask's dashboard needs bokeh")

DASHBOARD = {"dashboard": True, "dashboard_address": ":0"}


async def install(c):
    await c.scheduler.register_scheduler_plugin(
        plugin=dumps(ASGDSchedulerPlugin()), name="asgd", idempotent=True
    )


async def remove(s):
    """What ``dask_asgd.backends.remove_plugins`` does on the scheduler."""
    await s.plugins["asgd"].close()
    s.remove_plugin(name="asgd")


async def status_code(s, path):
    url = f"http://127.0.0.1:{s.http_server.port}{path}"
    try:
        response = await AsyncHTTPClient().fetch(url)
    except HTTPClientError as error:
        return error.code, ""
    return response.code, response.body.decode()


def listed_paths(s):
    """The paths the dashboard's Bokeh applications serve (what its sitemap
    lists for Bokeh pages)."""
    return {
        path
        for application in s.http_application.applications
        for path in getattr(application, "app_paths", ())
    }


@gen_cluster(client=True, nthreads=[("", 1)], scheduler_kwargs=DASHBOARD)
async def test_page_served_listed_and_linked_while_the_plugin_is_installed(c, s, a):
    assert (await status_code(s, "/asgd"))[0] == 404
    sitemap_before, _ = await status_code(s, "/sitemap.json")
    await install(c)
    code, page = await status_code(s, "/asgd")
    assert code == 200
    # A Bokeh server page (its figures arrive over the websocket) in Dask's
    # template, whose menu links the page.
    assert "render_items" in page and 'href="asgd"' in page
    assert "/asgd" in listed_paths(s)
    # distributed's /sitemap.json fails (500, a KeyError in its route walk)
    # on every scheduler with distributed 2026.8 and Bokeh 3.9; where it
    # answers, it lists the page. The page never changes whether it answers.
    sitemap, body = await status_code(s, "/sitemap.json")
    assert sitemap == sitemap_before
    if sitemap == 200:
        assert "/asgd" in json.loads(body)["paths"]
    # Dask's own pages link it in their "More..." menu.
    code, status_page = await status_code(s, "/status")
    assert code == 200 and 'href="asgd"' in status_page

    await remove(s)
    assert (await status_code(s, "/asgd"))[0] == 404
    assert "/asgd" not in listed_paths(s)
    code, status_page = await status_code(s, "/status")
    assert code == 200 and 'href="asgd"' not in status_page
    # Dask's own pages are untouched.
    assert "/status" in listed_paths(s)


@gen_cluster(client=True, nthreads=[("", 1)], scheduler_kwargs=DASHBOARD)
async def test_installing_twice_adds_one_page_and_one_menu_entry(c, s, a):
    await install(c)
    await remove(s)
    await install(c)
    await install(c)  # idempotent: the plugin is not started again
    pages = [app for app in s.http_application.applications if "/asgd" in app.app_paths]
    assert len(pages) == 1
    _, status_page = await status_code(s, "/status")
    assert status_page.count('href="asgd"') == 1
    await remove(s)


@gen_cluster(
    client=True,
    nthreads=[("", 1)],
    scheduler_kwargs={**DASHBOARD, "http_prefix": "/dask"},
)
async def test_page_follows_the_dashboard_prefix(c, s, a):
    await install(c)
    assert (await status_code(s, "/dask/asgd"))[0] == 200
    assert (await status_code(s, "/asgd"))[0] == 404
    await remove(s)


@gen_cluster(
    client=True,
    nthreads=[("", 1)],
    scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
)
async def test_no_page_without_the_dashboard(c, s, a):
    await install(c)
    plugin = s.plugins["asgd"]
    assert plugin._page is None
    assert "/asgd" not in listed_paths(s)
    await remove(s)
