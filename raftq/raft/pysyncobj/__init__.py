"""The Raft engine on PySyncObj 0.3.17: everything in raftq that imports ``pysyncobj``.

``new_pysyncobj_engine(config, node_id)`` builds a ``PySyncObjEngine`` (a
``raftq.raft.engine.LogEngine``) with raftq's journal (``journal``), follower commit rule
(``commit_rule``), snapshot file hooks (``snapshot_hooks``), election hold
(``election_hold``) and state-machine consumer (``replica``). Each module's docstring lists
the PySyncObj private names it relies on and the test that guards each.

Relies on PySyncObj 0.3.17 private behaviour: none itself (see each module).
"""

from __future__ import annotations

from raftq.raft.pysyncobj.engine import PySyncObjEngine, new_pysyncobj_engine

__all__ = ["PySyncObjEngine", "new_pysyncobj_engine"]
