"""Malformed messages pushed to a running fit's exchange are refused, not merged.

A real fit on two worker processes; while it trains, each malformed message
goes to the fit's topic on every worker, straight through the worker's rpc
handler as another process on the network could send it. Each sender gets a
refusal with its reason, the fit finishes, and its accuracy is that of a
clean fit of the same data.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.core import rpc
from distributed.protocol import to_serialize
from distributed.utils_test import poll_for
from sklearn.datasets import make_classification

from dask_asgd import ASGDClassifier
from dask_asgd.exchange import PLUGIN_NAME, RECEIVE_HANDLER
from dask_asgd.runtime._driver import parse_task_key

#: The fit: no Parzen-window test, so nothing but the handler stands between
#: a malformed message and the model; averaging makes its accuracy steady
#: from run to run (0.848 +- 0.0003 over 4 runs on this data).
PARAMS = dict(
    communication="fixed",
    parzen_window=False,
    send_interval=256,
    average=True,
    max_iter=60,
    tol=None,
    random_state=0,
)


def malformed(shape: tuple[int, int]) -> list[tuple[str, dict[str, Any], str]]:
    """(name, message fields, expected reason) for a state of ``shape``."""
    ones = np.ones(shape)
    return [
        ("payload None", {"payload": None}, "not-an-array"),
        ("a list", {"payload": ones.tolist()}, "not-an-array"),
        ("a string array", {"payload": np.full(shape, "x")}, "dtype"),
        ("complex", {"payload": ones.astype(complex)}, "dtype"),
        ("metadata column_start='x'", {"metadata": {"column_start": "x"}}, "metadata"),
        ("metadata a str", {"metadata": "column_start=0"}, "metadata"),
        ("column_start=-10", {"metadata": {"column_start": -10}}, "column-range"),
        ("larger than the state", {"payload": np.ones((shape[0] + 1, shape[1]))},
         "too-large"),
        ("values of 1e30", {"payload": np.full(shape, 1e30)}, "magnitude"),
        ("NaN values", {"payload": np.full(shape, np.nan)}, "non-finite"),
    ]  # fmt: skip


def message(
    topic: str, shape: tuple[int, int], fields: dict[str, Any]
) -> dict[str, Any]:
    """A well-formed message for a state of ``shape``, but for ``fields``."""
    out = {
        "topic": topic,
        "sender": "tcp://127.0.0.1:1",
        "payload": np.zeros(shape),
        "metadata": {"column_start": 0},
        "sent_at": 0.0,
        **fields,
    }
    if isinstance(out["payload"], np.ndarray):
        out["payload"] = to_serialize(out["payload"])
    return out


async def push(address: str, msg: dict[str, Any]) -> Any:
    """Send one message to a worker's exchange handler, as a peer would."""
    async with rpc(address) as worker:
        return await getattr(worker, RECEIVE_HANDLER)(**msg)


def running_fit(client: Client) -> str | None:
    """The id of the fit whose training tasks run on every worker, if any."""
    keys = [
        str(key) for keys in client.processing().values() for key in keys
    ]  # fmt: skip
    fits = {parse_task_key(key)[0] for key in keys if "-train-" in key}
    return fits.pop() if len(fits) == 1 else None


def subscriptions(client: Client, topic: str) -> dict[str, Any]:
    def declared(dask_worker, topic=topic):
        endpoint = dask_worker.plugins[PLUGIN_NAME].endpoint(topic)
        return None if endpoint is None else endpoint.spec.payload_shape

    return client.run(declared)


def refusals(client: Client) -> dict[str, dict[str, int]]:
    return client.run(
        lambda dask_worker: dask_worker.plugins[PLUGIN_NAME].stats()[
            "refused_by_reason"
        ]
    )


@pytest.mark.timeout(240)
def test_malformed_messages_are_refused_and_the_fit_is_unharmed():
    X, y = make_classification(
        60_000, 20, n_informative=10, class_sep=1.5, random_state=0
    )
    X_train, y_train, X_test, y_test = X[:50_000], y[:50_000], X[50_000:], y[50_000:]
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        with client.as_current():
            clean = ASGDClassifier(**PARAMS).fit(X_train, y_train)
        clean_accuracy = clean.score(X_test, y_test)
        before = refusals(client)

        model = ASGDClassifier(**PARAMS)
        outcome: dict[str, Any] = {}

        def fit() -> None:
            try:
                with client.as_current():
                    model.fit(X_train, y_train)
            except BaseException as error:  # reported by the assertion below
                outcome["error"] = error

        thread = threading.Thread(target=fit)
        thread.start()
        try:
            poll_for(lambda: running_fit(client) is not None, timeout=60)
            topic = running_fit(client)
            assert topic is not None
            # Pushed once both workers joined: before, it would be unknown.
            poll_for(
                lambda: None not in subscriptions(client, topic).values(), timeout=60
            )
            shapes = set(subscriptions(client, topic).values())
            assert shapes == {(1, X.shape[1] + 1)}  # [weights | intercept]
            shape = shapes.pop()
            cases = malformed(shape)
            replies = {
                (name, address): client.sync(
                    push, address, message(topic, shape, fields)
                )
                for address in client.scheduler_info()["workers"]
                for name, fields, _ in cases
            }
            # The fit still ran while every message was refused.
            still_training = running_fit(client) == topic
        finally:
            thread.join(timeout=180)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert still_training, "the fit ended before every message was pushed"

        expected = {name: reason for name, _, reason in cases}
        for (name, _), reply in replies.items():
            assert reply == {"status": "refused", "reason": expected[name]}, name
        # Counted by reason on each worker, once per message pushed there.
        after = refusals(client)
        pushed: dict[str, int] = {}
        for reason in expected.values():
            pushed[reason] = pushed.get(reason, 0) + 1
        for address, counts in after.items():
            for reason, n in pushed.items():
                assert counts.get(reason, 0) - before[address].get(reason, 0) == n
        # Nothing of it reached the model.
        assert np.isfinite(model.coef_).all()
        assert abs(model.score(X_test, y_test) - clean_accuracy) <= 0.01
