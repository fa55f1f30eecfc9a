"""The orders service's database side: schema, pool, bounded or unbounded waits, and the
optional lost-write mode.

Every statement goes through ``OrdersStore.run``: wait for a pooled connection (inside a
``pool.acquire`` span, counted by ``PoolAccounting``), run the statement with the mode's
client-side deadline, and give the connection back. A connection whose statement timed
out, was cancelled or lost its socket is *terminated*, never released for reuse: behind a
``timeout`` toxic, a gentle release would send ROLLBACK/reset traffic and asyncpg's
cancel request over the same black hole and wait on it. Hardened also sets the pool's
``command_timeout`` (bounding asyncpg's own background cancel) and wraps the whole
operation in an outer deadline, so nothing on that path can wait without bound.

Fragile mode has one more mechanism, the one that makes its recovery slow: a lost
database connection puts the store in a *reconnect pause* of ``db_reconnect_pause_seconds``
(a naive fixed reconnect back-off). During the pause every request waits, unbounded, for
the database to be declared usable again; then the pool's old connections are expired
and fresh ones opened on demand. After a healed fault the shop is therefore unusable for
about one pause, a known quantity; while it waits, the gateway's shared pool fills again.

Writes are single ``INSERT ... RETURNING`` statements in autocommit: the reply arrives
only after the transaction committed, and only then is the order acknowledged. With
``ack_before_commit`` the order is acknowledged first and committed later, in batches,
by ``BatchWriter``; a failed batch is logged and lost, by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from opentelemetry.trace import Status, StatusCode, Tracer

from resilience.shop.errors import DatabaseUnavailable, DependencyTimeout, Rejected, ShopError
from resilience.shop.metrics import ShopMetrics
from resilience.shop.pools import PoolAccounting
from resilience.shop.settings import ShopOptions

logger = logging.getLogger(__name__)

T = TypeVar("T")

DB_POOL_NAME = "orders-db"
MIGRATION_LOCK_KEY = 7_042_001  # any constant; serialises concurrent migrations
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS orders (
    id          BIGSERIAL PRIMARY KEY,
    item_id     INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    client_ref  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
_COLUMNS = "id, item_id, quantity, client_ref, created_at"
STARTUP_STATEMENT_TIMEOUT = 10.0
SHUTDOWN_FLUSH_SECONDS = 2.0
OUTER_DEADLINE_MARGIN = 0.5
MIN_STATEMENT_SECONDS = 0.05


@dataclass(frozen=True)
class Order:
    """One order as stored."""

    id: int
    item_id: int
    quantity: int
    client_ref: str | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Order:
        return cls(
            id=record["id"],
            item_id=record["item_id"],
            quantity=record["quantity"],
            client_ref=record["client_ref"],
            created_at=record["created_at"],
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "item_id": self.item_id,
            "quantity": self.quantity,
            "client_ref": self.client_ref,
            "created_at": self.created_at.isoformat(),
        }


class IdAllocator:
    """Order ids for writes acknowledged before the database saw them: microseconds since
    the epoch, strictly increasing within the process. They sit far above the BIGSERIAL
    sequence (which starts at 1), so both kinds of id share the table without colliding.
    """

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, self._now_ns() // 1000)
        return self._last


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _reusable_after(exc: BaseException) -> bool:
    """Whether a connection can go back to the pool after ``exc`` (a plain SQL error)."""
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError
    )


def _terminate(conn: asyncpg.Connection) -> None:
    """End a connection that must not be reused. One that asyncpg already closed and took
    back (a connection that died mid-query is handed back on close) has nothing to end:
    its ``InterfaceError`` ("released back to the pool") would replace the request's own
    exception, and the log would name that instead of what failed."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError as exc:
        logger.debug("not terminating a database connection: %s", exc)


class OrdersStore:
    """The orders table behind a pool whose waits and deadlines follow the mode's options."""

    def __init__(
        self,
        database_url: str,
        options: ShopOptions,
        metrics: ShopMetrics,
        tracer: Tracer,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database_url = database_url
        self.options = options
        self._metrics = metrics
        self._tracer = tracer
        self._clock = clock
        self.accounting = PoolAccounting(
            DB_POOL_NAME, options.db_pool_size, clock=clock, on_wait=metrics.observe_db_wait
        )
        metrics.watch_db_pool(self.accounting)
        self._pool: asyncpg.Pool | None = None
        # Our own gate in front of asyncpg's pool, the same size: waits happen here, where
        # they are counted and traced, and asyncpg's acquire only ever (re)connects.
        self._slots = asyncio.Semaphore(options.db_pool_size)
        self._ids = IdAllocator()
        self.writer: BatchWriter | None = None
        acquire = options.db_acquire_timeout_seconds
        query = options.db_query_timeout_seconds
        self._usable = asyncio.Event()
        self._usable.set()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._outer_deadline = (
            None if acquire is None or query is None else acquire + query + OUTER_DEADLINE_MARGIN
        )

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Reach the database (retrying until the startup deadline), migrate, open the pool."""
        await self._prepare_database()
        opts = self.options
        self._pool = await asyncpg.create_pool(
            self.database_url,
            # Lazy connections and no background refill: a refill holds a pool slot while
            # it connects, which behind a hung proxy would stall an acquirer unseen.
            min_size=0,
            max_size=opts.db_pool_size,
            max_inactive_connection_lifetime=0,
            timeout=opts.db_connect_timeout_seconds,
            command_timeout=opts.db_query_timeout_seconds,
            reset=_keep_session,
            **self._connect_options(),
        )
        if opts.ack_before_commit:
            self.writer = BatchWriter(self, opts, self._metrics)
            self.writer.start()
        logger.info(
            "orders store ready: pool %d, acquire timeout %s, query timeout %s%s",
            opts.db_pool_size,
            opts.db_acquire_timeout_seconds,
            opts.db_query_timeout_seconds,
            ", ack_before_commit" if opts.ack_before_commit else "",
        )

    async def close(self) -> None:
        """Flush queued writes (bounded), then drop every connection without waiting."""
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
            self._reconnect_task = None
            self._usable.set()
        if self.writer is not None:
            await self.writer.stop()
        if self._pool is not None:
            # terminate(), not close(): close() waits for checked-out connections, which
            # in fragile mode may be stuck forever behind a hung database.
            self._pool.terminate()
            self._pool = None

    async def _prepare_database(self) -> None:
        opts = self.options
        deadline = self._clock() + opts.db_startup_deadline_seconds
        delay = 0.1
        created = False
        for attempt in range(1, 10_000):  # bounded in practice by the deadline below
            remaining = deadline - self._clock()
            try:
                conn = await asyncpg.connect(
                    self.database_url,
                    timeout=max(0.1, min(opts.db_connect_timeout_seconds, remaining)),
                    **self._connect_options(),
                )
            except asyncpg.InvalidCatalogNameError as exc:
                if created:
                    raise DatabaseUnavailable(
                        f"database in {redact(self.database_url)} is missing after creating it"
                    ) from exc
                await self._create_database()
                created = True
                continue
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if self._clock() + delay >= deadline:
                    raise DatabaseUnavailable(
                        f"could not reach {redact(self.database_url)} within "
                        f"{opts.db_startup_deadline_seconds} s ({attempt} attempts): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                logger.warning(
                    "database not ready (attempt %d): %s: %s", attempt, type(exc).__name__, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            try:
                await self._migrate(conn)
            finally:
                await conn.close(timeout=STARTUP_STATEMENT_TIMEOUT)
            return
        raise DatabaseUnavailable("gave up reaching the database")

    def _connect_options(self) -> dict[str, object]:
        # asyncpg's default sslmode "prefer" builds an SSL context per connection, loading
        # the CA bundle synchronously (tens of ms of blocked event loop each): under a
        # reconnect storm that lag alone breaks the hardened deadlines. The stack's
        # database is plain TCP on 127.0.0.1; a DSN that names an sslmode keeps it.
        return {} if "sslmode=" in self.database_url else {"ssl": False}

    async def _create_database(self) -> None:
        parts = urlsplit(self.database_url)
        name = parts.path.lstrip("/")
        admin_dsn = urlunsplit(parts._replace(path="/postgres"))
        logger.info("database %r does not exist; creating it", name)
        conn = await asyncpg.connect(
            admin_dsn, timeout=self.options.db_connect_timeout_seconds, **self._connect_options()
        )
        try:
            quoted = '"' + name.replace('"', '""') + '"'
            await conn.execute(f"CREATE DATABASE {quoted}", timeout=STARTUP_STATEMENT_TIMEOUT)
        except asyncpg.DuplicateDatabaseError:
            pass  # created by someone else meanwhile
        finally:
            await conn.close(timeout=STARTUP_STATEMENT_TIMEOUT)

    @staticmethod
    async def _migrate(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)",
                MIGRATION_LOCK_KEY,
                timeout=STARTUP_STATEMENT_TIMEOUT,
            )
            await conn.execute(SCHEMA_SQL, timeout=STARTUP_STATEMENT_TIMEOUT)

    # -- the pool ---------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[asyncpg.Connection, float | None]]:  # noqa: PLR0915 (the connection life cycle with its metrics in one place)
        """A pooled connection and the statement budget left (``None``: unbounded).

        The wait for a slot is bounded by ``db_acquire_timeout_seconds`` (``Rejected``,
        error type ``PoolExhausted``). Opening the connection, if the slot has none yet,
        and the statement then share ``db_query_timeout_seconds``. A connection whose
        use failed other than with a plain SQL error is terminated, not reused.
        """
        if self._pool is None:
            raise DatabaseUnavailable("the orders store is not started")
        pool = self._pool
        acct = self.accounting
        acquire_timeout = self.options.db_acquire_timeout_seconds
        budget = self.options.db_query_timeout_seconds
        with self._tracer.start_as_current_span(
            "pool.acquire",
            attributes={
                "pool": acct.name,
                "pool.size": acct.size,
                "pool.in_use": acct.in_use,
                "pool.waiting": acct.waiting,
            },
        ) as span:
            started = acct.begin_wait()
            try:
                async with asyncio.timeout(acquire_timeout):
                    if not self._usable.is_set():
                        span.set_attribute("db.reconnect_pause", True)
                        await self._usable.wait()
                    await self._slots.acquire()
            except TimeoutError as exc:
                waited = acct.end_wait(started, acquired=False, timed_out=True)
                span.set_attribute("pool.wait_seconds", waited)
                self._metrics.count_db_wait_timeout()
                span.record_exception(exc)
                span.set_attribute("error.type", "PoolExhausted")
                span.set_status(Status(StatusCode.ERROR, "database pool wait timed out"))
                raise Rejected(
                    f"no database connection free within {acquire_timeout} s "
                    f"({acct.in_use}/{acct.size} in use, {acct.waiting} waiting)",
                    error_type="PoolExhausted",
                ) from exc
            except BaseException:
                acct.end_wait(started, acquired=False)
                raise
            span.set_attribute("pool.wait_seconds", acct.end_wait(started, acquired=True))
            budget_started = self._clock()
            try:
                # The slot guarantees a free holder; this waits only to (re)connect.
                conn = await pool.acquire(timeout=budget)
            except BaseException as exc:
                self._slots.release()
                acct.release()
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"connect failed: {type(exc).__name__}"))
                raise
        try:
            left = (
                None
                if budget is None
                else max(budget - (self._clock() - budget_started), MIN_STATEMENT_SECONDS)
            )
            try:
                yield conn, left
            except BaseException as exc:
                if not _reusable_after(exc):
                    _terminate(conn)
                raise
            finally:
                try:
                    # Returns at once for a terminated connection.
                    await pool.release(conn)
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    TimeoutError,
                ) as exc:
                    logger.warning("releasing a database connection failed: %s", exc)
        finally:
            self._slots.release()
            acct.release()

    async def run(
        self, what: str, action: Callable[[asyncpg.Connection, float | None], Awaitable[T]]
    ) -> T:
        """Run ``action(conn, statement_timeout)`` on a pooled connection, errors translated."""
        try:
            async with asyncio.timeout(self._outer_deadline):
                async with self.connection() as (conn, statement_timeout):
                    return await action(conn, statement_timeout)
        except ShopError:
            raise
        except TimeoutError as exc:
            raise DependencyTimeout(
                f"database: {what} did not finish within its deadline "
                f"({self.options.db_query_timeout_seconds} s)"
            ) from exc
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            self._connection_lost(exc)
            raise DatabaseUnavailable(
                f"database: {what} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def reconnecting(self) -> bool:
        """Whether a reconnect pause is under way (requests wait for it)."""
        return not self._usable.is_set()

    def _connection_lost(self, exc: BaseException) -> None:
        pause = self.options.db_reconnect_pause_seconds
        if pause <= 0 or self._reconnect_task is not None:
            return  # reconnect on demand, or a pause is already running
        logger.warning(
            "database connection lost (%s: %s); pausing %.1f s before reconnecting",
            type(exc).__name__,
            exc,
            pause,
        )
        self._usable.clear()
        self._reconnect_task = asyncio.get_running_loop().create_task(
            self._reconnect_after(pause), name="db-reconnect-pause"
        )

    async def _reconnect_after(self, pause: float) -> None:
        try:
            await asyncio.sleep(pause)
            if self._pool is not None:
                # Connections that lived through the outage may be broken without knowing
                # it; replace them all so one pause is the whole cost.
                await self._pool.expire_connections()
            logger.info("reconnect pause over; using the database again")
        finally:
            self._reconnect_task = None
            self._usable.set()

    # -- orders -----------------------------------------------------------------------

    async def create(
        self, item_id: int, quantity: int, client_ref: str | None
    ) -> tuple[Order, bool]:
        """Store an order; returns it and whether it is committed yet."""
        if self.writer is not None:
            order = Order(
                id=self._ids.next(),
                item_id=item_id,
                quantity=quantity,
                client_ref=client_ref,
                created_at=datetime.now(UTC),
            )
            self.writer.submit(order)
            return order, False

        async def insert(conn: asyncpg.Connection, timeout: float | None) -> Order:
            record = await conn.fetchrow(
                "INSERT INTO orders (item_id, quantity, client_ref) VALUES ($1, $2, $3) "
                f"RETURNING {_COLUMNS}",
                item_id,
                quantity,
                client_ref,
                timeout=timeout,
            )
            assert record is not None
            return Order.from_record(record)

        return await self.run("insert order", insert), True

    async def insert_batch(self, orders: list[Order]) -> None:
        """Commit queued orders in one statement (all or none)."""

        async def insert(conn: asyncpg.Connection, timeout: float | None) -> None:
            await conn.execute(
                f"INSERT INTO orders ({_COLUMNS}) SELECT * FROM unnest("
                "$1::bigint[], $2::integer[], $3::integer[], $4::text[], $5::timestamptz[])",
                [o.id for o in orders],
                [o.item_id for o in orders],
                [o.quantity for o in orders],
                [o.client_ref for o in orders],
                [o.created_at for o in orders],
                timeout=timeout,
            )

        await self.run(f"insert batch of {len(orders)}", insert)

    async def get(self, order_id: int) -> Order | None:
        async def select(conn: asyncpg.Connection, timeout: float | None) -> Order | None:
            record = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM orders WHERE id = $1", order_id, timeout=timeout
            )
            return None if record is None else Order.from_record(record)

        return await self.run("select order", select)

    async def page(self, after_id: int, limit: int) -> list[Order]:
        async def select(conn: asyncpg.Connection, timeout: float | None) -> list[Order]:
            records = await conn.fetch(
                f"SELECT {_COLUMNS} FROM orders WHERE id > $1 ORDER BY id LIMIT $2",
                after_id,
                limit,
                timeout=timeout,
            )
            return [Order.from_record(r) for r in records]

        return await self.run("list orders", select)

    async def ids(self) -> list[int]:
        async def select(conn: asyncpg.Connection, timeout: float | None) -> list[int]:
            records = await conn.fetch("SELECT id FROM orders ORDER BY id", timeout=timeout)
            return [r["id"] for r in records]

        return await self.run("list order ids", select)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: the shop sets no session state, so skip asyncpg's reset round trip
    (asyncpg still rolls back an open transaction before calling this)."""


class BatchWriter:
    """Commits acknowledged-but-queued orders in batches (``ack_before_commit`` only).

    A batch whose commit fails is lost: counted in ``shop_orders_lost_total`` and logged
    with its ids. That loss is the ground truth the data-loss detector is tested with. The
    count is an upper bound: a batch that timed out behind a hung proxy may have committed.
    """

    def __init__(self, store: OrdersStore, options: ShopOptions, metrics: ShopMetrics) -> None:
        self._store = store
        self._batch_size = options.ack_batch_size
        self._flush_interval = options.ack_flush_interval_seconds
        self._queue: asyncio.Queue[Order] = asyncio.Queue(maxsize=options.ack_queue_limit)
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self.committed = 0
        self.lost = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batch-writer")

    def submit(self, order: Order) -> None:
        try:
            self._queue.put_nowait(order)
        except asyncio.QueueFull:
            raise Rejected(
                f"{self._queue.maxsize} writes already queued", error_type="QueueFull"
            ) from None

    async def stop(self) -> None:
        """Stop the loop, then try once (bounded) to commit what is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        leftover: list[Order] = []
        while not self._queue.empty():
            leftover.append(self._queue.get_nowait())
        if leftover:
            try:
                async with asyncio.timeout(SHUTDOWN_FLUSH_SECONDS):
                    await self._commit(leftover)
            except TimeoutError:
                self._lose(leftover, "shutdown flush timed out")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # Runs for the life of the process; stop() cancels it.
        while True:
            batch = [await self._queue.get()]
            flush_at = loop.time() + self._flush_interval
            while len(batch) < self._batch_size:
                left = flush_at - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            await self._commit(batch)

    async def _commit(self, batch: list[Order]) -> None:
        try:
            await self._store.insert_batch(batch)
        except (ShopError, asyncpg.PostgresError) as exc:
            self._lose(batch, f"{type(exc).__name__}: {exc}")
            return
        self.committed += len(batch)

    def _lose(self, batch: list[Order], reason: str) -> None:
        self.lost += len(batch)
        self._metrics.orders_lost.labels(self._metrics.service).inc(len(batch))
        logger.error(
            "lost %d acknowledged orders (ids %s): %s",
            len(batch),
            ",".join(str(o.id) for o in batch),
            reason,
        )
