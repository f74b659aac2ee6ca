"""scikit-learn estimators trained by ASGD on Dask."""

from ._linear import ASGDClassifier, ASGDRegressor

__all__ = ["ASGDClassifier", "ASGDRegressor"]
