"""What the storage code does differently so that it also runs on Citus.

Migration 0011 distributes the run tables by ``run_id`` on a Citus cluster (docs/scaling.md).
The code has one path for both backends; where Citus forbids what a single PostgreSQL
allows, the single-node path was changed to the form both accept, and the reason is here:

* **One run per (experiment, run key).** Citus keeps no unique constraint that does not
  include the distribution column, so ``UNIQUE (experiment_id, run_key)`` cannot exist
  on a distributed ``runs``. A keyed run's id is therefore *derived* from its experiment
  and key (:func:`keyed_run_id`): two CreateRuns of one key insert the same primary key
  and the second one conflicts, on one shard, exactly as the unique constraint made it
  conflict before. Runs created before this rule (random ids) are found by key first.
* **Row locks only on one shard.** ``SELECT ... FOR UPDATE`` must route to a single shard
  on Citus, so rows are locked by ``run_id`` (a run's rows share a shard), never by a
  predicate that spans runs: the writer-offset fence of a flush locks run by run
  (:data:`LOCK_OFFSETS_OF_RUN_SQL`), a keyed run is locked by its id.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import Connection

RUN_KEY_NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-5e7f-9a0b-1c2d3e4f5a6b")
"""uuid5 namespace of keyed run ids. Never change it: existing runs carry ids made in it."""


def keyed_run_id(experiment_id: uuid.UUID, run_key: str) -> uuid.UUID:
    """The run id of ``run_key`` in ``experiment_id`` (the same on every server)."""
    return uuid.uuid5(RUN_KEY_NAMESPACE, f"{experiment_id}/{run_key}")


# One run's offset rows (one shard): FOR UPDATE routes to a single shard on Citus.
LOCK_OFFSETS_OF_RUN_SQL = """
SELECT o.run_id, o.writer_id, o.committed_seq
FROM writer_offsets o
WHERE o.run_id = %s AND o.writer_id = ANY(%s::text[])
ORDER BY o.writer_id
FOR UPDATE OF o
"""


def is_citus(conn: Connection[Any]) -> bool:
    """Whether this database runs in Citus schema mode (``runs`` distributed)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
    ).fetchone()
    if not (row and row[0]):
        return False
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'runs'::regclass)"
    ).fetchone()
    return bool(row and row[0])
