"""The host's counter file: its layout's version, the statements an admission costs, the running sums of
holds (kept by triggers) and their expiry, against a reference model of the counters' rules."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.admission.on_sqlite import SqliteCounters
from gateway.billing.accounts import Charge, HoldAsk, Missing, Reservation
from gateway.billing.holds import KeyLimit
from gateway.billing.sqlite_accounts import SqliteAccounts
from gateway.ratelimit.gcra import Decision, Limits, corrected_tat, decide, untaken
from gateway.ratelimit.limiter import BUCKET_PERIODS, Acquire, Release
from gateway.sqlite_counters import LAYOUT, PAGE_SIZE, CounterFile, Procedure

T0 = 1_800_000_000.0
AT = datetime(2027, 1, 15, 12, tzinfo=UTC)
DAY = KeyLimit(10**6, "d:1")
WINDOWS = ("d:1", "w:1", "m:1", "total")

# The counter file's previous layout: tables of a row per bucket and holds summed per check; unversioned
# (user_version 0) until its layout had a version, then version 1.
PREVIOUS_LAYOUT = """
CREATE TABLE tats (key TEXT NOT NULL, bucket TEXT NOT NULL, tat REAL NOT NULL,
                   PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE inflight (key TEXT NOT NULL, request_id TEXT NOT NULL, expires REAL NOT NULL,
                       PRIMARY KEY (key, request_id)) WITHOUT ROWID;
CREATE TABLE acct_tenants (tenant TEXT PRIMARY KEY, balance INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE acct_keys (key TEXT NOT NULL, window TEXT NOT NULL, used INTEGER NOT NULL,
                        PRIMARY KEY (key, window)) WITHOUT ROWID;
CREATE TABLE acct_holds (request_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, key TEXT NOT NULL,
                         amount INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX acct_holds_tenant ON acct_holds (tenant);
CREATE INDEX acct_holds_key ON acct_holds (key);
CREATE INDEX acct_holds_expires ON acct_holds (expires);
INSERT INTO tats VALUES ('k', 'requests_per_minute', 1e12);
INSERT INTO acct_tenants VALUES ('t', 1000);
INSERT INTO acct_keys VALUES ('k', 'd:1', 0);
INSERT INTO acct_holds VALUES ('old', 't', 'k', 900, 1e12);
"""


def previous_file(path: Path, version: int) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(PREVIOUS_LAYOUT)
        db.execute(f"PRAGMA user_version = {version}")


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def pragma(path: Path, name: str) -> Any:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def ask(rid: str, units: int, limit: KeyLimit | None = DAY, *, tenant: str = "t", key: str = "k",
        prepaid: bool = True) -> HoldAsk:
    return HoldAsk(tenant, key, units, limit, prepaid, rid, AT)


@pytest.mark.parametrize("version", [0, 1])
async def test_a_file_of_the_previous_layout_is_laid_out_again(tmp_path: Path, version: int) -> None:
    path = tmp_path / "counters.db"
    previous_file(path, version)
    counters = SqliteCounters(str(path))
    with pytest.raises(Missing):  # the old counters are gone: they reload from the ledger
        await counters.accounts.reserve("t", "k", 1, None, True, "r")
    assert not tables(path) & {"tats", "inflight", "acct_tenants", "acct_keys", "acct_holds"}
    assert pragma(path, "user_version") == LAYOUT and pragma(path, "page_size") == PAGE_SIZE
    assert pragma(path, "journal_mode") == "wal"
    await counters.accounts.load("t", 1000, "k", {"d:1": 0})
    d, r = await counters.admit(Acquire("k", Limits(requests_per_minute=5), 0, "r"), ask("r", 1000))
    assert d.allowed and d.remaining == 4 and r is not None and r.ok  # the old hold of 900 was dropped
    await counters.close()


async def test_a_file_open_elsewhere_is_laid_out_again_in_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    previous_file(path, 1)
    with closing(sqlite3.connect(path)) as other:
        other.execute("SELECT count(*) FROM acct_holds").fetchone()  # holds the file open in WAL mode
        counters = SqliteCounters(str(path))
        await counters.accounts.load("t", 1000, "k", None)
        assert (await counters.accounts.reserve("t", "k", 1000, None, True, "r")).ok
        assert pragma(path, "user_version") == LAYOUT and pragma(path, "page_size") == 4096
        await counters.close()


async def test_a_file_of_the_current_layout_is_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.db")
    counters = SqliteCounters(path)
    await counters.accounts.load("t", 1000, "k", None)
    assert (await counters.accounts.reserve("t", "k", 600, None, True, "r1")).ok
    await counters.close()
    again = SqliteCounters(path)  # a restarted worker
    r = await again.accounts.reserve("t", "k", 600, None, True, "r2")
    assert not r.ok and r.available == 400
    await again.close()


@pytest.fixture
def executed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The statements Python runs on the counter file's connections (a trigger's run inside its statement)."""
    seen: list[str] = []

    class Counting(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            seen.append(sql)
            return super().execute(sql, *args)

    connect = sqlite3.connect

    def counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=Counting, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting_connect)
    yield seen


async def test_a_request_costs_four_statements_in_and_one_out(tmp_path: Path, executed: list[str]) -> None:
    counters = SqliteCounters(str(tmp_path / "counters.db"))
    await counters.accounts.load("t", 10**6, "k", dict.fromkeys(WINDOWS, 0))
    limits = Limits(requests_per_minute=100, tokens_per_minute=10**5, concurrency=4)
    executed.clear()
    d, r = await counters.admit(Acquire("k", limits, 500, "r"), ask("r", 1000))
    assert d.allowed and r is not None and r.ok
    assert len(executed) == 4 and executed[0] == "BEGIN IMMEDIATE" and executed[-1] == "COMMIT"
    executed.clear()
    await counters.release(Release("k", limits, -100, "r"), Charge("t", "k", "r", 300, WINDOWS))
    assert len(executed) == 1
    r = await counters.accounts.reserve("t", "k", 0, KeyLimit(10**6, "w:1"), True, "probe")
    assert r.available == 10**6 - 300 and r.key_used == 300
    await counters.close()


def sums(path: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
    """The running sums of holds per tenant and per key, and the sums of the holds themselves."""
    with closing(sqlite3.connect(path)) as db:
        tenants = dict(db.execute("SELECT tenant, held FROM money_tenants WHERE held != 0").fetchall())
        keys = dict(db.execute("SELECT key, used FROM money_windows WHERE window = x'' AND used != 0").fetchall())
        by_tenant = dict(db.execute(
            "SELECT tenant, sum(amount) FROM money_holds GROUP BY tenant HAVING sum(amount) != 0").fetchall())
        by_key = dict(db.execute(
            "SELECT key, sum(amount) FROM money_holds GROUP BY key HAVING sum(amount) != 0").fetchall())
    return tenants, keys, by_tenant, by_key


async def test_expired_holds_are_swept_out_of_the_sums(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    clock = Clock()
    acct = SqliteAccounts(str(path), hold_seconds=60, clock=clock)
    await acct.load("t", 1000, "k", {"d:1": 0})
    assert (await acct.reserve("t", "k", 300, DAY, True, "dies")).ok  # its worker never settles
    clock.now += 30
    assert (await acct.reserve("t", "k", 200, DAY, True, "lives")).ok
    assert sums(path) == ({"t": 500}, {"k": 500}, {"t": 500}, {"k": 500})
    clock.now += 30  # "dies" expires at T0 + 60: in force until then
    r = await acct.reserve("t", "k", 0, DAY, True, "probe1")
    assert r.available == 500 and r.key_used == 500
    clock.now += 0.001  # past it
    r = await acct.reserve("t", "k", 0, DAY, True, "probe2")
    assert r.available == 800 and r.key_used == 200
    assert sums(path) == ({"t": 200}, {"k": 200}, {"t": 200}, {"k": 200})
    await acct.settle("t", "k", "dies", 300, ("d:1",))  # late: the hold is gone, the cost still counts
    await acct.settle("t", "k", "lives", 150, ("d:1",))
    assert sums(path) == ({}, {}, {}, {})
    r = await acct.reserve("t", "k", 0, DAY, True, "probe3")
    assert r.available == 550 and r.key_used == 450
    await acct.close()


async def test_a_hold_expiring_sooner_than_those_before_it_is_swept_in_time(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    clock = Clock()
    patient = SqliteAccounts(str(path), hold_seconds=60, clock=clock)
    hasty = SqliteAccounts(str(path), hold_seconds=10, clock=clock)  # another worker, configured otherwise
    await patient.load("t", 1000, "k", None)
    assert (await patient.reserve("t", "k", 300, None, True, "long")).ok
    assert (await hasty.reserve("t", "k", 300, None, True, "short")).ok
    clock.now += 11
    r = await patient.reserve("t", "k", 0, None, True, "probe")
    assert r.available == 700
    assert sums(path) == ({"t": 300}, {"k": 300}, {"t": 300}, {"k": 300})
    await patient.close()
    await hasty.close()


async def test_a_hold_made_again_replaces_the_first(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    acct = SqliteAccounts(str(path))
    await acct.load("t", 1000, "k", {"d:1": 0})
    assert (await acct.reserve("t", "k", 300, DAY, True, "r")).ok
    assert (await acct.reserve("t", "k", 100, DAY, True, "r")).ok
    assert sums(path) == ({"t": 100}, {"k": 100}, {"t": 100}, {"k": 100})
    await acct.settle("t", "k", "r", 0, ())
    assert sums(path) == ({}, {}, {}, {})
    await acct.close()


async def test_forgotten_counters_keep_the_holds_in_force(tmp_path: Path) -> None:
    acct = SqliteAccounts(str(tmp_path / "counters.db"))
    await acct.load("t", 1000, "k", {"d:1": 100})
    assert (await acct.reserve("t", "k", 300, DAY, True, "r")).ok
    await acct.forget_key("t", "k")
    await acct.forget_balances()
    await acct.load("t", 1000, "k", {"d:1": 100})  # reloaded from the ledger
    r = await acct.reserve("t", "k", 0, DAY, True, "probe")
    assert r.available == 700 and r.key_used == 400
    await acct.close()


async def test_a_charge_to_more_windows_than_a_settlement_statement_takes(tmp_path: Path) -> None:
    counters = SqliteCounters(str(tmp_path / "counters.db"))
    windows = ("a", "b", "c", "d", "e", "f")
    await counters.accounts.load("t", 1000, "k", dict.fromkeys(windows, 0))
    await counters.accounts.settle("t", "k", "r1", 10, windows)
    await counters.release(Release("k", Limits(concurrency=1), 0, "r2"), Charge("t", "k", "r2", 5, windows))
    for w in windows:
        r = await counters.accounts.reserve("t", "k", 0, KeyLimit(100, w), True, "probe")
        assert r.available == 985 and r.key_used == 15
    await counters.close()


TABLE = "CREATE TABLE IF NOT EXISTS n (k TEXT PRIMARY KEY, v INTEGER NOT NULL);\n"


async def test_a_procedure_changed_since_the_file_was_made_runs_as_it_is_now(tmp_path: Path) -> None:
    """A file made by a version whose procedure did something else: the procedure runs as it is now
    (its old trigger is not run in its place, nor as well), and the file's counters stay."""
    path = str(tmp_path / "counters.db")
    before = Procedure("p", ("x",), "INSERT INTO n (k, v) VALUES ('a', NEW.x);")
    now = Procedure("p", ("x",), "INSERT INTO n (k, v) VALUES ('b', NEW.x * 10);")
    older = CounterFile(path, TABLE + before.schema)
    await older.write(before.call, (1,))
    await older.close()
    newer = CounterFile(path, TABLE + now.schema)
    await newer.write(now.call, (2,))
    assert await newer.run(lambda db: db.execute("SELECT k, v FROM n ORDER BY k").fetchall()) == [("a", 1), ("b", 20)]
    await newer.close()
BUMP = "INSERT INTO n (k, v) VALUES ('x', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1"


async def test_a_lock_held_briefly_elsewhere_is_waited_for_on_the_loop_without_blocking_it(tmp_path: Path) -> None:
    """Another worker's transaction: the step is tried again on later turns of the event loop (which
    serves other tasks meanwhile), not handed to the helper thread nor slept on in SQLite."""
    path = str(tmp_path / "counters.db")
    file = CounterFile(path, TABLE)
    await file.write(BUMP, ())
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticking = asyncio.ensure_future(ticker())
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another worker holds the write lock
        bump = asyncio.ensure_future(file.write(BUMP, ()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not bump.done() and turns >= 2  # the step waits; the loop goes on
        other.execute("COMMIT")
        await bump
    ticking.cancel()
    assert file._patient is None  # done on the event loop: the helper thread never opened the file
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT v FROM n WHERE k = 'x'").fetchone() == (2,)
    await file.close()


async def test_a_lock_held_long_elsewhere_is_waited_for_on_the_helper_thread(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.db")
    file = CounterFile(path, TABLE)
    await file.write(BUMP, ())
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        bump = asyncio.ensure_future(file.run(lambda db: db.execute(BUMP).rowcount))
        async with asyncio.timeout(10):
            while file._patient is None:  # the tries on the loop ran out: the helper thread waits for the lock
                await asyncio.sleep(0.005)
        assert not bump.done()
        other.execute("COMMIT")
        assert await bump == 1
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT v FROM n WHERE k = 'x'").fetchone() == (2,)  # applied once
    await file.close()


class Reference:
    """The counters' rules as the previous implementation applied them, in memory: holds and slots
    expire when their expiry is past, sums are taken over the holds in force."""

    def __init__(self) -> None:
        self.tats: dict[tuple[str, str], float] = {}
        self.slots: dict[tuple[str, str], float] = {}
        self.balances: dict[str, int] = {}
        self.pending: dict[str, dict[str, int]] = {}  # credits waiting for a tenant's balance to be loaded
        self.windows: dict[tuple[str, str], int] = {}
        self.holds: dict[str, tuple[str, str, int, float]] = {}

    def limits_check(self, take: Acquire, now: float) -> tuple[Decision, dict[str, float], dict[str, float | None]]:
        tats: dict[str, float | None] = {b: self.tats.get((take.key, b)) for b in BUCKET_PERIODS}
        inflight = 0
        if take.limits.concurrency > 0:
            self.slots = {s: e for s, e in self.slots.items() if s[0] != take.key or e >= now}
            inflight = sum(1 for s in self.slots if s[0] == take.key)
        decision, new_tats = decide(tats, take.limits, take.tokens, now, inflight)
        return decision, new_tats, tats

    def limits_take(self, take: Acquire, new_tats: dict[str, float], now: float, hold: float) -> None:
        for bucket, tat in new_tats.items():
            self.tats[(take.key, bucket)] = tat
        if take.limits.concurrency > 0:
            self.slots[(take.key, take.request_id)] = now + hold

    def limits_give(self, give: Release, now: float) -> None:
        self.slots.pop((give.key, give.request_id), None)
        limit = give.limits.tokens_per_minute
        if limit > 0 and give.token_delta:
            tat = corrected_tat(self.tats.get((give.key, "tokens_per_minute")), now, limit, 60.0, give.token_delta)
            if tat is not None:
                self.tats[(give.key, "tokens_per_minute")] = tat

    def money_check(self, a: HoldAsk, now: float) -> Reservation:
        self.holds = {rid: h for rid, h in self.holds.items() if h[3] >= now}
        available = 0
        if a.prepaid:
            if a.tenant not in self.balances:
                raise Missing("tenant")
            available = self.balances[a.tenant] - sum(h[2] for h in self.holds.values() if h[0] == a.tenant)
            if available < a.units:
                return Reservation(False, "balance", available=available)
        used = 0
        if a.limit is not None:
            if (a.key, a.limit.window) not in self.windows:
                raise Missing("key")
            used = self.windows[(a.key, a.limit.window)] + sum(h[2] for h in self.holds.values() if h[1] == a.key)
            if used + a.units > a.limit.limit:
                return Reservation(False, "key_limit", available=available, key_used=used)
        return Reservation(True, available=available, key_used=used)

    def money_hold(self, a: HoldAsk, now: float, hold: float) -> None:
        self.holds[a.request_id] = (a.tenant, a.key, a.units, now + hold)

    def money_settle(self, c: Charge) -> None:
        self.holds.pop(c.request_id, None)
        if c.cost:
            if c.tenant in self.balances:
                self.balances[c.tenant] -= c.cost
            loaded = (c.key, "total") in self.windows  # then a window not there yet starts with this cost
            for w in c.windows:
                if loaded or (c.key, w) in self.windows:
                    self.windows[(c.key, w)] = self.windows.get((c.key, w), 0) + c.cost

    def admit(self, take: Acquire, a: HoldAsk, now: float, hold: float) -> tuple[Decision, Reservation | None]:
        decision, new_tats, tats = self.limits_check(take, now)
        if not decision.allowed:
            return decision, None
        reservation = self.money_check(a, now)
        if not reservation.ok:
            return untaken(tats, take.limits, now), reservation
        self.limits_take(take, new_tats, now, hold)
        self.money_hold(a, now, hold)
        return decision, reservation


@dataclass(frozen=True)
class Missed:
    """Missing raised, by the counters or the reference."""

    what: str


TENANTS = st.sampled_from(["t1", "t2"])
KEYS = st.sampled_from(["k1", "k2"])
LIMITS = st.builds(Limits, requests_per_minute=st.sampled_from([0, 3, 10]), requests_per_day=st.sampled_from([0, 5]),
                   tokens_per_minute=st.sampled_from([0, 1000]), concurrency=st.sampled_from([0, 1, 2]))
KEY_LIMITS = st.one_of(st.none(), st.builds(KeyLimit, st.integers(0, 1500), st.sampled_from(WINDOWS)))
CHARGED = st.sampled_from([WINDOWS, ("d:1", "total"), (), ("total", "m:1", "x", "y", "w:1", "d:1")])


class CountersMachine(RuleBasedStateMachine):
    """Random admissions, releases, reservations, settlements, loads, credits, forgetting and time passing,
    by two workers sharing the file (holding for different times): every answer as the reference's, the
    sums of holds always exact."""

    HOLD_SECONDS = (30.0, 12.0)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "counters.db"
        self.clock = Clock()
        self.workers = [SqliteCounters(str(self.path), hold_seconds=hold, clock=self.clock)
                        for hold in self.HOLD_SECONDS]
        self.ref = Reference()
        self.open: list[tuple[Acquire, HoldAsk]] = []  # admitted, not yet released
        self.serial = 0
        for worker in self.workers:  # each opens the file
            self.run(worker.accounts.load("t0", None, "k0", None))

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def outcome(self, call: Callable[[], Any], model: Callable[[], Any]) -> Any:
        try:
            got: Any = self.run(call())
        except Missing as missing:
            got = Missed(missing.what)
        try:
            expected: Any = model()
        except Missing as missing:
            expected = Missed(missing.what)
        assert got == expected
        return got

    def rid(self) -> str:
        self.serial += 1
        return f"r{self.serial}"

    @rule(worker=st.integers(0, 1), tenant=TENANTS, key=KEYS, limits=LIMITS, tokens=st.integers(0, 800),
          units=st.integers(0, 600), limit=KEY_LIMITS, prepaid=st.booleans())
    def admit(self, worker: int, tenant: str, key: str, limits: Limits, tokens: int, units: int,
              limit: KeyLimit | None, prepaid: bool) -> None:
        rid = self.rid()
        take, a = Acquire(key, limits, tokens, rid), HoldAsk(tenant, key, units, limit, prepaid, rid, AT)
        got = self.outcome(lambda: self.workers[worker].admit(take, a),
                           lambda: self.ref.admit(take, a, self.clock(), self.HOLD_SECONDS[worker]))
        if not isinstance(got, Missed) and got[1] is not None and got[1].ok:
            self.open.append((take, a))

    @precondition(lambda self: bool(self.open))
    @rule(worker=st.integers(0, 1), which=st.integers(0, 100), cost=st.integers(0, 700),
          token_delta=st.integers(-600, 600), windows=CHARGED, abandon=st.booleans())
    def release(self, worker: int, which: int, cost: int, token_delta: int, windows: tuple[str, ...],
                abandon: bool) -> None:
        take, a = self.open.pop(which % len(self.open))
        if abandon:  # its worker died: the slot and the hold expire by themselves
            return
        give = Release(take.key, take.limits, token_delta, take.request_id)
        charge = Charge(a.tenant, a.key, a.request_id, min(cost, a.units), windows)
        self.run(self.workers[worker].release(give, charge))
        self.ref.limits_give(give, self.clock())
        self.ref.money_settle(charge)

    @rule(worker=st.integers(0, 1), tenant=TENANTS, key=KEYS, units=st.integers(0, 600), limit=KEY_LIMITS,
          prepaid=st.booleans(), cost=st.integers(0, 600), windows=CHARGED, settle=st.booleans())
    def reserve(self, worker: int, tenant: str, key: str, units: int, limit: KeyLimit | None, prepaid: bool,
                cost: int, windows: tuple[str, ...], settle: bool) -> None:
        rid = self.rid()
        acct = self.workers[worker].accounts
        a = HoldAsk(tenant, key, units, limit, prepaid, rid, AT)

        def model() -> Reservation:
            result = self.ref.money_check(a, self.clock())
            if result.ok:
                self.ref.money_hold(a, self.clock(), self.HOLD_SECONDS[worker])
            return result

        got = self.outcome(lambda: acct.reserve(tenant, key, units, limit, prepaid, rid), model)
        if settle and isinstance(got, Reservation) and got.ok:
            self.run(acct.settle(tenant, key, rid, min(cost, units), windows))
            self.ref.money_settle(Charge(tenant, key, rid, min(cost, units), windows))

    @rule(worker=st.integers(0, 1), key=KEYS, limits=LIMITS, tokens=st.integers(0, 800),
          token_delta=st.integers(-600, 600), settle=st.booleans())
    def acquire(self, worker: int, key: str, limits: Limits, tokens: int, token_delta: int, settle: bool) -> None:
        rid = self.rid()
        limiter = self.workers[worker].limiter
        take = Acquire(key, limits, tokens, rid)

        def model() -> Decision:
            decision, new_tats, _ = self.ref.limits_check(take, self.clock())
            if decision.allowed:
                self.ref.limits_take(take, new_tats, self.clock(), self.HOLD_SECONDS[worker])
            return decision

        got = self.outcome(lambda: limiter.acquire(key, limits, tokens, rid), model)
        if settle and got.allowed:
            self.run(limiter.settle(key, limits, token_delta, rid))
            if limits.settles(token_delta):
                self.ref.limits_give(Release(key, limits, token_delta, rid), self.clock())

    @rule(tenant=TENANTS, key=KEYS, balance=st.one_of(st.none(), st.integers(-100, 2000)),
          windows=st.one_of(st.none(), st.dictionaries(st.sampled_from(WINDOWS), st.integers(0, 1000))))
    def load(self, tenant: str, key: str, balance: int | None, windows: dict[str, int] | None) -> None:
        self.run(self.workers[0].accounts.load(tenant, balance, key, windows))
        if balance is not None and tenant not in self.ref.balances:  # the read counted no pending credit
            self.ref.balances[tenant] = balance + sum(self.ref.pending.pop(tenant, {}).values())
        for w, used in (windows or {}).items():
            self.ref.windows.setdefault((key, w), used)

    @rule(tenant=TENANTS, amount=st.integers(0, 1000))
    def credit(self, tenant: str, amount: int) -> None:
        credit_id = self.rid()
        self.run(self.workers[1].accounts.credit(tenant, amount, credit_id))
        if tenant in self.ref.balances:
            self.ref.balances[tenant] += amount
        else:
            self.ref.pending.setdefault(tenant, {})[credit_id] = amount

    @rule(key=KEYS)
    def forget_key(self, key: str) -> None:
        self.run(self.workers[0].accounts.forget_key("t1", key))
        self.ref.windows = {kw: used for kw, used in self.ref.windows.items() if kw[0] != key}

    @rule()
    def forget_balances(self) -> None:
        self.run(self.workers[1].accounts.forget_balances())
        self.ref.balances.clear()

    @rule(seconds=st.sampled_from([0.5, 1.0, 7.5, 12.0, 13.0, 29.0, 30.0, 31.0, 90.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def sums_are_those_of_the_holds(self) -> None:
        tenants, keys, by_tenant, by_key = sums(self.path)
        assert tenants == by_tenant and keys == by_key
        with closing(sqlite3.connect(self.path)) as db:
            (sweep_at,) = db.execute("SELECT at FROM money_sweep").fetchone()
            (earliest,) = db.execute("SELECT min(expires) FROM money_holds").fetchone()
            in_force = {rid for (rid,) in db.execute("SELECT request_id FROM money_holds WHERE expires >= ?",
                                                      (self.clock(),))}
        assert earliest is None or (sweep_at is not None and sweep_at <= earliest)
        assert in_force == {rid for rid, h in self.ref.holds.items() if h[3] >= self.clock()}

    def teardown(self) -> None:
        for worker in self.workers:
            self.run(worker.close())
        self.loop.close()
        self.dir.cleanup()


CountersMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestCountersAgainstReference = CountersMachine.TestCase
