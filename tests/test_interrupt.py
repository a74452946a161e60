"""A signal (Ctrl-C) during a blocking call: the call raises what the signal's handler
raises, promptly, and gives up what can be given up without leaving anything half done
(engine.h, cfs_engine_notice_cancel): reads on the wire or waiting to retry, and ops not
sent yet. A write already on the wire completes. Against the fault server, whose "stall" and
"delay" faults hold a response back for longer than any of these tests may take."""
import contextlib
import json
import os
import signal
import threading
import time

import pytest

from cloudfiles_store import CloudFilesStore

STALL = 30  # seconds a stalled response would take; each test must end long before


class Interrupted(Exception):
    pass


@contextlib.contextmanager
def interrupt_after(seconds, when=None):
    """SIGUSR1 to this process after `seconds` (with `when`: once when() is also true,
    checked every 10 ms for up to 10 s more, so a loaded machine's slow start does not
    change what is on the wire when it comes); its handler raises Interrupted in the main
    thread (as SIGINT raises KeyboardInterrupt, without pytest taking it as its own).
    Yields a dict whose "sent" is the monotonic time the signal went."""
    def handler(signum, frame):
        raise Interrupted()

    sent = {}
    cancel = threading.Event()

    def fire():
        if cancel.wait(seconds):
            return
        deadline = time.monotonic() + 10
        while when is not None and not when() and time.monotonic() < deadline:
            if cancel.wait(0.01):
                return
        sent["sent"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Thread(target=fire, daemon=True)
    timer.start()
    try:
        yield sent
    finally:
        cancel.set()
        timer.join()
        signal.signal(signal.SIGUSR1, old)


def _seed(fault_server, root, n, fault):
    values = {f"k{i}": os.urandom(1000 + i) for i in range(n)}
    for k, v in values.items():
        fault_server.put(f"{root}/{k}", v)
        if fault:
            fault_server.add_faults(f"{root}/{k}", [fault])
    return values


def _requests(fault_server, root, method):
    return [r for r in fault_server.requests(method=method) if r.path.startswith(root + "/")]


def _store(fault_server, root, **options):
    # no stall detection and retries that would take minutes: only the interrupt ends early
    return CloudFilesStore(fault_server.url + root, stall_timeout=120, retries=6, **options)


def test_interrupted_getitems_gives_up_its_reads(fault_server):
    root = "/interrupt-getitems"
    values = _seed(fault_server, root, 40, f"stall:{STALL}")
    store = _store(fault_server, root, concurrency=4)
    on_wire = lambda: len(_requests(fault_server, root, "GET")) >= 4  # noqa: E731
    with interrupt_after(0.5, when=on_wire) as signal_sent, pytest.raises(Interrupted):
        store.getitems(list(values))
    assert time.monotonic() - signal_sent["sent"] < 5
    # the 4 on the wire were dropped, the 4 more the window had submitted never went out,
    # the other 32 were never submitted
    sent = sorted(r.path.rsplit("/", 1)[1] for r in _requests(fault_server, root, "GET"))
    assert sent == ["k0", "k1", "k2", "k3"]
    assert all(fault_server.pending_faults(f"{root}/k{i}") for i in range(4, 40))
    # the store goes on (the stalls of those 4 were spent on the dropped reads)
    assert store.getitems(sent) == {k: values[k] for k in sent}


def test_interrupted_get_of_one_key(fault_server):
    root = "/interrupt-get"
    values = _seed(fault_server, root, 1, f"stall:{STALL}")
    store = _store(fault_server, root)
    t0 = time.monotonic()
    with interrupt_after(0.5), pytest.raises(Interrupted):
        store["k0"]
    assert time.monotonic() - t0 < 5
    assert store["k0"] == values["k0"]  # the fault was spent: the next read is served


def test_interrupted_read_waiting_to_retry(fault_server):
    """A read between attempts (Retry-After: 20 s) is given up too."""
    root = "/interrupt-retry"
    values = _seed(fault_server, root, 1, "503:20")
    store = _store(fault_server, root, retry_cap=30)
    t0 = time.monotonic()
    with interrupt_after(0.5), pytest.raises(Interrupted):
        store.getitems(["k0"])
    assert time.monotonic() - t0 < 5
    assert len(_requests(fault_server, root, "GET")) == 1
    assert store["k0"] == values["k0"]


def test_interrupted_setitems_completes_the_writes_on_the_wire(fault_server):
    """Writes already sent are not cut off (the server answers them after 3 s); those not
    sent yet are given up."""
    root = "/interrupt-setitems"
    for i in range(10):
        fault_server.add_faults(f"{root}/w{i}", ["delay:3"])
    values = {f"w{i}": os.urandom(5000) for i in range(10)}
    store = _store(fault_server, root, concurrency=2)
    t0 = time.monotonic()
    with interrupt_after(0.5), pytest.raises(Interrupted):
        store.setitems(values)
    elapsed = time.monotonic() - t0
    assert 2.5 < elapsed < 10
    puts = _requests(fault_server, root, "PUT")
    assert len(puts) == 2
    for r in puts:  # answered (delay, then 2xx) and stored whole
        key = r.path.rsplit("/", 1)[1]
        assert store[key] == values[key]


def test_abandoned_iter_get_does_not_wait_for_stalled_reads(fault_server):
    """Leaving an iter_get loop early: the reads still going are given up, not waited for."""
    root = "/interrupt-iter"
    values = _seed(fault_server, root, 8, None)
    for i in range(1, 8):
        fault_server.add_faults(f"{root}/k{i}", [f"stall:{STALL}"])
    store = _store(fault_server, root, concurrency=8)
    t0 = time.monotonic()
    it = store.iter_get(list(values))
    key, value = next(it)
    assert (key, value) == ("k0", values["k0"])
    del it  # drops the batch: the 7 stalled reads are given up
    assert time.monotonic() - t0 < 5
    assert store.getitems(list(values)) == values


def test_cancelled_future_gives_up_its_read(fault_server):
    """asyncio (ZarrStore): a read whose task is cancelled, here by wait_for's timeout, is
    given up, so it no longer holds the store's only slot: the next read goes at once."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    from cloudfiles_store import ZarrStore

    root = "/interrupt-async"
    values = _seed(fault_server, root, 2, None)
    fault_server.add_faults(f"{root}/k0", [f"stall:{STALL}"])
    store = ZarrStore(fault_server.url + root, concurrency=1, stall_timeout=120)

    async def main():
        proto = default_buffer_prototype()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.get("k0", proto), 0.5)
        t0 = time.monotonic()
        got = await store.get("k1", proto)
        return time.monotonic() - t0, got.to_bytes()

    elapsed, got = asyncio.run(main())
    assert got == values["k1"] and elapsed < 5


def test_interrupt_reaches_ops_parked_for_a_token(fault_server):
    """Ops parked while another caller's op fetches the access token (the metadata server
    answers after 5 s) are given up at once: they do not wait for that fetch to end."""
    token_path = "/computeMetadata/v1/instance/service-accounts/default/token"
    fault_server.put(token_path, json.dumps({"access_token": "ya29.t", "expires_in": 3600}).encode())
    fault_server.add_faults(token_path, ["delay:5"])
    values = {f"k{i}": os.urandom(100) for i in range(20)}
    for k, v in values.items():
        fault_server.put(f"/storage/v1/b/bkt/o/interrupt-token/{k}", v)
    store = CloudFilesStore("gs://bkt/interrupt-token", endpoint_url=fault_server.url,
                            metadata_host=fault_server.url.split("://", 1)[1], concurrency=8)
    got = {}
    other = threading.Thread(target=lambda: got.update(store.getitems(["k0"])))
    other.start()
    time.sleep(0.3)  # its op holds the claim: its token request is under way
    t0 = time.monotonic()
    with interrupt_after(0.5), pytest.raises(Interrupted):
        store.getitems(list(values))
    assert time.monotonic() - t0 < 3
    other.join()
    assert got == {"k0": values["k0"]}
    assert len(fault_server.requests(token_path)) == 1
