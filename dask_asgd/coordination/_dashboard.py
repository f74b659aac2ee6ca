"""The ``/asgd`` page on the scheduler's Dask dashboard, added and removed with
the scheduler plugin.

Dask serves its dashboard pages from one Bokeh server application, made when
the scheduler starts; other applications can be added to the scheduler's
HTTP application after that, and the dashboard's ``/sitemap.json`` and
request routing go through the list of them. The plugin adds one Bokeh
application of its own, made by the helper Dask's pages are made with (same
URL prefix, allowed websocket origins and template), and an entry in the
dashboard's "More..." menu. When the plugin closes (``remove_plugins``, or the
scheduler closing), both go again, open pages are disconnected and their
documents stop updating, so the cluster keeps nothing of the page.

Without Dask's dashboard (no Bokeh installed, or ``dashboard=False``) there is
no page; Bokeh is imported only when the dashboard runs.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from ._fit_records import FitRecords

if TYPE_CHECKING:
    from distributed import Scheduler

logger = logging.getLogger(__name__)

#: Path of the page, under the dashboard's prefix.
PAGE_PATH = "/asgd"
#: The page's entry in the dashboard's "More..." menu.
MENU_ENTRY = {"url": PAGE_PATH.strip("/"), "name": "ASGD"}


def _dashboard_application(scheduler: Scheduler) -> Any | None:
    """The Bokeh application serving Dask's dashboard, or None without one."""
    http = getattr(scheduler, "http_application", None)
    for application in getattr(http, "applications", ()):
        if hasattr(application, "app_paths") and "/status" in application.app_paths:
            return application
    return None


class DashboardPage:
    """The ``/asgd`` page on one scheduler's dashboard.

    Use :func:`add_page` to make one; :meth:`remove` takes it away again.
    """

    def __init__(self, scheduler: Scheduler, application: Any, menu: list) -> None:
        self.scheduler = scheduler
        self.application = application
        self._menu = menu

    @property
    def url_path(self) -> str:
        """The page's path on the dashboard, with the prefix."""
        return self.application.prefix + PAGE_PATH

    def remove(self) -> None:
        """Take the page off the dashboard and disconnect open pages."""
        applications = self.scheduler.http_application.applications
        if self.application in applications:
            applications.remove(self.application)
        if MENU_ENTRY in self._menu:
            self._menu.remove(MENU_ENTRY)
        self.application.stop()
        # Bokeh keeps its connections private; closing their websockets ends
        # the sessions of pages still open (the browser shows them as lost).
        for connection in list(getattr(self.application, "_clients", ())):
            socket = getattr(connection, "_socket", None)
            if socket is not None:
                socket.close()


def add_page(scheduler: Scheduler, records: FitRecords) -> DashboardPage | None:
    """Serve the page of ``records`` on ``scheduler``'s dashboard.

    Returns
    -------
    DashboardPage or None
        None when the scheduler has no Bokeh dashboard.
    """
    dashboard = _dashboard_application(scheduler)
    if dashboard is None:
        return None
    try:
        from distributed.dashboard.core import BokehApplication
        from distributed.dashboard.scheduler import template_variables
        from tornado.ioloop import IOLoop

        from ._dashboard_document import fit_document
    except ImportError:  # pragma: no cover - a dashboard runs, so Bokeh is there
        logger.debug("No ASGD dashboard page: Bokeh is missing", exc_info=True)
        return None
    variables = template_variables(scheduler)
    application = BokehApplication(
        {PAGE_PATH: functools.partial(fit_document, records)},
        scheduler,
        prefix=dashboard.prefix,
        template_variables=variables,
    )
    scheduler.http_application.add_application(application)
    application.initialize(IOLoop.current())
    application.start()
    # Dask's pages render the menu from this list (one per scheduler, shared
    # by the documents of its pages), so new pages list the ASGD page too.
    menu = variables["plots"]
    if MENU_ENTRY not in menu:
        menu.append(MENU_ENTRY)
        menu.sort(key=lambda entry: entry["name"])
    return DashboardPage(scheduler, application, menu)
