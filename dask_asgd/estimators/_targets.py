"""Targets of the linear models: classes, class weights and target encoders.

The encoders turn labels into what the kernel trains on. They are small
picklable classes because, with Dask input, they run on the workers that hold
the labels; with in-memory input the driver applies them. Classes and class
weights are found here for both kinds of input, so that a NumPy array and the
same data in a Dask array train the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._input import TrainingData


class _LabelTargets:
    """Labels of known ``classes``; a label outside them raises ValueError."""

    def __init__(self, classes: np.ndarray) -> None:
        self.classes = classes

    def _class_index(self, y: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.classes, y)
        index = np.clip(index, 0, self.classes.shape[0] - 1)
        if not np.array_equal(self.classes[index], y):
            unknown = np.setdiff1d(np.unique(y), self.classes)
            raise ValueError(
                f"y contains labels {unknown.tolist()} that are not in classes "
                f"{self.classes.tolist()}"
            )
        return index


class BinaryTargets(_LabelTargets):
    """Labels of two classes -> +1 for ``classes[1]``, -1 for ``classes[0]``."""

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return np.where(self._class_index(y) == 1, 1.0, -1.0)


class ClassIndexTargets(_LabelTargets):
    """Labels -> index in ``classes``, as float64 (one-vs-rest multiclass)."""

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return self._class_index(y).astype(np.float64)


class RealTargets:
    """Regression targets as float64."""

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)


@dataclass(frozen=True)
class LinearTargets:
    """What a linear model trains toward: encoder, outputs and class weights.

    ``positive_weight[k]`` weighs the rows of class ``k`` in output ``k``'s
    loss, ``negative_weight[k]`` the other rows (a binary model has one
    output, for ``classes[1]``).
    """

    encoder: Callable[[np.ndarray], np.ndarray]
    n_outputs: int
    positive_weight: np.ndarray
    negative_weight: np.ndarray

    @classmethod
    def classification(
        cls, classes: np.ndarray, class_weight: np.ndarray
    ) -> LinearTargets:
        """Targets of a classifier of ``classes`` with these class weights."""
        class_weight = np.asarray(class_weight, dtype=np.float64)
        if classes.shape[0] == 2:
            return cls(BinaryTargets(classes), 1, class_weight[1:2], class_weight[0:1])
        return cls(
            ClassIndexTargets(classes),
            classes.shape[0],
            class_weight,
            np.ones_like(class_weight),
        )

    @classmethod
    def regression(cls) -> LinearTargets:
        """Targets of a regressor: the real values, unweighted."""
        return cls(RealTargets(), 1, np.ones(1), np.ones(1))


def find_classes(data: TrainingData, classes: Any, discover: bool) -> Any:
    """The classes of a fit: ``classes``, else with ``discover`` the sorted
    labels of ``y``; checked as classification targets, as scikit-learn does.
    """
    if classes is None and discover:
        classes = data.labels()[0]
    if not data.is_dask:
        check_classification_targets(data.y)
    elif classes is not None:
        # Dask labels are only read on the workers: the classes stand for them.
        check_classification_targets(np.asarray(classes))
    return classes


def class_weights(
    class_weight: dict | str | None, classes: np.ndarray, data: TrainingData
) -> np.ndarray:
    """Weight of each of ``classes``, as scikit-learn's ``compute_class_weight``.

    ``"balanced"`` weighs a class ``n_samples / (n_labels * count)``, where
    ``n_labels`` is the number of distinct labels in ``y`` and ``count`` the
    class's rows, counted in memory or on the cluster; a class absent from
    ``y`` weighs 1.

    Parameters
    ----------
    class_weight : dict, "balanced" or None
        The estimator's parameter.
    classes : ndarray of shape (n_classes,)
        Sorted classes.
    data : TrainingData
        The checked training input, whose labels ``"balanced"`` counts.

    Returns
    -------
    ndarray of shape (n_classes,), float64
    """
    if not (isinstance(class_weight, str) and class_weight == "balanced"):
        # A dict or None does not depend on y.
        return compute_class_weight(class_weight, classes=classes, y=classes)
    labels, counts = data.labels()
    count_of = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    n_samples, n_labels = float(counts.sum()), labels.shape[0]
    return np.array(
        [
            n_samples / (n_labels * count_of[c]) if c in count_of else 1.0
            for c in classes.tolist()
        ],
        dtype=np.float64,
    )
