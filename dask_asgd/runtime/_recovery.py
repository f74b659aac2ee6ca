"""Build a lost worker's rows again on the workers that are left.

When a worker leaves a running fit, its rows go with it. The driver still
holds in-memory input, so it cuts the lost block into one piece per surviving
worker and scatters each piece there. Dask input is rebuilt from its chunks:
a chunk the lost worker held is recomputed by Dask where its graph allows;
where it does not (data scattered by hand, say), its rows are reported lost.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..learners import Partition
from ._placement import DaskRows, InMemoryRows, Placement, _block_partition, _take_rows

logger = logging.getLogger(__name__)


@dataclass
class ReplacementBlock:
    """Rows of a lost member built again on one surviving worker."""

    #: The name of the member that trains on them.
    name: str
    #: The surviving worker that holds them.
    worker: str
    #: Handle of the rows (futures of Partitions), as a placement holds them.
    partitions: Any
    #: Training rows.
    n_train: int


@dataclass
class Replaced:
    """What could be built again of a lost worker's rows."""

    blocks: list[ReplacementBlock] = field(default_factory=list)
    #: Training rows that could not be built again.
    rows_lost: int = 0
    #: Why, in words.
    detail: str = ""


class Replacer(Protocol):
    """Builds lost members' rows again (see :class:`ClusterReplacer`)."""

    def replace(
        self, worker: str, members: list[str], survivors: list[str]
    ) -> Replaced:
        """Place the rows of ``members``, lost with ``worker``, on ``survivors``."""


class ClusterReplacer:
    """Builds lost rows again on a Dask cluster, from a fit's placement.

    Parameters
    ----------
    client : distributed.Client
    rows : InMemoryRows or DaskRows
        The fit's input, as the estimator validated it.
    placement : Placement
        Where the rows were placed; the futures made here join its
        ``owned`` list, so that the fit's end releases them.
    """

    def __init__(
        self, client: Any, rows: InMemoryRows | DaskRows, placement: Placement
    ) -> None:
        self.client = client
        self.rows = rows
        self.placement = placement
        #: Member name -> what its rows were built from.
        self.origins: dict[str, Any] = dict(placement.origins)
        self._names: Counter[str] = Counter()

    def replace(
        self, worker: str, members: list[str], survivors: list[str]
    ) -> Replaced:
        """Place the rows of ``members`` (lost with ``worker``) on ``survivors``."""
        replaced = Replaced()
        for member in members:
            for future in self.placement.partitions.pop(member, []):
                # Its task may wait for the lost worker forever otherwise.
                future.release()
            origin = self.origins.pop(member, None)
            if origin is None:
                continue
            if isinstance(origin, np.ndarray):
                pieces = self._scatter(worker, origin, survivors)
            else:
                pieces = self._rebuild_chunks(worker, origin, survivors, replaced)
            replaced.blocks.extend(pieces)
        return replaced

    def _name(self, survivor: str, worker: str) -> str:
        base = f"{survivor}/replacing/{worker}"
        self._names[base] += 1
        count = self._names[base]
        return base if count == 1 else f"{base}#{count}"

    def _scatter(
        self, worker: str, block: np.ndarray, survivors: list[str]
    ) -> list[ReplacementBlock]:
        """Cut an in-memory block into one piece per survivor and scatter it."""
        rows = self.rows
        assert isinstance(rows, InMemoryRows)
        pieces = []
        for survivor, part in zip(
            survivors, np.array_split(block, len(survivors)), strict=True
        ):
            if not part.size:
                continue
            held_out = rows.validation[part] if rows.validation is not None else None
            partition = Partition(
                X=_take_rows(rows.X, part),
                targets=rows.targets[part] if rows.targets is not None else None,
                sample_weight=rows.sample_weight[part],
                validation=held_out,
            )
            [future] = self.client.scatter([partition], workers=[survivor], hash=False)
            self.placement.owned.append(future)
            name = self._name(survivor, worker)
            self.origins[name] = part
            n_held = int(held_out.sum()) if held_out is not None else 0
            pieces.append(
                ReplacementBlock(name, survivor, [future], part.size - n_held)
            )
        return pieces

    def _rebuild_chunks(
        self,
        worker: str,
        chunks: list[tuple[Any, ...]],
        survivors: list[str],
        replaced: Replaced,
    ) -> list[ReplacementBlock]:
        """Build Dask chunks' partitions again, spread over the survivors.

        Waits for them: a chunk Dask cannot recompute is known only then, and
        its rows are counted in ``replaced.rows_lost``.
        """
        rows = self.rows
        assert isinstance(rows, DaskRows)
        built: dict[str, list[tuple[Any, tuple[Any, ...]]]] = {}
        for index, chunk in enumerate(chunks):
            survivor = survivors[index % len(survivors)]
            x_chunk, y_chunk, w_chunk, seed, _ = chunk
            future = self.client.submit(
                _block_partition,
                x_chunk,
                y_chunk,
                w_chunk,
                rows.encode,
                rows.dtype,
                rows.validation_fraction,
                seed,
                workers=[survivor],
                allow_other_workers=False,
                pure=False,
            )
            self.placement.owned.append(future)
            built.setdefault(survivor, []).append((future, chunk))
        pieces = []
        for survivor, parts in built.items():
            kept = []
            for future, chunk in parts:
                try:
                    future.result()
                except Exception as error:
                    replaced.rows_lost += int(chunk[-1])
                    replaced.detail = f"a chunk could not be recomputed: {error!r}"
                    logger.warning("Rows of %s are lost: %r", worker, error)
                    future.release()
                    continue
                kept.append((future, chunk))
            if kept:
                name = self._name(survivor, worker)
                self.origins[name] = [chunk for _, chunk in kept]
                n_train = sum(int(chunk[-1]) for _, chunk in kept)
                futures = [future for future, _ in kept]
                pieces.append(ReplacementBlock(name, survivor, futures, n_train))
        return pieces
