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
import numpy as np
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


def _integer(key: str, minimum: int | None = None) -> int:
    """The integer setting ``asgd.<key>``; a ValueError naming it if it is not
    one (``"8192"`` from an environment variable is one, ``"8k"`` is not)."""
    value = _get(key)
    number: int | None = None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None or (minimum is not None and number < minimum):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"asgd.{key} must be an integer{at_least}, got {value!r}")
    return number


def _number(key: str) -> float:
    """The real-number setting ``asgd.<key>``; a ValueError naming it if it
    is not one."""
    value = _get(key)
    try:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"asgd.{key} must be a number, got {value!r}") from None


def _flag(key: str) -> bool:
    """The boolean setting ``asgd.<key>``: true or false, nothing else
    (``bool("no")`` would be True)."""
    value = _get(key)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    # An environment variable arrives as text: DASK_ASGD__...=false.
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"asgd.{key} must be true or false, got {value!r}")


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
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (TypeError, ValueError, KeyError):
        seconds = None
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
    try:
        rate = float(parse_bytes(value)) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        rate = float("nan")
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
        If a setting is not of its type (an integer, a number, true or
        false) or a duration or rate does not parse; the message names the
        key.
    """
    return Config(
        embedded=EmbeddedConfig(
            n_workers=(
                None
                if _get("embedded.n-workers") is None
                else _integer("embedded.n-workers", 1)
            ),
            threads_per_worker=_integer("embedded.threads-per-worker"),
            processes=_flag("embedded.processes"),
        ),
        exchange=ExchangeConfig(
            mailbox_slots=_integer("exchange.mailbox-slots"),
            max_in_flight=_integer("exchange.max-in-flight"),
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
            chunk_samples=_integer("training.chunk-samples"),
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
            replace_lost_workers=_flag("recovery.replace-lost-workers"),
            require_all_rows=_flag("recovery.require-all-rows"),
        ),
        balancing=BalancingConfig(
            report_period=float(
                parse_seconds(
                    _get("balancing.report-period"), "asgd.balancing.report-period"
                )
                or 0.0
            ),
            report_exchanges=_integer("balancing.report-exchanges"),
            min_send_interval=_integer("balancing.min-send-interval"),
            max_send_interval=_integer("balancing.max-send-interval"),
            min_message_size=_number("balancing.min-message-size"),
            cpu_budget=_number("balancing.cpu-budget"),
            max_send_time=float(
                parse_seconds(
                    _get("balancing.max-send-time"), "asgd.balancing.max-send-time"
                )
                or 0.0
            ),
        ),
    )
