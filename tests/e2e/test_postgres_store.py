"""What only the PostgreSQL store does: migrations that replicas may run at once, and the
per-conversation lock that replicas share (first come, first served; given back by a caller that
leaves while waiting)."""

import asyncio
import threading

import psycopg
import pytest
from postgres import temporary_server

from pure_model_api.conversations import open_store
from pure_model_api.conversations.history import Message
from pure_model_api.conversations.postgres_store import PostgresStore, lock_key
from pure_model_api.conversations.schema import MIGRATIONS
from pure_model_api.errors import StoreUnavailable


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
        applied = run("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version").fetchall()
    assert applied == [(version, 1) for version, _ in MIGRATIONS]
    for store in stores:
        store.close()


def test_the_conversation_lock_is_shared_by_replicas_in_arrival_order(postgres):
    url = postgres.new_database()
    first, second, third = open_store(url), open_store(url), open_store(url)  # three replicas
    order = []

    async def turn(store, name, delay, hold_for):
        await asyncio.sleep(delay)
        async with store.replica_lock("", "shared"):
            order.append(f"{name} in")
            await asyncio.sleep(hold_for)
            order.append(f"{name} out")

    async def scenario():
        await asyncio.gather(turn(first, "a", 0, 0.5), turn(third, "c", 0.3, 0), turn(second, "b", 0.1, 0))
        # other conversations never wait
        async with second.replica_lock("", "another"), third.replica_lock("", "other"):
            pass

    asyncio.run(scenario())
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    for store in (first, second, third):
        store.close()


def test_a_caller_that_leaves_while_waiting_gives_the_lock_back(postgres):
    url = postgres.new_database()
    holder, waiter = open_store(url), open_store(url)

    async def scenario():
        async with holder.replica_lock("", "c"):
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
    async with store.replica_lock("", "c"):
        pass


def test_a_database_restart_costs_no_turn(postgres):
    """A restart or failover drops every pooled connection; the next turns get fresh ones."""
    url = postgres.new_database()
    store = open_store(url)

    async def scenario():
        await _enter(store)
        with store._transaction() as run:
            database = run("SELECT current_database()").fetchone()[0]
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            dropped = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE datname = %s", (database,)).fetchone()[0]
        assert dropped >= 1
        for n in range(3):
            await asyncio.wait_for(_enter(store), 10)
            store.add_turn("", "after", [Message("user", f"question {n}")], [Message("assistant", "answer")])
        assert len(store.messages("", "after")) == 6

    asyncio.run(scenario())
    store.close()


def test_a_database_that_is_down_is_a_503_not_a_500():
    """The turn's lock and the store's queries both say StoreUnavailable (the 503 that a balancer
    retries on another replica), after the pool's timeout, not a psycopg error (a 500)."""
    with temporary_server() as server:
        store = PostgresStore(server.new_database(), timeout=2)
        store.add_turn("", "c", [Message("user", "question")], [Message("assistant", "answer")])
        server.stop()
        try:
            with pytest.raises(StoreUnavailable):
                asyncio.run(_enter(store))
            with pytest.raises(StoreUnavailable):
                store.messages("", "c")
            with pytest.raises(StoreUnavailable):
                store.add_turn("", "c", [Message("user", "lost?")], [Message("assistant", "refused")])
        finally:
            store.close()


def test_a_caller_cancelled_while_waiting_for_a_connection_returns_it(postgres):
    """With every pooled connection taken, a turn that gives up while its thread still waits for
    one must not keep the connection that thread gets later: the pool ends with all of them."""
    store = PostgresStore(postgres.new_database(), pool_size=2)

    async def scenario():
        release = asyncio.Event()

        async def hold_until_released(cid):
            async with store.replica_lock("", cid):
                await release.wait()

        holders = [asyncio.create_task(hold_until_released(c)) for c in ("a", "b")]
        await asyncio.sleep(0.5)
        waiters = [asyncio.create_task(_enter_named(store, f"w{n}")) for n in range(4)]  # waiting for a connection
        await asyncio.sleep(0.3)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        release.set()
        await asyncio.gather(*holders)
        for _ in range(100):  # the cancelled waiters' threads get connections, and give them back
            stats = store.pool.get_stats()
            if stats["pool_size"] - stats["pool_available"] == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(_enter_named(store, "x"), _enter_named(store, "y")), 10)

    asyncio.run(scenario())
    stats = store.pool.get_stats()
    assert stats["pool_size"] - stats["pool_available"] == 0, stats
    store.close()


def test_turns_waiting_for_busy_conversations_do_not_starve_the_others(postgres):
    """Another replica holds eight conversations; turns waiting for them must leave the threads
    that every other turn's queries need (the default pool has about six on two cores)."""
    url = postgres.new_database()
    store = open_store(url)
    with psycopg.connect(url, autocommit=True) as other_replica:
        for n in range(8):
            other_replica.execute("SELECT pg_advisory_lock(%s)", (lock_key("", f"busy{n}"),))

        async def scenario():
            waiting = [asyncio.create_task(_enter_named(store, f"busy{n}")) for n in range(8)]
            await asyncio.sleep(0.5)
            try:
                await asyncio.wait_for(asyncio.to_thread(store.messages, "", "free"), 10)
                await asyncio.wait_for(_enter_named(store, "free"), 10)
            finally:
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)

        asyncio.run(scenario())
    store.close()


async def _enter_named(store, cid):
    async with store.replica_lock("", cid):
        pass
