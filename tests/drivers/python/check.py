"""asyncpg and psycopg 3 against pgwarden serve (transaction pooling).

Usage: check.py URL SESSION_URL
  URL          the proxy in transaction mode (the database must be writable)
  SESSION_URL  the same database through a proxy in session mode (LISTEN/NOTIFY)
Prints one line per check; exits non-zero at the first failure.
"""
import asyncio
import sys
import threading
import time

import asyncpg
import psycopg

URL = sys.argv[1]
SESSION_URL = sys.argv[2]
# 100,000 rows of 1,000 bytes: a 100 MB result.
BIG_ROWS = 100_000
BIG_SQL = f"SELECT repeat('x', 1000) FROM generate_series(1, {BIG_ROWS})"


def ok(what):
    print(f"ok {what}", flush=True)


async def times_out(call, within):
    """Awaits `call`, which must raise asyncio's timeout (its statement cancelled), in less
    than `within` seconds."""
    started = time.monotonic()
    try:
        await call
        raise AssertionError("not cancelled")
    except asyncio.TimeoutError:
        pass
    assert time.monotonic() - started < within, time.monotonic() - started


async def check_asyncpg():
    conn = await asyncpg.connect(
        URL, server_settings={"application_name": "asyncpg-check", "search_path": "public"}
    )
    other = await asyncpg.connect(URL)
    assert await conn.fetchval("SELECT 1 + 1") == 2
    ok("asyncpg simple query")
    # asyncpg prepares every statement under a name: in transaction mode each execution may
    # run on another server connection.
    for i in range(50):
        a, b = await asyncio.gather(
            conn.fetchval("SELECT $1::int * 2", i), other.fetchval("SELECT $1::text || 'x'", str(i))
        )
        assert a == i * 2 and b == f"{i}x", (a, b)
    stmt = await conn.prepare("SELECT $1::int + $2::int")
    assert await stmt.fetchval(2, 3) == 5
    ok("asyncpg prepared statements across transactions")
    assert await conn.fetchval("SHOW application_name") == "asyncpg-check"
    assert await conn.fetchval("SHOW search_path") == "public"
    ok("asyncpg server_settings visible through SHOW")
    await conn.execute("DROP TABLE IF EXISTS apg; CREATE TABLE apg (id int primary key, v text)")
    async with conn.transaction():
        await conn.execute("INSERT INTO apg VALUES (1, 'a')")
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO apg VALUES (2, 'b')")
            await conn.execute("INSERT INTO apg VALUES (1, 'dup')")
        raise AssertionError("duplicate key not reported")
    except asyncpg.UniqueViolationError:
        pass
    assert await conn.fetchval("SELECT count(*) FROM apg") == 1
    ok("asyncpg transactions and errors inside them")
    await conn.copy_records_to_table("apg", records=[(i, f"r{i}") for i in range(10, 1010)])
    assert await conn.fetchval("SELECT count(*) FROM apg") == 1001
    ok("asyncpg COPY")
    await times_out(conn.fetchval("SELECT pg_sleep(20)", timeout=0.5), within=5)
    assert await conn.fetchval("SELECT 7") == 7
    ok("asyncpg cancel of pg_sleep")
    # A timeout while the request waits for a server connection (the pool's 3 are held by
    # open transactions): asyncpg cancels during its prepare step; the request never runs.
    holders = [await asyncpg.connect(URL) for _ in range(3)]
    for h in holders:
        await h.execute("BEGIN; SELECT 1")
    await times_out(conn.execute("INSERT INTO apg VALUES (5000, 'waited')", timeout=0.5), within=3)
    # asyncpg raises at the deadline and sends its cancel on a new connection: give the
    # cancel time to arrive before a COMMIT frees a server connection.
    await asyncio.sleep(1.5)
    for h in holders:
        await h.execute("COMMIT")
        await h.close()
    assert await conn.fetchval("SELECT count(*) FROM apg WHERE id = 5000") == 0
    assert await conn.fetchval("SELECT 6") == 6
    ok("asyncpg timeout while waiting for a server connection")
    rows = await conn.fetch(BIG_SQL)
    assert len(rows) == BIG_ROWS and all(len(r[0]) == 1000 for r in rows)
    del rows
    ok("asyncpg large result (100 MB)")
    # LISTEN cannot work in transaction mode: a clear error, not a silent no-op.
    try:
        await conn.add_listener("jobs", lambda *a: None)
        raise AssertionError("LISTEN accepted in transaction mode")
    except asyncpg.FeatureNotSupportedError as e:
        assert "pool_mode = session" in str(e), e
    assert await conn.fetchval("SELECT 8") == 8
    ok("asyncpg LISTEN refused in transaction mode")
    await conn.close()
    await other.close()

    listener = await asyncpg.connect(SESSION_URL)
    notifier = await asyncpg.connect(SESSION_URL)
    got = asyncio.get_running_loop().create_future()
    await listener.add_listener("jobs", lambda _c, _pid, channel, payload: got.set_result((channel, payload)))
    await notifier.execute("NOTIFY jobs, 'hello'")
    assert await asyncio.wait_for(got, 5) == ("jobs", "hello")
    await listener.close()
    await notifier.close()
    ok("asyncpg LISTEN/NOTIFY in session mode")


def check_psycopg():
    with psycopg.connect(URL, application_name="psycopg-check", autocommit=True) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone()[0] == 2
        # Server-side prepared statements after prepare_threshold executions.
        conn.prepare_threshold = 1
        for i in range(30):
            assert conn.execute("SELECT %s::int * 3", (i,)).fetchone()[0] == i * 3
        ok("psycopg prepared statements across transactions")
        assert conn.execute("SHOW application_name").fetchone()[0] == "psycopg-check"
        conn.execute("DROP TABLE IF EXISTS pcp; CREATE TABLE pcp (id int, v text)")
        with conn.transaction():
            conn.execute("INSERT INTO pcp VALUES (1, 'a')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO pcp VALUES (2, 'b')")
                conn.execute("SELECT 1/0")
            raise AssertionError("division by zero not reported")
        except psycopg.errors.DivisionByZero:
            pass
        assert conn.execute("SELECT count(*) FROM pcp").fetchone()[0] == 1
        ok("psycopg transactions and errors inside them")
        with conn.cursor() as cur:
            with cur.copy("COPY pcp FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, f"r{i}"))
            out = bytearray()
            with cur.copy("COPY pcp TO STDOUT") as copy:
                for chunk in copy:
                    out += chunk
        assert out.count(b"\n") == 1001
        ok("psycopg COPY in and out")
        total = 0
        with conn.cursor() as cur:
            for (v,) in cur.stream(BIG_SQL):
                total += len(v)
        assert total == BIG_ROWS * 1000, total
        ok("psycopg large result (100 MB, streamed)")
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        try:
            conn.execute("SELECT pg_sleep(20)")
            raise AssertionError("not cancelled")
        except psycopg.errors.QueryCanceled:
            pass
        assert time.monotonic() - started < 5
        assert conn.execute("SELECT 9").fetchone()[0] == 9
        ok("psycopg cancel of pg_sleep")
    with psycopg.connect(SESSION_URL, autocommit=True) as listener, psycopg.connect(
        SESSION_URL, autocommit=True
    ) as notifier:
        listener.execute("LISTEN jobs")
        notifier.execute("NOTIFY jobs, 'from psycopg'")
        note = next(listener.notifies(timeout=5))
        assert (note.channel, note.payload) == ("jobs", "from psycopg"), note
        ok("psycopg LISTEN/NOTIFY in session mode")


asyncio.run(check_asyncpg())
check_psycopg()
print("all python checks passed")
