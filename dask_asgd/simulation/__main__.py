"""Command line of the simulator: ``python -m dask_asgd.simulation <experiment>``.

Experiments (each prints a table; ``--plot PATH`` also draws it):

``validate``
    The real 2-worker fit on a local cluster against the simulation of the
    same fit (compute speed calibrated from the real run): training loss per
    epoch for off, fixed and adaptive.
``efficiency``
    Epochs to a target objective for N workers, per communication mode.
``speedup``
    Simulated seconds to the target against N, on 10 and 1 Gbit/s links.
``balancing``
    The balancer at many workers: messages lost, bytes per worker per second
    and the spread of the workers' states, with a mid-fit bandwidth drop and
    slow workers.
"""

from __future__ import annotations

import argparse

from ._experiments import EXPERIMENTS, add_arguments


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run one experiment."""
    parser = argparse.ArgumentParser(
        prog="python -m dask_asgd.simulation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    add_arguments(parser)
    args = parser.parse_args(argv)
    EXPERIMENTS[args.experiment](args)


if __name__ == "__main__":
    main()
