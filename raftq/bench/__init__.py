"""raftq.bench: the benchmark behind ``raftq bench`` and ``make bench``.

A fresh local cluster of real ``raftq serve`` processes (``cluster``), the workload of the
peers' script ``../shared/bench-peers/bench.py`` through ``raftq.client`` (``workload``), the
peers themselves (``peers``) and the run as a whole (``runner``). Not imported by the node.
"""
