"""The Bokeh document of the ``/asgd`` dashboard page.

One document per browser tab: a choice of fit (running ones first, then the
last finished ones), a line that says how the fit stands, and six figures
over the fit's seconds: the loss (the mean over all workers at each completed
epoch, and each worker's own), the send interval and message size the
balancer set for each worker, and the messages each worker sent, lost and
accepted per second. Each figure's data source holds one row per worker
(``multi_line``), so workers that join later simply add rows.

Bokeh is imported here only: the scheduler plugin imports this module when
Dask's dashboard is running, which needs Bokeh already.
"""

from __future__ import annotations

import datetime
import html
import itertools
from typing import TYPE_CHECKING, Any

from bokeh.layouts import column, gridplot, row
from bokeh.models import (
    ColumnDataSource,
    Div,
    HoverTool,
    NumeralTickFormatter,
    Select,
)
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from ._fit_records import RUNNING, FitRecord, FitRecords

if TYPE_CHECKING:
    from bokeh.document import Document

#: Milliseconds between two looks at the records.
UPDATE_INTERVAL_MS = 1000

#: Figure of each balancing column: (column, title, y axis type).
EXCHANGE_FIGURES = (
    ("send_interval", "Send interval (samples)", "log"),
    ("message_size", "Message size (share of the state)", "linear"),
    ("sent", "Messages sent per second", "linear"),
    ("lost", "Messages lost per second", "linear"),
    ("accepted", "Messages accepted per second", "linear"),
)
LOSS_TITLE = "Loss (mean over all workers, and per worker)"


def _empty_lines() -> dict[str, list[Any]]:
    return {"xs": [], "ys": [], "worker": [], "color": []}


def _figure(title: str, y_axis_type: str = "linear") -> Any:
    fig = figure(
        title=title,
        height=300,
        sizing_mode="stretch_width",
        y_axis_type=y_axis_type,
        x_axis_label="seconds into the fit",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        toolbar_location="above",
    )
    fig.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("", "($x, $y)")]))
    if y_axis_type == "log":
        # 16k, 250k, 4m rather than Bokeh's 1.6e+4.
        fig.yaxis.formatter = NumeralTickFormatter(format="0.[0]a")
    return fig


class FitView:
    """The widgets and figures of one page, and their update from the records.

    Parameters
    ----------
    records : FitRecords
        The scheduler plugin's record of recent fits.
    """

    def __init__(self, records: FitRecords) -> None:
        self.records = records
        self._shown: tuple[str, int] | None = None
        self.select = Select(title="Fit", options=[], value="", width=420)
        self.status = Div(text="<p>No ASGD fit has run on this cluster yet.</p>")
        self.fit_loss = ColumnDataSource(
            {"time": [], "loss": [], "epoch": []}, name="asgd-loss-fit"
        )
        self.lines = {
            name: ColumnDataSource(_empty_lines(), name=f"asgd-{name}")
            for name in ("loss", *(spec[0] for spec in EXCHANGE_FIGURES))
        }
        loss_figure = _figure(LOSS_TITLE)
        figures = [loss_figure] + [
            _figure(title, y_axis_type) for _, title, y_axis_type in EXCHANGE_FIGURES
        ]
        for fig, name in zip(figures, self.lines, strict=True):
            fig.multi_line(
                "xs", "ys", color="color", legend_field="worker", line_width=2,
                source=self.lines[name],
            )  # fmt: skip
            fig.legend.location = "top_right"
            fig.legend.click_policy = "hide"
            fig.x_range = figures[0].x_range
        # Drawn last, so the workers' lines do not hide it.
        loss_figure.line(
            "time", "loss", source=self.fit_loss, line_width=3, color="black",
            legend_label="all workers",
        )  # fmt: skip
        self.root = column(
            row(self.select, self.status, sizing_mode="stretch_width"),
            gridplot(figures, ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            name="asgd-root",
        )

    def update(self) -> None:
        """Show the chosen fit (by default the newest), if anything changed."""
        fits = self.records.fits()
        options = [(r.fit_id, _label(r)) for r in fits]
        if options != self.select.options:
            self.select.options = options
        chosen = self.records.get(self.select.value) if self.select.value else None
        if chosen is None and fits:
            chosen = fits[0]
            self.select.value = chosen.fit_id
        if chosen is None:
            return
        if self._shown == (chosen.fit_id, chosen.version):
            return
        self._shown = (chosen.fit_id, chosen.version)
        self.fit_loss.data = {
            name: list(chosen.loss.data[name]) for name in ("time", "loss", "epoch")
        }
        self.lines["loss"].data = _per_worker(chosen, "loss", "loss")
        for name, _, _ in EXCHANGE_FIGURES:
            self.lines[name].data = _per_worker(chosen, "exchange", name)
        # Last: each change travels as a message of its own, and a browser
        # that shows the new status has the new figures too.
        self.status.text = _status(chosen)


def _per_worker(record: FitRecord, series: str, column_name: str) -> dict[str, list]:
    """One line per worker: ``column_name`` of the worker's ``series``."""
    data = _empty_lines()
    colors = itertools.cycle(Category10_10)
    for worker, numbers in sorted(record.workers.items()):
        points = getattr(numbers, series).data
        data["xs"].append(list(points["time"]))
        data["ys"].append(list(points[column_name]))
        data["worker"].append(worker)
        data["color"].append(next(colors))
    return data


def _clock(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")


def _label(record: FitRecord) -> str:
    return f"{record.fit_id} ({record.outcome}, started {_clock(record.started)})"


def _status(record: FitRecord) -> str:
    epochs = len(record.loss)
    last = record.loss.data["loss"][-1] if epochs else None
    parts = [
        f"<b>{html.escape(record.fit_id)}</b>: {record.outcome}",
        f"{len(record.workers)} workers",
        f"started {_clock(record.started)}",
    ]
    if record.loss.data["epoch"]:
        parts.append(f"epoch {int(record.loss.data['epoch'][-1]) + 1}")
    if last is not None:
        parts.append(f"loss {last:.4g}")
    if record.outcome != RUNNING and record.ended is not None:
        parts.append(f"ended {_clock(record.ended)}")
    text = ", ".join(parts)
    if record.reason:
        text += f"<br>{html.escape(record.reason)}"
    return f"<p class='asgd-status'>{text}</p>"


def fit_document(
    records: FitRecords, scheduler: Any, extra: dict[str, Any], doc: Document
) -> None:
    """Build the page's document (the signature distributed's pages have,
    with the records bound first)."""
    # Imported here: distributed's dashboard modules need Bokeh, and they
    # give the page the dashboard's navigation bar and theme.
    from distributed.dashboard.components.scheduler import BOKEH_THEME, env

    view = FitView(records)
    view.update()
    doc.title = "Dask: ASGD"
    doc.add_root(view.root)
    doc.template = env.get_template("simple.html")
    doc.template_variables.update(extra)
    doc.theme = BOKEH_THEME

    def refresh() -> None:
        # Once the plugin is gone, the page stops: nothing runs for a tab
        # left open on a page that no longer exists.
        if records.closed:
            doc.remove_periodic_callback(callback)
        else:
            view.update()

    callback = doc.add_periodic_callback(refresh, UPDATE_INTERVAL_MS)
    view.select.on_change("value", lambda attr, old, new: view.update())
