"""raftq.bench: the benchmark behind ``raftq bench`` and ``make bench``.

What every system is measured doing (``phases``), a fresh local cluster of real ``raftq serve``
processes (``cluster``), those phases run through ``raftq.client`` (``workload``), the peers
measured with the same phases (``peers``) and the run as a whole (``runner``). Not imported by
the node.
"""
