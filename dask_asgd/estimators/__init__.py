"""scikit-learn estimators trained by ASGD on Dask."""

from ._kmeans import ASGDKMeans
from ._linear import ASGDClassifier, ASGDRegressor

__all__ = ["ASGDClassifier", "ASGDKMeans", "ASGDRegressor"]
