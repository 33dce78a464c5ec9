import asyncio

import pytest

from pure_model_api.errors import ServerBusy
from pure_model_api.service import ConversationLocks


def test_callers_waiting_on_a_busy_conversation_count_against_the_queue_bound():
    async def scenario():
        locks = ConversationLocks(max_waiting=1)
        order = []
        release = asyncio.Event()

        async def turn(name):
            async with locks.take(("", "busy")):
                order.append(name)
                await release.wait()

        first = asyncio.create_task(turn("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(turn("second"))  # waits: the one place in the queue
        await asyncio.sleep(0)
        with pytest.raises(ServerBusy):
            async with locks.take(("", "busy")):
                pass
        async with locks.take(("", "other")):  # other conversations never wait on this one
            order.append("other")
        release.set()
        await asyncio.gather(first, second)
        async with locks.take(("", "busy")):  # all free again, nothing left counted
            order.append("third")
        return order, locks.waiting, locks._locks

    order, waiting, live = asyncio.run(scenario())
    assert order == ["first", "other", "second", "third"] and waiting == 0 and live == {}


def test_a_caller_cancelled_while_waiting_leaves_the_count():
    async def scenario():
        locks = ConversationLocks(max_waiting=1)
        release = asyncio.Event()

        async def holder():
            async with locks.take(("", "c")):
                await release.wait()

        held = asyncio.create_task(holder())
        await asyncio.sleep(0)

        async def waiter():
            async with locks.take(("", "c")):
                pass

        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        waiting.cancel()  # the client went away
        await asyncio.sleep(0)
        counted = locks.waiting
        release.set()
        await held
        return counted

    assert asyncio.run(scenario()) == 0
