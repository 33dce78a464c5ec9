"""The PostgreSQL store: one database that several replicas of the service share (--db
postgresql://user@host/dbname). psycopg 3 with a connection pool.

- The schema is created and migrated at start by schema.py's migrations, under an advisory lock,
  so replicas that start at once apply each migration once.
- `replica_lock` takes a per-conversation advisory lock (pg_advisory_lock) for a whole turn: two turns of
  one conversation sent to two replicas run one after the other, in the order they asked for the
  lock (PostgreSQL queues lock waiters first come, first served). A replica that dies releases
  its locks with its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg_pool import ConnectionPool

from pure_model_api.conversations import schema
from pure_model_api.conversations.store import ConversationStore
from pure_model_api.errors import StoreUnavailable

MIGRATION_LOCK = 0x7075726561706931  # any constant; "pureapi1"


def lock_key(owner: str, cid: str) -> int:
    """A conversation's advisory lock: 64 bits of a hash of its owner and id."""
    digest = hashlib.blake2b(f"{owner}\0{cid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def _available():
    """The database is down, unreachable or dropped the connection (psycopg_pool's PoolTimeout
    included): a 503, never a 500."""
    try:
        yield
    except psycopg.OperationalError as error:
        raise StoreUnavailable(f"the conversation database is unavailable: {error}") from error


class PostgresStore(ConversationStore):
    kind = "postgresql"

    def __init__(self, url: str, max_rounds: int = 20, pool_size: int = 96, timeout: float = 30):
        super().__init__(max_rounds)
        self.url = url
        try:  # one plain connection first: its error says what is wrong (the pool's would only time out)
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as error:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL database: {' '.join(str(error).split())}") \
                from error
        # every turn in flight holds a connection for its conversation's lock, so the pool is sized
        # for --max-batch-size + --max-queue, and short queries beside them
        # `check`: a connection the database dropped (a restart, a failover) is replaced before use,
        # not handed to a turn; `timeout`: how long a turn waits for a connection before its 503
        self.pool = ConnectionPool(url, min_size=2, max_size=pool_size, kwargs={"autocommit": True},
                                   open=False, timeout=timeout, check=ConnectionPool.check_connection)
        self.lock_threads = ThreadPoolExecutor(pool_size, thread_name_prefix="pg-lock")
        try:
            self.pool.open(wait=True, timeout=30)
            self._migrate()
        except Exception as error:  # unreachable, refused, a failed migration: one clear line
            self.pool.close()
            raise StoreUnavailable(f"cannot use the PostgreSQL database: {' '.join(str(error).split())}") from error

    @contextlib.contextmanager
    def _connect(self, write: bool):
        with _available(), self.pool.connection() as connection:
            def run(sql: str, params=()):
                return connection.execute(sql.replace("?", "%s"), params)

            if not write:
                yield run
                return
            with connection.transaction():
                yield run

    def close(self) -> None:
        self.lock_threads.shutdown(wait=False, cancel_futures=True)
        self.pool.close()

    def _migrate(self) -> None:
        with self.pool.connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            connection.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                               "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            done = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
            for version, statements in schema.pending("postgresql", done):
                for statement in statements:
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))

    @contextlib.asynccontextmanager
    async def replica_lock(self, owner: str, cid: str):
        """The conversation's advisory lock for one turn, on a pooled connection of its own. A
        database that is down, or that dropped the connection, is a 503, never a 500.

        Waiting for the connection and the lock happens in threads of the store's own (one per
        pooled connection), not the default pool that every turn's queries need, so turns waiting
        on busy conversations cannot starve the others; giving a lock back is brief and uses the
        default pool. However the caller is cancelled (while waiting, or twice), the connection
        goes back to the pool, and only once its lock is given back."""
        key = lock_key(owner, cid)
        loop = asyncio.get_running_loop()
        waiting: dict = {}
        acquiring = loop.run_in_executor(self.lock_threads, self._acquire, key, waiting)
        try:
            connection = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            if "connection" in waiting:
                waiting["connection"].cancel_safe()  # stop waiting for the lock
            acquiring.add_done_callback(lambda done: self._release_when_acquired(done, key))
            raise
        try:
            yield
        finally:
            await asyncio.shield(asyncio.to_thread(self._release, connection, key))  # brief: the default pool

    def _acquire(self, key: int, waiting: dict):
        with _available():
            connection = self.pool.getconn()
            waiting["connection"] = connection
            try:
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))
            except BaseException:
                self.pool.putconn(connection)
                raise
        return connection

    def _release(self, connection, key: int) -> None:
        try:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.Error:  # ending the session is what gives a session's lock back
            connection.close()
        finally:
            self.pool.putconn(connection)

    def _release_when_acquired(self, acquiring: asyncio.Future, key: int) -> None:
        """A caller gave up while its lock was on the way: give the lock and connection back."""
        if not acquiring.cancelled() and acquiring.exception() is None:
            asyncio.get_running_loop().run_in_executor(None, self._release, acquiring.result(), key)
