"""Markdown tables and PNG plots of the sweep and of the bandwidth change."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from sweep import ChangeRun, TargetResult


def _cell(r: TargetResult | None, key: str = "wall") -> str:
    if r is None:
        return "-"
    value = getattr(r, key)
    if not math.isfinite(value):
        return "failed"
    if r.reached:
        return f"{value:.1f} s ({r.epochs})"
    return f"> {value:.1f} s (>{r.epochs})"


def _by(results: list[TargetResult]) -> tuple[list[str], list[str], dict]:
    links: list[str] = []
    modes: list[str] = []
    table: dict[tuple[str, str], TargetResult] = {}
    for r in results:
        if r.link not in links:
            links.append(r.link)
        if r.mode not in modes:
            modes.append(r.mode)
        table[(r.link, r.mode)] = r
    return links, modes, table


def tables(results: list[TargetResult], target: float, header: str) -> str:
    """The markdown report of the sweep."""
    links, modes, table = _by(results)
    lines = [header, ""]
    lines.append(
        f"Target: full training objective <= {target:.5f}. Cells: time to target "
        "(epochs of the first fit that reached it); `> t (>k)`: not reached, t is "
        "the wall time of the last fit tried (a lower bound), k its epochs."
    )
    for key, title in (
        ("wall", "Time to target, wall time of fit()"),
        (
            "train_seconds",
            "Training seconds of that fit (sum over "
            "epochs of the slowest worker's epoch, from history_)",
        ),
    ):
        lines += ["", f"### {title}", ""]
        lines.append("| link | " + " | ".join(modes) + " |")
        lines.append("|---" * (len(modes) + 1) + "|")
        for link in links:
            cells = [_cell(table.get((link, m)), key) for m in modes]
            lines.append(f"| {link} | " + " | ".join(cells) + " |")
    lines += ["", "### Adaptive against fixed send intervals (wall time)", ""]
    lines.append(
        "| link | best fixed | worst fixed | adaptive | adaptive / best "
        "| within 10% of best | worst / adaptive | >= 2x faster than worst |"
    )
    lines.append("|---" * 8 + "|")
    for link in links:
        fixed = [
            table[(link, m)]
            for m in modes
            if m.startswith("fixed") and (link, m) in table
        ]
        adaptive = table.get((link, "adaptive"))
        if not fixed or adaptive is None:
            continue
        reached = [r for r in fixed if r.reached]
        best = min(reached, key=lambda r: r.wall) if reached else None
        # An unreached fixed mode is at least as slow as its lower bound.
        worst = max(fixed, key=lambda r: (not r.reached, r.wall))
        a = adaptive.wall if adaptive.reached else math.inf
        ratio_best = a / best.wall if best else math.nan
        ratio_worst = worst.wall / a if math.isfinite(a) else math.nan
        worst_txt = f"{worst.mode}: {_cell(worst)}"
        lines.append(
            f"| {link} | {best.mode + ': ' + _cell(best) if best else 'none reached'} "
            f"| {worst_txt} | {_cell(adaptive)} | {ratio_best:.2f} "
            f"| {'yes' if ratio_best <= 1.10 else 'no'} "
            f"| {'>' if not worst.reached else ''}{ratio_worst:.2f} "
            f"| {'yes' if ratio_worst >= 2 else 'no'} |"
        )
    lines += [
        "",
        "### Exchange counters of the fit that reached the target "
        "(or the last one), summed over workers",
        "",
    ]
    lines.append(
        "| link | mode | objective | msgs published | sent | failed | dropped "
        "| MB sent | rows accepted/rejected (Parzen) | final interval/size "
        "per worker | failed attempts |"
    )
    lines.append("|---" * 11 + "|")
    for link in links:
        for m in modes:
            r = table.get((link, m))
            if r is None:
                continue
            fit = r.fits[-1]
            c = fit.counters
            failures = sum(f.failures for f in r.fits)
            lines.append(
                f"| {link} | {m} | {fit.objective:.5f} "
                f"| {c.get('messages_published', 0):.0f} "
                f"| {c.get('messages_sent', 0):.0f} "
                f"| {c.get('messages_failed', 0):.0f} "
                f"| {c.get('messages_dropped', 0):.0f} "
                f"| {c.get('bytes_sent', 0) / 1e6:.0f} "
                f"| {c.get('rows_accepted', 0):.0f}/{c.get('rows_rejected', 0):.0f} "
                f"| {fit.final_settings} | {failures} |"
            )
    return "\n".join(lines) + "\n"


def plot_sweep(results: list[TargetResult], path: Path, title: str) -> None:
    """Grouped bars: time to target per link (groups) and mode (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links, modes, table = _by(results)
    cmap = plt.get_cmap("viridis")
    colors = {}
    fixed = [m for m in modes if m.startswith("fixed")]
    for i, m in enumerate(fixed):
        colors[m] = cmap(0.15 + 0.7 * i / max(1, len(fixed) - 1))
    colors["off"] = "0.55"
    colors["adaptive"] = "tab:red"
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(8, 1.0 + 2.2 * len(links)), 6.2))
    for j, m in enumerate(modes):
        xs, hs, hatch = [], [], []
        for i, link in enumerate(links):
            r = table.get((link, m))
            if r is None or not math.isfinite(r.wall):
                continue
            xs.append(i + (j - (len(modes) - 1) / 2) * width)
            hs.append(r.wall)
            hatch.append(not r.reached)
        bars = ax.bar(
            xs,
            hs,
            width * 0.95,
            color=colors.get(m, "C0"),
            label=m,
            edgecolor="black",
            linewidth=0.4,
        )
        for bar, h, unreached in zip(bars, hs, hatch, strict=True):
            if unreached:
                bar.set_hatch("///")
                bar.set_alpha(0.6)
                ax.annotate(
                    ">",
                    (bar.get_x() + bar.get_width() / 2, h),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    ax.set_yscale("log")
    ax.set_xticks(range(len(links)))
    ax.set_xticklabels([_pretty(link) for link in links])
    ax.set_ylabel("time to target loss [s] (wall time of fit, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=colors.get(m, "C0"), edgecolor="black", linewidth=0.4, label=m)
        for m in modes
    ]
    handles.append(
        Patch(facecolor="white", edgecolor="black", hatch="///", label="not reached")
    )
    ax.legend(
        handles=handles,
        ncol=min(5, len(modes) + 1),
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.09),
        title="hatched, '>': target not reached (bar: lower bound)",
        title_fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pretty(link: str) -> str:
    return {
        "10mbit": "10 Mbit/s",
        "100mbit": "100 Mbit/s",
        "1gbit": "1 Gbit/s",
        "unshaped": "unshaped",
    }.get(link, link)


def plot_change(run: ChangeRun, path: Path, title: str) -> None:
    """send_interval, message_size (and the send latency the balancer saw)
    over time per worker, with a vertical line at the bandwidth change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    control = run.control
    has_latency = "signal_send_latency" in control.columns
    rows = 3 if has_latency else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.6 * rows + 0.6), sharex=True)
    end = float(control["time"].max()) if len(control) else 1.0
    if "seconds" in run.history.columns:
        per_worker = run.history.groupby("worker")["seconds"].sum()
        end = max(end, float(per_worker.max()))
    for k, (worker, rows_w) in enumerate(control.groupby("worker", sort=True)):
        rows_w = rows_w.sort_values("time")
        t = np.append(rows_w["time"].to_numpy(), end)
        label = f"worker {k} ({worker.split('//')[-1]})"
        for ax, column in ((axes[0], "send_interval"), (axes[1], "message_size")):
            values = rows_w[column].to_numpy()
            ax.step(
                t,
                np.append(values, values[-1]),
                where="post",
                label=label,
                marker="o",
                markersize=3,
            )
        if has_latency:
            lat = rows_w[rows_w["reason"] != "initial"]
            # Only known at the balancer's changes: points, not a curve.
            axes[2].plot(
                lat["time"],
                lat["signal_send_latency"] * 1e3,
                "o",
                markersize=4,
                label=label,
            )
    axes[0].set_yscale("log", base=2)
    axes[0].set_ylabel("send_interval\n[samples]")
    axes[1].set_ylabel("message_size\n[fraction of state]")
    axes[1].set_yscale("log", base=2)
    if has_latency:
        axes[2].set_ylabel("send latency at each\nchange of settings [ms]")
        axes[2].set_yscale("log")
    for ax in axes:
        for moment in run.change_at.values():
            ax.axvline(moment, color="red", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    if run.change_at:
        moment = float(np.mean(list(run.change_at.values())))
        axes[0].annotate(
            f"{_pretty(run.change_from)} -> {_pretty(run.change_to)}",
            (moment, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            color="red",
            fontsize=9,
        )
    axes[-1].set_xlabel(
        "seconds since the worker's training started "
        "(communication_history_['time']); markers: balancer changes"
    )
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def retarget(results: list[dict], target: float) -> list[TargetResult]:
    """Time to a different target, recomputed from a sweep's recorded fits.

    Every search fitted ``max_iter = 1, 2, ...`` until the original target was
    reached, so for any *looser* target (larger value) the first fit that
    reaches it is among the recorded ones and the answer is exact. For a
    stricter target a search may have stopped too early: such a mode is
    reported as not reached, with its last fit as the lower bound.
    """
    from sweep import FitResult

    out = []
    for r in results:
        fits = [FitResult(**{k: v for k, v in f.items()}) for f in r["fits"]]
        for f in fits:
            for key in ("objective", "wall", "train_seconds"):
                if getattr(f, key) is None:
                    setattr(f, key, math.nan)
        hit = next((f for f in fits if f.objective <= target), None)
        last = hit or fits[-1]
        out.append(
            TargetResult(
                r["link"],
                r["mode"],
                hit is not None,
                last.max_iter,
                last.wall,
                last.train_seconds,
                last.objective,
                fits[: fits.index(last) + 1],
            )
        )
    return out
