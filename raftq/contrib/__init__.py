"""Integrations with other frameworks; each sub-package needs its optional extra
(``raftq.contrib.django``: ``raftq[django]``)."""
