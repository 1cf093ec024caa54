"""The peers of ``raftq bench --peers``: NATS JetStream (3 servers, R3), a RabbitMQ quorum
queue and arq on Redis, measured with the workload of ``raftq.bench.phases`` on this machine.

``install`` installs the servers (Debian packages) and the peers' Python clients (a venv of
the benchmark's own, under the user's cache directory) if missing; ``servers`` starts and stops
each peer's servers on loopback; ``drive`` runs the phases with each peer's client, inside
that venv; ``run`` ties them together. Importing this package imports nothing else: ``drive``
must import in a venv that holds the peers' clients and not raftq's dependencies.
"""
