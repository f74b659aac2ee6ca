"""A planning tool: ASGD on N simulated workers, with the project's real code.

Everything but the network and the machines is the real thing: kernels,
learners and their stopping rules, the worker loop, the communicator, the
Parzen merge, the mailbox, the balancing law and the final average. Time is
simulated, so 1,000 workers cost about what training all their rows once
costs. See :func:`simulate_fit` and ``python -m dask_asgd.simulation --help``.
"""

from ._engine import SimulatedFit, simulate_fit
from ._estimator import simulate, split_rows
from ._network import LinkModel

__all__ = ["LinkModel", "SimulatedFit", "simulate", "simulate_fit", "split_rows"]
