"""Models the training loop can run: one module per model, no Dask.

A learner gives the loop what it needs (see :class:`Learner`): one step over
rows, the epoch's values to sum over workers, the stopping decision, the
exchanged matrix and the final average.
"""

from ._protocol import ExchangedState, Learner, LearnerRun, Partition
from ._stopping import Decision, SmoothedInertiaRule, StoppingRule
from .kmeans import KMeansLearner, KMeansState
from .linear import LinearLearner, LinearState

__all__ = [
    "Decision",
    "ExchangedState",
    "KMeansLearner",
    "KMeansState",
    "Learner",
    "LearnerRun",
    "LinearLearner",
    "LinearState",
    "Partition",
    "SmoothedInertiaRule",
    "StoppingRule",
]
