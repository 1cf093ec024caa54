"""The operations of the queue below any transport: arguments -> command -> submit -> answer.

Used by the HTTP handlers (``raftq.server``) and by the embedded node (``raftq.node.embedded``);
nothing here knows HTTP, and every error raised is one of ``raftq.errors``.

- ``operations``: ``Service``, each operation written once (validation, command, answer);
- ``claims``: the long-poll claim rounds;
- ``access``: the caller (``CALLER``) and its queue rules;
- ``fields``, ``values``: validation of arguments and of user values (payloads, results);
- ``render``: domain objects as the API's answer shapes; ``refusals``: core refusals as
  ``Rejected``; ``request_ids``: request ids in the caller's scope.
"""
