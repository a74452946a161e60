"""Hedged reads (store option hedge): a GET or HEAD still unanswered after a delay gets a
second request; the first answer wins, the other is cancelled; at most a budget fraction of
requests are hedges; writes are never hedged. Against the fault server, whose "delay:S"
holds one response back (the next request to that key is served at once) and whose requests
per key are recorded."""
import collections
import os
import signal
import threading
import time
import uuid

import pytest

from cloudfiles_store import CloudFilesStore, engine_stats, errors

SLOW = 8.0  # seconds a delayed response is held back; hedged reads end long before
SOONER = SLOW - 3  # a hedged read answered by then did not wait for the held-back response


class Target:
    def __init__(self, server):
        self.server = server
        self.prefix = "/hedge-" + uuid.uuid4().hex
        self.stores = []

    def path(self, key):
        return f"{self.prefix}/{key}"

    def seed(self, n, size=4096, name="k"):
        values = {f"{name}{i}": os.urandom(size + i) for i in range(n)}
        for k, v in values.items():
            self.server.put(self.path(k), v)
        return values

    def faults(self, key, faults):
        self.server.add_faults(self.path(key), faults)

    def counts(self, method=None):
        """{key: requests} of this target's keys (with `method`)."""
        c = collections.Counter()
        for r in self.server.requests(method=method):
            if r.path.startswith(self.prefix + "/"):
                c[r.path[len(self.prefix) + 1:]] += 1
        return c

    def store(self, **options):
        opts = {"retry_base": 0.01, "retry_cap": 0.1, "retries": 4, **options}
        s = CloudFilesStore(self.server.url + self.prefix, **opts)
        self.stores.append(s)
        return s


@pytest.fixture
def target(fault_server):
    t = Target(fault_server)
    yield t
    for s in t.stores:
        s.close()


def stats_delta(before):
    now = engine_stats()
    return {k: now[k] - before[k] for k in ("requests", "hedges", "hedges_won")}


# ------------------------------------------------------------------------- options

def test_hedge_is_off_by_default(target):
    values = target.seed(20)
    slow = ["k3", "k7"]
    for k in slow:
        target.faults(k, ["delay:0.5"])
    before = engine_stats()
    assert target.store().getitems(list(values)) == values
    assert stats_delta(before)["hedges"] == 0
    assert set(target.counts("GET").values()) == {1}


@pytest.mark.parametrize("option", [
    {"hedge_quantile": 0.2}, {"hedge_quantile": 1.0}, {"hedge_budget": 0},
    {"hedge_budget": 2}, {"hedge_delay": 0}, {"hedge": "sometimes"}])
def test_bad_hedge_options_are_refused(target, option):
    with pytest.raises(errors.OptionError) as info:
        target.store(**{"hedge": True, **option})
    assert next(iter(option)) in str(info.value)


# ---------------------------------------------------------------- slow keys hedged

def test_slow_keys_get_a_second_request_and_answer_sooner(target):
    values = target.seed(200)
    slow = ["k5", "k50", "k123", "k199"]
    for k in slow:
        target.faults(k, [f"delay:{SLOW}"])
    store = target.store(hedge=True, hedge_delay=1.0, hedge_budget=1.0)
    before = engine_stats()
    t0 = time.monotonic()
    assert store.getitems(list(values)) == values
    assert time.monotonic() - t0 < SOONER
    counts = target.counts("GET")
    assert {k for k, n in counts.items() if n > 1} == set(slow)
    assert all(counts[k] == 2 for k in slow)
    d = stats_delta(before)
    assert d["hedges"] == len(slow) and d["hedges_won"] == len(slow)
    assert d["requests"] == len(values) + len(slow)


def test_learned_delay_hedges_the_slow_keys(target):
    """No fixed delay: the store learns its own (the 0.95 quantile of its times to the first
    byte) from reads that came before."""
    warm = target.seed(300, name="w")
    store = target.store(hedge=True, hedge_budget=1.0)
    assert store.getitems(list(warm)) == warm
    values = target.seed(100)
    slow = ["k0", "k33", "k66", "k99"]
    for k in slow:
        target.faults(k, [f"delay:{SLOW}"])
    before = engine_stats()
    t0, t0_wall = time.monotonic(), time.time()
    assert store.getitems(list(values)) == values
    elapsed = time.monotonic() - t0
    counts, d = target.counts("GET"), stats_delta(before)
    # when each slow key's second request came: the delay the store had learned
    gaps = {k: [round(r.time - t0_wall, 3) for r in target.server.requests(target.path(k))]
            for k in slow}
    why = (elapsed, gaps, d)
    assert all(counts[k] == 2 for k in slow), why
    assert d["hedges_won"] >= len(slow), why
    assert elapsed < SOONER, why


def test_no_hedge_before_the_store_has_learned_a_delay(target):
    values = target.seed(5)
    target.faults("k2", ["delay:0.5"])
    before = engine_stats()
    assert target.store(hedge=True, hedge_budget=1.0).getitems(list(values)) == values
    assert stats_delta(before)["hedges"] == 0


def test_single_get_and_head_are_hedged(target):
    values = target.seed(3)
    store = target.store(hedge=True, hedge_delay=0.2, hedge_budget=1.0)
    for op in ("get", "head", "range"):
        target.faults("k1", [f"delay:{SLOW}"])
        t0 = time.monotonic()
        if op == "get":
            assert store["k1"] == values["k1"]
        elif op == "head":
            assert "k1" in store
        else:
            assert store.get_range("k1", 10, 1000) == values["k1"][10:1000]
        assert time.monotonic() - t0 < SOONER
    assert target.counts("GET")["k1"] == 4
    assert target.counts("HEAD")["k1"] == 2


def test_missing_key_answered_by_the_hedge_is_a_key_error(target):
    target.faults("nope", [f"delay:{SLOW}"])
    store = target.store(hedge=True, hedge_delay=0.2, hedge_budget=1.0)
    t0 = time.monotonic()
    with pytest.raises(KeyError):
        store["nope"]
    assert time.monotonic() - t0 < SOONER
    assert target.counts("GET")["nope"] == 2


# -------------------------------------------------------------------------- budget

def test_budget_caps_the_hedges(target):
    """Every response slow: with a budget of 5%, about 5% of the reads get a hedge (plus
    the bucket's burst of 10), not all of them."""
    n = 400
    values = target.seed(n, size=100)
    for k in values:
        target.faults(k, ["delay:1"])
    store = target.store(hedge=True, hedge_delay=0.05, hedge_budget=0.05, concurrency=n)
    before = engine_stats()
    assert store.getitems(list(values)) == values
    d = stats_delta(before)
    assert 1 <= d["hedges"] <= 0.05 * n + 10 + 1
    assert d["requests"] == n + d["hedges"]
    assert sum(target.counts("GET").values()) == n + d["hedges"]


def test_no_hedge_while_a_host_that_pushed_back_has_its_window_full():
    """Hedges count in the host's in-flight window (the 503/429 throttle): once the host
    pushed back, a read that would take the window past its limit is not hedged while the
    window stays full, and is hedged once a completion makes room. A server of its own:
    the window is per host and process."""
    from servers.faultserver import FaultServer

    with FaultServer() as srv:
        for k in ("k0", "k1", "k2"):
            srv.put(f"/p/{k}", os.urandom(1000))
        # the push-back, through a store that does not hedge (the window is the host's)
        plain = CloudFilesStore(srv.url + "/p", retry_base=0.01, retry_cap=0.05)
        store = CloudFilesStore(srv.url + "/p", hedge=True, hedge_delay=0.1, hedge_budget=1.0)
        try:
            before = engine_stats()
            srv.add_faults("/p/k0", ["503"])  # the window: halved to 1, then 2 on success
            assert plain["k0"] == srv.get("/p/k0")
            assert engine_stats()["window_decreases"] - before["window_decreases"] == 1
            srv.add_faults("/p/k1", ["delay:1.5"])
            srv.add_faults("/p/k2", ["delay:30"])  # held until the hedge answers instead
            got = {}
            reader = threading.Thread(target=lambda: got.update(store.getitems(["k1", "k2"])))
            t0 = time.monotonic()
            reader.start()
            # both in flight fill the window: past the hedge delay, still no hedge
            time.sleep(1.0)
            assert stats_delta(before)["hedges"] == 0
            assert len(srv.requests(method="GET")) == 2 + 2
            # k1's answer makes room: k2, still unanswered, is hedged and the hedge wins
            reader.join(20)
            assert not reader.is_alive()
            assert time.monotonic() - t0 < 10
            assert got == {k: srv.get(f"/p/{k}") for k in ("k1", "k2")}
            assert stats_delta(before)["hedges"] == 1
            assert len(srv.requests("/p/k2", method="GET")) == 2
            assert len(srv.requests(method="GET")) == 2 + 2 + 1
        finally:
            store.close()
            plain.close()


# -------------------------------------------------------------------------- writes

def test_writes_are_never_hedged(target):
    store = target.store(hedge=True, hedge_delay=0.05, hedge_budget=1.0)
    values = {f"w{i}": os.urandom(1000) for i in range(10)}
    for k in values:
        target.faults(k, ["delay:0.5"])
    before = engine_stats()
    store.setitems(values)
    for k in values:
        target.faults(k, ["delay:0.5"])
    store.delitems(list(values))
    assert stats_delta(before)["hedges"] == 0
    assert set(target.counts("PUT").values()) == {1}
    assert set(target.counts("DELETE").values()) == {1}
    assert target.counts("GET") == {}


# -------------------------------------------------------- the winner's bytes, whole

def test_first_request_wins_while_the_hedge_is_mid_body(target):
    """The first answer comes while the hedge's body trickles in: the op has the first
    request's bytes, whole; the hedge is dropped."""
    values = target.seed(1, size=1 << 20)
    target.faults("k0", ["delay:0.6", "trickle:3"])
    store = target.store(hedge=True, hedge_delay=0.2, hedge_budget=1.0)
    before = engine_stats()
    assert store["k0"] == values["k0"]
    d = stats_delta(before)
    assert d["hedges"] == 1 and d["hedges_won"] == 0


def test_hedge_wins_and_the_first_requests_bytes_never_mix_in(target):
    """The first request is held back: the hedge's answer, whole, is the op's, and the
    first request's connection is dropped (the server stops holding its response)."""
    values = target.seed(1, size=1 << 20)
    target.faults("k0", [f"delay:{SLOW}"])
    store = target.store(hedge=True, hedge_delay=0.2, hedge_budget=1.0)
    before = engine_stats()
    assert store["k0"] == values["k0"]
    assert stats_delta(before)["hedges_won"] == 1
    deadline = time.monotonic() + 3
    while target.server.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.server.in_flight() == 0


def test_503_on_the_hedge_does_not_fail_the_read(target):
    values = target.seed(1)
    target.faults("k0", ["delay:0.8", "503"])
    store = target.store(hedge=True, hedge_delay=0.1, hedge_budget=1.0, retries=1)
    before = engine_stats()
    assert store["k0"] == values["k0"]
    d = stats_delta(before)
    assert d["hedges"] == 1 and d["hedges_won"] == 0
    assert target.counts("GET")["k0"] == 2


def test_one_hedge_per_request_at_most(target):
    """Both the first request and its hedge held back: the read waits for the first answer;
    no third request."""
    values = target.seed(1)
    target.faults("k0", ["delay:1.5", "delay:1.5"])
    store = target.store(hedge=True, hedge_delay=0.1, hedge_budget=1.0)
    before = engine_stats()
    assert store["k0"] == values["k0"]
    assert stats_delta(before)["hedges"] == 1
    assert target.counts("GET")["k0"] == 2


# -------------------------------------------------------------------- cancellation

def test_interrupt_gives_up_both_requests(target):
    values = target.seed(1)
    target.faults("k0", ["delay:30", "delay:30"])
    store = target.store(hedge=True, hedge_delay=0.1, hedge_budget=1.0, stall_timeout=120)

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            store.getitems(["k0"])
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, old)
    assert time.monotonic() - t0 < 5
    assert target.counts("GET")["k0"] == 2
    # both connections were dropped: the server stops holding either response
    deadline = time.monotonic() + 5
    while target.server.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.server.in_flight() == 0
    assert store["k0"] == values["k0"]
