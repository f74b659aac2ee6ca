"""The plugins are installed with the driver's configuration."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import dask
import pytest

from dask_asgd import _config
from dask_asgd.backends import install_plugins
from dask_asgd.exchange import PLUGIN_NAME, ExchangeWorkerPlugin


class RecordingClient:
    """The part of a Client that install_plugins uses; records each call."""

    def __init__(self) -> None:
        self.scheduler = SimpleNamespace(
            register_scheduler_plugin="register_scheduler_plugin",
            register_worker_plugin="register_worker_plugin",
        )
        self.calls: dict[str, dict[str, Any]] = {}

    def sync(self, method: str, **kwargs: Any) -> None:
        self.calls[method] = kwargs


def installed_exchange_plugin(client: RecordingClient) -> ExchangeWorkerPlugin:
    call = client.calls["register_worker_plugin"]
    assert call["name"] == PLUGIN_NAME and call["idempotent"] is True
    plugin = pickle.loads(call["plugin"])
    assert isinstance(plugin, ExchangeWorkerPlugin)
    return plugin


def test_link_simulator_settings_come_from_the_driver_config():
    client = RecordingClient()
    settings = {
        "asgd.exchange.simulate.bandwidth": "10MB",
        "asgd.exchange.simulate.latency": "5ms",
    }
    with dask.config.set(settings):
        install_plugins(client, _config.load().exchange, exchange=True)  # type: ignore[arg-type]
    plugin = installed_exchange_plugin(client)
    assert plugin.bandwidth == 10e6
    assert plugin.latency == pytest.approx(0.005)


def test_link_simulator_is_off_by_default():
    client = RecordingClient()
    install_plugins(client, _config.load().exchange, exchange=True)  # type: ignore[arg-type]
    plugin = installed_exchange_plugin(client)
    assert (plugin.bandwidth, plugin.latency) == (None, 0.0)


def test_no_exchange_plugin_without_exchange():
    client = RecordingClient()
    install_plugins(client, _config.load().exchange, exchange=False)  # type: ignore[arg-type]
    assert list(client.calls) == ["register_scheduler_plugin"]
