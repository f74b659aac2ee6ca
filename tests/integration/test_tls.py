"""A TLS cluster, with certificates made in the test, trains every estimator."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.datasets import make_blobs, make_classification, make_regression
from sklearn.linear_model import SGDClassifier

from dask_asgd import ASGDClassifier, ASGDKMeans, ASGDRegressor
from tests._cluster_checks import assert_fit_left_nothing

# The test extra installs cryptography, which Security.temporary() needs.
pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def tls_client():
    from distributed.security import Security

    # A self-signed certificate made now, required for every connection.
    security = Security.temporary()
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            protocol="tls://",
            security=security,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster, security=security, set_as_default=False) as client,
    ):
        yield client


def test_every_estimator_trains_over_tls(tls_client):
    workers = tls_client.sync(tls_client.scheduler.identity, n_workers=-1)["workers"]
    assert all(address.startswith("tls://") for address in workers)
    X, y = make_classification(20_000, 10, random_state=0)
    with tls_client.as_current():
        classifier = ASGDClassifier(
            communication="fixed", send_interval=512, max_iter=5, tol=None,
            random_state=0, min_rows_per_worker=1000,
        )  # fmt: skip
        # The first fit opens the TLS connections between the workers; sends
        # still in flight when a fit ends are cancelled, and a handshake can
        # outlast a fit this short. The second fit sends over them.
        classifier.fit(X, y)
        classifier.fit(X, y)
        history = classifier.history_
        last = history[history["epoch"] == history["epoch"].max()]
        # The states went peer to peer, over the TLS connections.
        assert (last["messages_sent"] > 0).all() and len(last) == 2
        # As good as scikit-learn's SGD with the same epochs, whose accuracy
        # on these rows spreads over 0.78-0.83 with its random state.
        sklearn_scores = [
            SGDClassifier(max_iter=5, tol=None, random_state=seed).fit(X, y).score(X, y)
            for seed in range(5)
        ]
        assert classifier.score(X, y) > min(sklearn_scores) - 0.01
        X_r, y_r = make_regression(20_000, 10, noise=1.0, random_state=0)
        regressor = ASGDRegressor(max_iter=5, random_state=0).fit(X_r, y_r)
        assert regressor.score(X_r, y_r) > 0.9
        X_b, _ = make_blobs(20_000, 5, centers=3, random_state=0)
        kmeans = ASGDKMeans(3, random_state=0, max_iter=3).fit(X_b)
        assert np.isfinite(kmeans.cluster_centers_).all()
    assert_fit_left_nothing(tls_client)
