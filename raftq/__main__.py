"""``python -m raftq``: the same as the ``raftq`` command."""

from raftq.cli.main import main_entry

if __name__ == "__main__":
    main_entry()
