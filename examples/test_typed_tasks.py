"""Testing your tasks without a cluster: a real one-node raftq in the test's process.

    pytest -p raftq.testing examples/test_typed_tasks.py

(or `pytest_plugins = ["raftq.testing"]` in your conftest.py). The fixture `raftq_node` is a
started `raftq.testing.LocalNode`; the app is pointed at it, and a worker runs its tasks on a
thread of its own for the test.
"""

from __future__ import annotations

import pydantic
import pytest

from examples.typed_tasks import Order, app, bill, send_email
from raftq.testing import LocalNode, running_sync


# --8<-- [start:test]
def test_a_bill_and_its_email(raftq_node: LocalNode) -> None:
    app.configure(nodes=raftq_node.url)
    with running_sync(app.worker(concurrency=2)):
        receipt = bill.enqueue_sync(Order(id=1, items=["tea"], total_cents=350)).wait(5_000)
        assert (receipt.lines, receipt.total) == (1, "3.50 EUR")
        assert send_email.enqueue_sync(to="ada@example.com", subject="Receipt").wait(5_000)


def test_an_order_without_items_is_refused_before_it_is_enqueued(raftq_node: LocalNode) -> None:
    app.configure(nodes=raftq_node.url)
    with pytest.raises(pydantic.ValidationError, match="at least 1 item"):
        bill.enqueue_sync(Order.model_construct(id=2, items=[], total_cents=0))


# --8<-- [end:test]
