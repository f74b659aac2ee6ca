"""The one reader of ``asgd.yaml``: the machinery settings under ``asgd``.

Hyperparameters are estimator parameters, never config: only knobs of the
machinery (the embedded cluster, exchange buffers, timeouts, the balancer's
bounds) live here. ``asgd.yaml`` is the only place a default is written.
:func:`load` reads every key once, on the driver, into frozen objects that
travel to the workers inside the training task, so a worker never reads
configuration of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "asgd.yaml")

with open(_CONFIG_FILE) as _file:
    _defaults = yaml.safe_load(_file)

dask.config.update_defaults(_defaults)


def _get(key: str) -> Any:
    # Falls back to the packaged value when the configuration was reset after
    # import, as the fixtures of ``distributed.utils_test`` do.
    packaged: Any = _defaults["asgd"]
    for part in key.split("."):
        packaged = packaged[part]
    return dask.config.get(f"asgd.{key}", default=packaged)


def parse_seconds(value: Any, name: str) -> float | None:
    """A duration (``"2s"``, ``0.5``) in seconds; None stays None.

    Parameters
    ----------
    value : str, float or None
        The duration.
    name : str
        The setting's name, for the error message.

    Returns
    -------
    float or None
    """
    if value is None:
        return None
    seconds = parse_timedelta(value, default="seconds")
    if seconds is None or seconds < 0:
        raise ValueError(f"{name} must be a non-negative duration, got {value!r}")
    return float(seconds)


def parse_rate(value: Any, name: str) -> float | None:
    """A byte rate (``"10MB"``, ``1e6``) in bytes per second; None stays None.

    Parameters
    ----------
    value : str, float or None
        The rate; a string may use units, as in ``"12.5 MB"``.
    name : str
        The setting's name, for the error message.

    Returns
    -------
    float or None
    """
    if value is None:
        return None
    rate = float(parse_bytes(value)) if isinstance(value, str) else float(value)
    if not rate > 0:
        raise ValueError(f"{name} must be a positive number of bytes/s, got {value!r}")
    return rate


@dataclass(frozen=True)
class EmbeddedConfig:
    """``asgd.embedded.*``: the local cluster ``fit`` starts without a client."""

    n_workers: int | None
    threads_per_worker: int
    processes: bool


@dataclass(frozen=True)
class ExchangeConfig:
    """``asgd.exchange.*``: buffers and time limits of the state exchange."""

    mailbox_slots: int
    max_in_flight: int
    send_timeout: float | None
    min_bandwidth: float | None
    #: Link simulator: outgoing bytes/s of each worker, None for off.
    simulate_bandwidth: float | None
    #: Link simulator: seconds added to every send.
    simulate_latency: float


@dataclass(frozen=True)
class TrainingConfig:
    """``asgd.training.*``: how the worker loop paces itself."""

    chunk_samples: int
    epoch_timeout: float
    #: Seconds a training worker may be silent; None for no heartbeats.
    liveness_timeout: float | None


@dataclass(frozen=True)
class RecoveryConfig:
    """``asgd.recovery.*``: what a fit does when a worker leaves it."""

    replace_lost_workers: bool
    require_all_rows: bool


@dataclass(frozen=True)
class BalancingConfig:
    """``asgd.balancing.*``: period and bounds of the balancer."""

    report_period: float
    report_exchanges: int
    min_send_interval: int
    max_send_interval: int
    min_message_size: float
    cpu_budget: float
    max_send_time: float


@dataclass(frozen=True)
class Config:
    """Every ``asgd.*`` setting, read at one moment."""

    embedded: EmbeddedConfig
    exchange: ExchangeConfig
    training: TrainingConfig
    balancing: BalancingConfig
    recovery: RecoveryConfig


def load() -> Config:
    """Read every ``asgd.*`` key from the Dask configuration now.

    Returns
    -------
    Config

    Raises
    ------
    ValueError
        If a duration or rate does not parse.
    """
    n_workers = _get("embedded.n-workers")
    return Config(
        embedded=EmbeddedConfig(
            n_workers=None if n_workers is None else int(n_workers),
            threads_per_worker=int(_get("embedded.threads-per-worker")),
            processes=bool(_get("embedded.processes")),
        ),
        exchange=ExchangeConfig(
            mailbox_slots=int(_get("exchange.mailbox-slots")),
            max_in_flight=int(_get("exchange.max-in-flight")),
            send_timeout=parse_seconds(
                _get("exchange.send-timeout"), "asgd.exchange.send-timeout"
            ),
            min_bandwidth=parse_rate(
                _get("exchange.min-bandwidth"), "asgd.exchange.min-bandwidth"
            ),
            simulate_bandwidth=parse_rate(
                _get("exchange.simulate.bandwidth"),
                "asgd.exchange.simulate.bandwidth",
            ),
            simulate_latency=parse_seconds(
                _get("exchange.simulate.latency"), "asgd.exchange.simulate.latency"
            )
            or 0.0,
        ),
        training=TrainingConfig(
            chunk_samples=int(_get("training.chunk-samples")),
            epoch_timeout=float(
                parse_seconds(
                    _get("training.epoch-timeout"), "asgd.training.epoch-timeout"
                )
                or 0.0
            ),
            liveness_timeout=parse_seconds(
                _get("training.liveness-timeout"), "asgd.training.liveness-timeout"
            ),
        ),
        recovery=RecoveryConfig(
            replace_lost_workers=bool(_get("recovery.replace-lost-workers")),
            require_all_rows=bool(_get("recovery.require-all-rows")),
        ),
        balancing=BalancingConfig(
            report_period=float(
                parse_seconds(
                    _get("balancing.report-period"), "asgd.balancing.report-period"
                )
                or 0.0
            ),
            report_exchanges=int(_get("balancing.report-exchanges")),
            min_send_interval=int(_get("balancing.min-send-interval")),
            max_send_interval=int(_get("balancing.max-send-interval")),
            min_message_size=float(_get("balancing.min-message-size")),
            cpu_budget=float(_get("balancing.cpu-budget")),
            max_send_time=float(
                parse_seconds(
                    _get("balancing.max-send-time"), "asgd.balancing.max-send-time"
                )
                or 0.0
            ),
        ),
    )
