"""The operations of the queue below any transport: arguments -> command -> submit -> answer.

Used by the HTTP handlers (``raftq.server``) and by the embedded node (``raftq.node.embedded``).
"""
