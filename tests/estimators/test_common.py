"""scikit-learn's estimator checks, run through the embedded Dask cluster."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from dask_asgd import ASGDClassifier, ASGDKMeans, ASGDRegressor

_SAMPLE_WEIGHT_REASON = (
    "sample_weight is not equivalent to removing/repeating samples: the same "
    "waiver scikit-learn declares for its own SGDClassifier/SGDRegressor, because "
    "a weighted sample is one step of a larger size, not several steps"
)
_KMEANS_SAMPLE_WEIGHT_REASON = (
    "sample_weight is not equivalent to removing/repeating samples: the same "
    "waiver scikit-learn declares for its own MiniBatchKMeans, because repeated "
    "rows change which rows share a minibatch, and so the path of the centers"
)


def _expected_failed_checks(estimator):
    reason = (
        _KMEANS_SAMPLE_WEIGHT_REASON
        if isinstance(estimator, ASGDKMeans)
        else _SAMPLE_WEIGHT_REASON
    )
    return {
        "check_sample_weight_equivalence_on_dense_data": reason,
        "check_sample_weight_equivalence_on_sparse_data": reason,
    }


# Ten epochs, not scikit-learn's five: after five epochs of the 'optimal'
# schedule on the check's 300-row blobs, accuracy lands either side of the
# check's 0.83 threshold depending on the shuffle seed (measured over seeds
# 0-5: SGDClassifier 0.85-0.94, ours 0.82-0.93). After ten it is 0.89-0.94
# for both over seeds 0-11, so the check tests the estimator, not seed luck.
@parametrize_with_checks(
    [ASGDClassifier(max_iter=10), ASGDRegressor(max_iter=10), ASGDKMeans(n_clusters=3)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
