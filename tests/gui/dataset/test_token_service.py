"""The Dataset area's tokenizer process: closing it while a request waits fails that request cleanly."""

from __future__ import annotations

import threading
import time

import pytest

from engine.paths import demo_model_dir
from gui.dataset.token_service import TokenService


def test_closing_the_service_fails_a_waiting_request_with_its_own_error():
    service = TokenService()
    raised: list[BaseException] = []

    def request() -> None:
        try:  # the child spawns and imports transformers for seconds: the request waits on the pipe
            service.call({"op": "load", "path": str(demo_model_dir())})
        except BaseException as e:  # noqa: BLE001 - the test looks at what was raised
            raised.append(e)

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.5)
    service.close()
    thread.join(30)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], RuntimeError), raised  # was a TypeError from multiprocessing
    assert "ended" in str(raised[0])
    with pytest.raises(RuntimeError, match="closed"):
        service.call({"op": "load", "path": str(demo_model_dir())})


def test_the_pipe_is_closed_only_once_no_request_reads_it():
    """An answer that arrived as the window closed was read half from a closed pipe: multiprocessing
    raised a TypeError in the preview's thread. close() now waits for the request before closing."""
    service = TokenService()
    service._ensure()  # the child and its pipe, no request yet
    conn = service._conn
    service._lock.acquire()  # a request reading its answer holds the lock
    closing = threading.Thread(target=service.close)
    closing.start()
    time.sleep(0.5)
    try:
        assert not conn.closed, "the pipe was closed under a reading request"
    finally:
        service._lock.release()
    closing.join(10)
    assert conn.closed
