"""``App.openapi()`` (and ``raftq tasks --openapi``) describes what goes over the wire: the
payload each task's enqueue sends validates against its schema, a wrong one does not, and a
task's stored result validates against its result schema."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

import raftq
from examples.typed_tasks import Order, Receipt, app, bill, send_email
from tests.worker.conftest import REPO


def _validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    root = {**doc["components"]["schemas"][name], "components": doc["components"]}
    return jsonschema.Draft202012Validator(root)


def test_each_tasks_payload_and_result_match_the_document() -> None:
    doc = app.openapi()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/v1/queues/emails/jobs", "/v1/queues/billing/jobs"}
    email = _validator(doc, "send_email.payload")
    email.validate(send_email.payload("ada@example.com", subject="hi"))
    order = Order(id=3, items=["pen"], total_cents=120)
    billing = _validator(doc, "bill.payload")
    billing.validate(bill.payload(order, currency="USD"))
    wrong = [
        {"task": "send_email", "args": [], "kwargs": {"to": "a"}},  # no subject
        {"task": "send_email", "args": [], "kwargs": {"to": 1, "subject": "s"}},
        {"task": "bill", "args": [], "kwargs": {"order": {"id": 1, "items": []}}},
        {"task": "bill", "args": [], "kwargs": {"order": order.model_dump(), "x": 1}},
        {"task": "send_email", "args": ["a@b"], "kwargs": {"subject": "s"}},  # not positional
    ]
    for payload in wrong:
        assert not (email.is_valid(payload) or billing.is_valid(payload)), payload
    receipt = Receipt(order_id=3, lines=1, total="1.20 EUR")
    _validator(doc, "bill.result").validate(receipt.model_dump(mode="json"))
    assert not _validator(doc, "bill.result").is_valid({"order_id": "x"})


def test_positional_and_variadic_parameters_keep_their_place() -> None:
    a = raftq.App("127.0.0.1:1")

    @a.task(name="f")
    def f(x: int, /, y: int, *rest: int, z: int = 0, **more: str) -> int:
        return x + y + sum(rest) + z

    payload = f.payload(1, 2, 3, 4, z=5, w="w")
    assert payload == {"task": "f", "args": [1, 2, 3, 4], "kwargs": {"z": 5, "w": "w"}}
    _validator(a.openapi(), "f.payload").validate(payload)
    assert not _validator(a.openapi(), "f.payload").is_valid({**payload, "args": [1, "2"]})
    assert f._codec.load_args(payload) == ([1, 2, 3, 4], {"z": 5, "w": "w"})
    with pytest.raises(TypeError):
        f.payload(1)  # type: ignore[call-arg]


@pytest.mark.integration  # the command in a process of its own
def test_raftq_tasks_lists_them_and_prints_the_document() -> None:
    def run(*extra: str) -> str:
        argv = [sys.executable, "-m", "raftq", "tasks", "examples.typed_tasks:app", *extra]
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run().splitlines() == [
        "send_email\tqueue emails\tsend_email(to: str, subject: str, body: str = '') -> bool",
        "bill\tqueue billing\tbill(order: examples.typed_tasks.Order, *, currency: str = 'EUR')"
        " -> examples.typed_tasks.Receipt",
    ]
    assert json.loads(run("--openapi")) == app.openapi()
