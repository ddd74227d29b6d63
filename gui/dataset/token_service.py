"""The Dataset area's tokenizer, in a long-lived child process.

Loading a tokenizer through transformers imports torch (``configuration_utils`` ->
``modeling_rope_utils``), about a second of imports holding the GIL: in the GUI process that
stalled the window 3-4 times by ~0.2 s (bench/ui_stall_preview.py, docs/ui-stall.md). Here the
tokenizer lives in a child (started with ``spawn``) that renders the Prompt preview and lints with
exact token lengths on request; the GUI sends plain values and records and gets plain values and
the lint report back through a pipe.

Requests are dicts with an ``op``:

- ``load`` ``{path}``: load (and keep) the tokenizer of a model folder.
- ``render`` ``{path, add_tokens, record, template, loss_on}``: the record as the trainer sees it:
  ``{pieces: [(text, trained)], skipped, total, trained, split, split_tokens}``.
- ``lint`` ``{path, add_tokens, ds, template, seq_len}``: ``engine.data.lint.lint``'s report.

Answers are ``("ok", value)`` or ``("error", message)``. :class:`TokenService` is thread-safe (one
request at a time) and restarts the child if it died. No Qt here.
"""

from __future__ import annotations

import threading
from typing import Any


def serve(conn: Any) -> None:
    """The child's loop: answer requests until the pipe closes."""
    tokenizers: dict[tuple, Any] = {}
    while True:
        try:
            req = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = ("ok", _handle(req, tokenizers))
        except Exception as e:  # noqa: BLE001 - one bad request must not end the service
            from engine.errors import StudioError

            answer = ("error", e.message if isinstance(e, StudioError) else f"{type(e).__name__}: {e}")
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return


def _tokenizer(tokenizers: dict[tuple, Any], path: str, add_tokens: tuple[str, ...] = ()) -> Any:
    key = (path, tuple(add_tokens))
    if key not in tokenizers:
        if add_tokens:
            import copy

            from engine.models import add_special_tokens

            tok = copy.deepcopy(_tokenizer(tokenizers, path))
            add_special_tokens(tok, list(add_tokens))
        else:
            from engine.models import load_tokenizer

            tok = load_tokenizer(path)
        tokenizers[key] = tok
    return tokenizers[key]


def _handle(req: dict, tokenizers: dict[tuple, Any]) -> Any:
    op = req["op"]
    tok = _tokenizer(tokenizers, req["path"], tuple(req.get("add_tokens") or ()))
    if op == "load":
        return {"vocab": len(tok)}
    if op == "render":
        from engine.data import preview
        from engine.data.templates import marker_problems, split_markers

        skipped: list[int] = []
        template = req["template"]
        pieces = preview(req["record"], tok, template, skipped=skipped, loss_on=req["loss_on"])

        def count(text: str) -> int:
            return len(tok(text, add_special_tokens=False)["input_ids"])

        return {"pieces": pieces, "skipped": skipped, "total": sum(count(t) for t, _ in pieces),
                "trained": sum(count(t) for t, trained in pieces if trained),
                "split": marker_problems(tok, template), "split_tokens": split_markers(tok, template)}
    if op == "lint":
        from engine.data.lint import lint

        return lint(req["ds"], tokenizer=tok, seq_len=req.get("seq_len") or None, template=req.get("template")
                    or "auto")
    raise ValueError(f"unknown request {op!r}")


class TokenService:
    """The GUI side: starts the child on first use, one request at a time, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._closed = False

    def call(self, request: dict) -> Any:
        """Send ``request`` and wait for its answer.

        Raises:
            RuntimeError: the request failed (the message says why), or the service was closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the tokenizer service was closed")
            conn = self._ensure()
            try:
                conn.send(request)
                status, value = conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                self._proc = None
                raise RuntimeError("the tokenizer process ended") from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        """End the child now (a request waiting on it fails at once)."""
        self._closed = True
        proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if proc is not None and proc.is_alive():
            proc.terminate()  # a request waiting on it reads the end of the pipe
            proc.join(5)
        # The pipe is closed only once no request reads it: closed under a reading thread, the
        # read failed with a TypeError from inside multiprocessing instead of the end of the pipe.
        if conn is not None and self._lock.acquire(timeout=5):
            try:
                conn.close()
            finally:
                self._lock.release()

    def _ensure(self) -> Any:
        if self._proc is None or not self._proc.is_alive():
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            mine, theirs = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=serve, args=(theirs,), name="dataset-tokenizer", daemon=True)
            proc.start()
            theirs.close()
            self._proc, self._conn = proc, mine
        return self._conn
