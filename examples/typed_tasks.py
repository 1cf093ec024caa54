"""Typed tasks: functions whose enqueues mypy checks, run by the worker with the same arguments.

    raftq worker examples.typed_tasks:app        # runs every task of the app
    python examples/typed_tasks.py               # enqueues a few and prints their results

The nodes come from RAFTQ_NODES (default: the three of `make run`). The models need pydantic
(`pip install 'raftq[pydantic]'`): arguments are validated when they are enqueued and again in
the worker, and `wait()` gives the result back as the annotated type.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel, Field

import raftq

NODES = os.environ.get("RAFTQ_NODES", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")


# --8<-- [start:tasks]
app = raftq.App(NODES)


class Order(BaseModel):
    id: int
    items: list[str] = Field(min_length=1)
    total_cents: int = Field(ge=0)


class Receipt(BaseModel):
    order_id: int
    lines: int
    total: str


@app.task(queue="emails", max_attempts=5)
async def send_email(to: str, subject: str, body: str = "") -> bool:
    await asyncio.sleep(0.01)  # the mail server's round trip
    return "@" in to


@app.task(queue="billing")
def bill(order: Order, *, currency: str = "EUR") -> Receipt:  # sync: runs in a worker thread
    total = f"{order.total_cents / 100:.2f} {currency}"
    return Receipt(order_id=order.id, lines=len(order.items), total=total)


# --8<-- [end:tasks]


async def main() -> None:
    # --8<-- [start:enqueue]
    sent = await send_email.enqueue(to="ada@example.com", subject="Welcome")
    receipt = await bill.enqueue(Order(id=7, items=["book", "pen"], total_cents=1250))
    later = await send_email.options(delay_ms=500, key="reminder-7").enqueue(
        to="ada@example.com", subject="Your receipt"
    )
    print(await sent.wait(10_000), await later.wait(10_000))  # True True
    r: Receipt = await receipt.wait(10_000)
    print(r.total)  # 12.50 EUR
    # --8<-- [end:enqueue]
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
