"""What only the PostgreSQL store does: migrations that replicas may run at once, and the
per-conversation lock that replicas share (first come, first served; given back by a caller that
leaves while waiting)."""

import asyncio
import threading

from pure_model_api.conversations import open_store


def test_replicas_starting_at_once_apply_each_migration_once(postgres):
    url = postgres.new_database()
    stores, errors = [], []

    def start():
        try:
            stores.append(open_store(url))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 4
    with stores[0]._transaction() as run:
        assert run("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version").fetchall() == [(1, 1)]
    for store in stores:
        store.close()


def test_the_conversation_lock_is_shared_by_replicas_in_arrival_order(postgres):
    url = postgres.new_database()
    first, second, third = open_store(url), open_store(url), open_store(url)  # three replicas
    order = []

    async def turn(store, name, delay, hold_for):
        await asyncio.sleep(delay)
        async with store.hold("", "shared"):
            order.append(f"{name} in")
            await asyncio.sleep(hold_for)
            order.append(f"{name} out")

    async def scenario():
        await asyncio.gather(turn(first, "a", 0, 0.5), turn(third, "c", 0.3, 0), turn(second, "b", 0.1, 0))
        async with second.hold("", "another"), third.hold("", "other"):  # other conversations never wait
            pass

    asyncio.run(scenario())
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    for store in (first, second, third):
        store.close()


def test_a_caller_that_leaves_while_waiting_gives_the_lock_back(postgres):
    url = postgres.new_database()
    holder, waiter = open_store(url), open_store(url)

    async def scenario():
        async with holder.hold("", "c"):
            waiting = asyncio.create_task(_enter(waiter))
            await asyncio.sleep(0.3)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.wait_for(_enter(waiter), 10)  # not left locked by the cancelled waiter
        await asyncio.wait_for(_enter(holder), 10)

    asyncio.run(scenario())
    assert waiter.pool.get_stats()["pool_size"] - waiter.pool.get_stats()["pool_available"] == 0
    holder.close()
    waiter.close()


async def _enter(store):
    async with store.hold("", "c"):
        pass
