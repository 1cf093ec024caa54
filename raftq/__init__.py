"""raftq: a distributed job queue with no external broker, replicated with Raft."""

__version__ = "0.1.0"
