"""The voters a node starts with: the replicated membership, never the TOML's once the data dir
has one.

Raft's rule: a node's configuration is the latest one in its log. PySyncObj 0.3.17 with
``dynamicMembershipChange`` applies a membership entry when it is appended (and reverts it when
the entry is truncated); at a restart it takes the cluster stored in the dump (our snapshot
header's ``cluster``) but does NOT replay the membership entries of its journal after it, and
without a dump it takes the ``otherNodes`` it is given. Giving it the TOML's nodes let a node
whose TOML was edited count another majority than its peers (issue 19: edit the TOML to five
nodes, roll the restarts, two leaders at once and acknowledged jobs lost). So the engine gives
it what ``start_membership`` computes from the data dir, in Raft's order:

1. ``raft.members``: the voters the dir was bootstrapped with (written once, when the dir was
   new: the TOML's nodes then);
2. the snapshot's cluster, if there is a snapshot (it replaces 1);
3. every membership entry of the journal after the snapshot, in log order.

The TOML's list is used only for a new dir. When it differs from the persisted one the node
says so once (``mismatch``), and keeps the persisted one.

Relies on PySyncObj 0.3.17 private behaviour: a membership entry is the byte
``_COMMAND_TYPE.MEMBERSHIP`` (2) followed by the pickle of ``['add' | 'rem', node_id, node]``
(``addNodeToCluster``/``removeNodeFromCluster``): guarded by
``tests/raft/test_membership.py`` (entries written by a real SyncObj are read back here).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass, replace

from raftq.errors import DataError, MembershipError
from raftq.raft.datadir import DUMP_FILE, JOURNAL_FILE, MEMBERS_FILE
from raftq.raft.log_file import read_entries
from raftq.raft.snapshot_file import fsync_dir, read_header

__all__ = [
    "MembersFile",
    "RemovedNodeError",
    "StartMembership",
    "derive_cluster_id",
    "mark_caught_up",
    "membership_change",
    "read_members_file",
    "remember_members",
    "start_membership",
    "write_members",
    "write_members_file",
]

logger = logging.getLogger(__name__)

_MEMBERSHIP = 2  # pysyncobj.syncobj._COMMAND_TYPE.MEMBERSHIP


@dataclass(frozen=True, slots=True)
class StartMembership:
    """The voters (raft addresses, this node's included) to start with."""

    members: tuple[str, ...]
    persisted: bool  # from the data dir (else the TOML's, for a new dir)
    mismatch: str | None  # how the TOML differs from the persisted membership, if it does
    # The data dir has not caught up with a leader yet (new or wiped disk, or a crash before
    # the first catch-up): the node must grant no vote to a candidate with history.
    fresh: bool = False
    cluster_id: str = ""  # the cluster this data dir belongs to


class RemovedNodeError(MembershipError):
    """The persisted membership no longer holds this node."""


def membership_change(command: bytes) -> tuple[str, str] | None:
    """``("add" | "rem", raft address)`` if the log entry ``command`` is a membership change."""
    if not command or command[0] != _MEMBERSHIP:
        return None
    request = pickle.loads(command[1:])  # our own journal: written by this node's PySyncObj
    kind, node_id = request[0], request[1]
    if kind not in ("add", "rem"):
        return None
    return str(kind), str(node_id)


@dataclass(frozen=True, slots=True)
class MembersFile:
    """What ``raft.members`` holds: the voters the dir was bootstrapped with, whether it has
    caught up with a leader once, and where members the config does not list are reached
    (``{raft: (id, api)}``, learnt from membership changes)."""

    members: frozenset[str]
    caught_up: bool = True
    directory: tuple[tuple[str, str, str], ...] = ()  # (raft, id, api), sorted
    cluster_id: str = ""  # fixed at bootstrap (derive_cluster_id), or the joined cluster's


def derive_cluster_id(name: str, members: Iterable[str]) -> str:
    """The id of a cluster bootstrapped as ``name`` with the voters ``members``: what every node
    of it computes alike from the same TOML, and what a joining node takes over."""
    text = "\n".join([name, *sorted(members)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_members(
    data_dir: str, members: Iterable[str], *, caught_up: bool = True, cluster_id: str = ""
) -> None:
    """Write a new ``raft.members`` (no directory)."""
    write_members_file(data_dir, MembersFile(frozenset(members), caught_up, cluster_id=cluster_id))


def write_members_file(data_dir: str, f: MembersFile) -> None:
    """Write ``raft.members`` durably (temp file, fsync, rename, directory fsync)."""
    path = os.path.join(data_dir, MEMBERS_FILE)
    tmp = path + ".tmp"
    value = {
        "members": sorted(f.members),
        "caught_up": f.caught_up,
        "cluster_id": f.cluster_id,
        "directory": {raft: {"id": i, "api": api} for raft, i, api in f.directory},
    }
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(value, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(data_dir)


def read_members_file(data_dir: str) -> MembersFile | None:
    """``raft.members``, or None without the file (``DataError`` if it is damaged)."""
    path = os.path.join(data_dir, MEMBERS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DataError(path, f"unreadable ({e})", "membership") from e
    members = value.get("members") if isinstance(value, dict) else None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise DataError(path, "not a membership file (no list of members)", "membership")
    directory = value.get("directory") or {}
    if not isinstance(directory, dict):
        raise DataError(path, "not a membership file (bad directory)", "membership")
    entries = tuple(
        sorted(
            (str(raft), str(info.get("id")), str(info.get("api")))
            for raft, info in directory.items()
            if isinstance(info, dict)
        )
    )
    cluster_id = value.get("cluster_id")
    return MembersFile(
        frozenset(members),
        value.get("caught_up") is not False,
        entries,
        cluster_id if isinstance(cluster_id, str) else "",
    )


def mark_caught_up(data_dir: str) -> None:
    """Record that the dir caught up with a leader (its node votes normally from now on)."""
    found = read_members_file(data_dir)
    if found is not None and not found.caught_up:
        write_members_file(data_dir, replace(found, caught_up=True))


def remember_members(data_dir: str, known: dict[str, tuple[str, str]]) -> None:
    """Add ``known`` (``{raft: (id, api)}``) to the directory of ``raft.members``."""
    found = read_members_file(data_dir)
    if found is None:
        return
    directory = {raft: (i, api) for raft, i, api in found.directory}
    if all(directory.get(raft) == info for raft, info in known.items()):
        return
    directory.update(known)
    entries = tuple(sorted((raft, i, api) for raft, (i, api) in directory.items()))
    write_members_file(data_dir, replace(found, directory=entries))


def _journal_entries(path: str) -> list[tuple[bytes, int, int]]:
    return read_entries(path)  # either journal format, read-only (raftq.raft.log_file)


def start_membership(
    data_dir: str, self_raft: str, toml: Iterable[str], cluster_id: str = ""
) -> StartMembership:
    """The voters node ``self_raft`` starts with (see the module docstring). A new dir (no
    members file, no journal) takes ``toml`` (the config's nodes, or the cluster's members
    for a node that joins) and records it with ``cluster_id``. The data dir was checked
    (``check_data_dir``)."""
    toml_set = set(toml)
    found = read_members_file(data_dir)
    if found is not None and not found.cluster_id:
        found = replace(found, cluster_id=cluster_id)
        write_members_file(data_dir, found)
    members = None if found is None else set(found.members)
    fresh = found is not None and not found.caught_up
    last_in_snapshot = 0
    dump = os.path.join(data_dir, DUMP_FILE)
    journal = os.path.join(data_dir, JOURNAL_FILE)
    if found is None and not os.path.exists(journal):
        # A new dir (a new or wiped disk: it has caught up with nobody), or one seeded by
        # `raftq data restore` (a snapshot, no journal: every node of a new cluster starts
        # from the same one, and its cluster is the old one's): bootstrapped from the TOML.
        fresh = not os.path.exists(dump)
        write_members(data_dir, toml_set, caught_up=not fresh, cluster_id=cluster_id)
        return StartMembership(
            tuple(sorted(toml_set)),
            persisted=False,
            mismatch=None,
            fresh=fresh,
            cluster_id=cluster_id,
        )
    if os.path.exists(dump):
        header = read_header(dump)
        members = set(header.cluster)
        last_in_snapshot = header.last[1]
    persisted = members is not None
    if members is None:
        # A dir written before raft.members existed, without a snapshot: the TOML's nodes
        # are the ones it was bootstrapped with (the membership could not change then).
        write_members(data_dir, toml_set, cluster_id=cluster_id)
        members = set(toml_set)
    for command, idx, _term in _journal_entries(journal):
        change = membership_change(command) if idx > last_in_snapshot else None
        if change is None:
            continue
        persisted = True
        kind, address = change
        if kind == "add":
            members.add(address)
        else:
            members.discard(address)
    own_id = cluster_id if found is None else found.cluster_id
    if not persisted:
        return StartMembership(
            tuple(sorted(members)),
            persisted=False,
            mismatch=None,
            fresh=fresh,
            cluster_id=own_id,
        )
    if self_raft not in members:
        raise RemovedNodeError(
            f"this node ({self_raft}) was removed from the cluster (its members are now "
            f"{', '.join(sorted(members))}): it stays out; to bring it back, wipe its data dir, "
            "then start it with --join"
        )
    return StartMembership(
        tuple(sorted(members)),
        persisted=True,
        mismatch=_difference(members, toml_set),
        fresh=fresh,
        cluster_id=own_id,
    )


def _difference(persisted: set[str], toml: set[str]) -> str | None:
    if persisted == toml:
        return None
    parts = []
    if extra := sorted(toml - persisted):
        parts.append(f"the config lists {', '.join(extra)} which the cluster does not have")
    if missing := sorted(persisted - toml):
        parts.append(f"the cluster has {', '.join(missing)} which the config does not list")
    return "; ".join(parts)
