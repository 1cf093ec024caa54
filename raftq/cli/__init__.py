"""The ``raftq`` command line, one module per command family.

``main`` parses the arguments and dispatches; ``common`` holds the exit codes, the parser
class and the usage errors; ``client`` (enqueue, claim, jobs, queues, status...), ``worker``,
``top``, ``data`` (verify, backup, restore), ``token``, ``bench`` and ``cluster`` (``cluster
up``: a local cluster of node processes) add their sub-commands.
"""
