"""One dataset record, and the three record formats: Alpaca, ShareGPT and OpenAI-style messages.

A record keeps its fields exactly as read (key order, unknown extra fields) so that a save
never loses data. For large JSONL files a record holds only its original line (bytes) and
parses it on first access of :attr:`Record.data`: a 100 MB file then costs about its own
size in memory instead of ~1.6x for a dict per line (measured in ``docs/dataset-bench.md``).

A *broken* record is text that did not parse. It keeps that text in :attr:`Record.raw`
and the parser's reason in :attr:`Record.error`, and it is written back unchanged on save,
so nothing is ever silently dropped. :meth:`Record.fix` turns it into a good record.

Format conventions follow LLaMA-Factory's ``data/README.md`` and ``converter.py``:

- Alpaca: ``instruction`` (+ ``input``, joined with a newline), ``output``, optional
  ``system`` and ``history`` (a list of ``[user, assistant]`` pairs).
- ShareGPT: ``conversations`` of ``{"from", "value"}`` with the tags human, gpt, system,
  function_call and observation (and an optional top-level ``system``).
- Messages (OpenAI style): ``messages`` of ``{"role", "content"}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.data import json_text
from engine.errors import DataError, json_problem


class RecordFormat:
    """Names of the record formats and file containers."""

    ALPACA = "alpaca"
    SHAREGPT = "sharegpt"
    MESSAGES = "messages"
    FORMATS = (ALPACA, SHAREGPT, MESSAGES)

    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"
    CONTAINERS = (JSON, JSONL, CSV, PARQUET)


ALPACA_FIELDS = ("instruction", "input", "output", "system", "history")
# The key that holds the conversation in each chat format.
CONVERSATION_KEY = {RecordFormat.SHAREGPT: "conversations", RecordFormat.MESSAGES: "messages"}

# ShareGPT tags -> chat roles. function_call is the model's own output (trained, like an
# answer); observation is a tool's result fed back to the model, i.e. prompt.
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "function_call": "assistant",
    "system": "system",
    "observation": "tool", "tool": "tool",
}
ROLE_TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}
MESSAGE_ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Schema:
    """How to read the records of one file: their format and an optional key/role mapping.

    ``mapping`` renames the file's own names to the standard ones, e.g.
    ``{"prompt": "instruction", "response": "output"}`` for columns, or
    ``{"speaker": "from", "text": "value", "bot": "gpt"}`` for conversation keys and role tags.
    The record's ``data`` keeps the file's names; only :meth:`Record.messages` applies it.
    """

    format: str = RecordFormat.ALPACA
    mapping: dict[str, str] = field(default_factory=dict)

    def own_names(self) -> dict[str, str]:
        """The file's own name for each standard one it renames (``{"instruction": "prompt"}``): a
        record is edited and added in them, or the file no longer reads as it did."""
        return {std: src for src, std in self.mapping.items()}

    def key(self, data: dict, standard: str) -> Any:
        """The value of the field called ``standard`` after mapping, or None."""
        if standard in data and standard not in self.mapping:
            return data[standard]
        for src, dst in self.mapping.items():
            if dst == standard and src in data:
                return data[src]
        return None


_MISSING = object()
RECORD_AT = re.compile(r"^record( at line \d+)?: ")
"""How :func:`to_messages`' errors start (``"record at line 3: "``): cut where the record is named already."""
ERROR_PLACE = re.compile(r"line (\d+)(?:, column (\d+))?: ")
"""How a broken record's :attr:`Record.error` starts when it names a place: ``"line 3, column 67: "``."""
# What a turn's role and content are read from; any other key of a turn is the turn's own (a
# LLaMA-Factory/axolotl ``weight``, which training reads, a ``name``). tool_calls is read into the content.
_TURN_FIELDS = ("role", "from", "content", "value", "tool_calls")


class Record:
    """One record of a dataset file.

    Args:
        data: The record's fields exactly as read (key order kept, unknown extras kept).
        line: 1-based line of the record's start in the source file; None for new records.
        raw: For a broken record, the original text, kept so it can be fixed in place.
        error: For a broken record, the parser's reason with its position, e.g.
            ``"line 12, column 5: Expecting ',' delimiter"``.
        source: The record's original text as read (bytes for JSONL, including its line
            ending). When given without ``data``, ``data`` is parsed from it on first access.
        schema: The file's format and mapping, used by :meth:`messages`.
        column: For a broken record, the 1-based column of the error.
        start_column: For a broken record read from (or saved to) a file, the 1-based column of
            :attr:`line` where its text starts: past the indent before a JSON array's element, or
            the elements before it on that line. None means 1 (a JSONL line, a CSV row). An error
            on the record's first line is this many columns, less one, right of where it is in
            :attr:`raw`.
    """

    __slots__ = ("_data", "_source", "line", "raw", "error", "column", "start_column", "schema", "_edited")

    def __init__(self, data: dict | None = None, line: int | None = None, raw: str | None = None,
                 error: str | None = None, *, source: bytes | str | None = None,
                 schema: Schema | None = None, column: int | None = None, start_column: int | None = None):
        if data is None and (source is None or error is not None):
            data = {}
        self._data = data
        self._source = source
        self.line = line
        self.raw = raw
        self.error = error
        self.column = column
        self.start_column = start_column
        self.schema = schema
        # A new record (no source) counts as edited: it must be serialised on save.
        self._edited = source is None

    # ---- Public API

    @property
    def data(self) -> dict:
        """The record's fields (parsed on first access for lazily loaded JSONL lines).

        Mutate it freely; a save compares it with the original text and re-serialises only
        records that differ. A broken record's data is ``{}`` until :meth:`fix` succeeds.
        """
        d = self._data
        if d is None:
            d = self._parse_source()
            self._data = d
        return d

    @data.setter
    def data(self, value: dict) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"record data must be a dict, not {type(value).__name__}")
        self._data = value
        self._edited = True
        # Replacing a broken record's data is how the form editor fixes it.
        self.raw = self.error = self.column = self.start_column = None

    def peek(self) -> dict:
        """The fields, without caching a lazily parsed dict. Read-only: don't mutate.

        Lint, hashing and the trainer walk all records through this so that a 100k-record
        file does not grow to a dict per line in memory.
        """
        d = self._data
        return d if d is not None else self._parse_source()

    @property
    def broken(self) -> bool:
        """True when the record's text did not parse; see :attr:`raw` and :attr:`error`."""
        return self.error is not None

    @property
    def error_in_file(self) -> bool:
        """Whether the line and column a broken record's :attr:`error` names are the file's: for a record
        as read or saved. Any other (text retyped in the editor, a copy, a record restored after a crash)
        names them in its own text, :attr:`raw`, whose first line is line 1: it is not (or no longer
        known to be) where the file holds it."""
        return self.line is not None and self._source is not None

    def error_in_text(self) -> tuple[str | None, int | None]:
        """:attr:`error` and :attr:`column` with the place named in the record's own text (line 1 its
        first line), as a copy of the record or one restored after a crash holds them: the file line an
        error as read names is where this record is in the file, not where the copy will be, nor,
        once the file has changed, where the restored one is.

        Returns:
            ``(error, column)``; as they are when they name no file place.
        """
        m = ERROR_PLACE.match(self.error) if self.error is not None and self.error_in_file else None
        if m is None:
            return self.error, self.column
        line = int(m.group(1)) - self.line + 1
        column = int(m.group(2)) if m.group(2) else None
        if line < 1:
            return self.error, self.column
        if column is not None and line == 1:  # the file's columns before the text (a JSON array's indent)
            column -= (self.start_column or 1) - 1
        where = f"line {line}" if column is None else f"line {line}, column {column}"
        return f"{where}: {self.error[m.end():]}", column

    def error_words(self) -> str | None:
        """:attr:`error` as a message says it: as it is when it names the file's line, else with "of
        its text" after the place (``"line 1, column 5 of its text: Expecting ','"``), so that a line
        of the record's text is never read as a line of the file."""
        m = ERROR_PLACE.match(self.error) if self.error is not None and not self.error_in_file else None
        if m is None:
            return self.error
        cut = m.end() - 2  # before ": "
        return f"{self.error[:cut]} of its text{self.error[cut:]}"

    @property
    def materialized(self) -> bool:
        """Whether :attr:`data` is held as a dict (rather than parsed on demand)."""
        return self._data is not None

    @property
    def source(self) -> bytes | str | None:
        """The record's original text as read, or None for a record added in the editor."""
        return self._source

    def fix(self, text: str) -> bool:
        """Replace a record with the JSON object in ``text`` (how a broken record is fixed in place).

        On success the record becomes good and ``text`` is what the next save writes for it.
        On failure the record becomes (or stays) broken with ``raw = text`` and the reason.

        Returns:
            True when ``text`` parsed as a JSON object.
        """
        try:
            value = json_text.loads(text)
        except json.JSONDecodeError as e:
            self._set_broken(text, f"line {e.lineno}, column {e.colno}: {json_problem(e)}", e.colno)
            return False
        if not isinstance(value, dict):
            self._set_broken(text, f"expected a JSON object {{...}}, got {_json_type(value)}", 1)
            return False
        self._data = value
        self._source = text if isinstance(self._source, str) or self._source is None else (
            text.encode("utf-8") + _line_ending(self._source))
        self._edited = False
        self.raw = self.error = self.column = self.start_column = None
        return True

    def messages(self, schema: Schema | None = None, *, turn_keys: bool = False,
                 weights: bool = False) -> list[dict[str, Any]]:
        """The record as a chat: ``[{"role": "system"|"user"|"assistant"|"tool", "content": str}]``.

        Alpaca becomes system, the history pairs, then ``instruction + "\\n" + input`` and
        ``output``; ShareGPT tags are mapped (human→user, gpt→assistant, function_call→
        assistant, observation→tool); messages are taken as they are.

        Args:
            schema: Format and mapping; defaults to the record's own, else guessed from its keys.
            turn_keys: Also keep a turn's other keys after its role and content (a ``weight`` or
                ``name``), for a conversion to carry them over as they are.
            weights: Also keep an assistant turn's ``weight`` (see :func:`turn_trains`), checked and
                as a bool, for training to read; the only key besides role and content, so no other
                key of a turn reaches a chat template. A weight on another turn is ignored.

        Raises:
            DataError: the record is broken, or a field has the wrong type or an unknown role, or
                (with ``weights``) an answer's weight is not 0, 1, true or false.
        """
        where = f"record at line {self.line}" if self.line else "record"
        if self.broken:
            raise DataError(f"{where} is not valid JSON ({self.error})", line=self.line)
        return to_messages(self.peek(), schema or self.schema, where, turn_keys=turn_keys, weights=weights)

    def text_fields(self) -> list[str]:
        """Every text of the record in reading order (for search, dedup and length estimates)."""
        try:
            return [m["content"] for m in self.messages()]
        except DataError:
            return [v for v in self.peek().values() if isinstance(v, str)]

    # ---- Internals

    def _parse_source(self) -> dict:
        if self._source is None or self.error is not None:
            return {}
        value = json.loads(self._source)
        if not isinstance(value, dict):  # validated at load; only a changed source gets here
            raise DataError(f"record at line {self.line} is not a JSON object", line=self.line)
        return value

    def _set_broken(self, text: str, error: str, column: int | None) -> None:
        # The error is placed in ``text`` itself, which starts at its own column 1.
        self.raw, self.error, self.column, self.start_column = text, error, column, None
        self._data = {}
        self._edited = True

    def __repr__(self) -> str:
        if self.broken:
            return f"Record(line={self.line}, broken: {self.error!r})"
        return f"Record(line={self.line}, data={self.peek()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.peek(), self.line, self.raw, self.error) == (other.peek(), other.line, other.raw,
                                                                  other.error)

    __hash__ = None  # mutable


def _line_ending(source: bytes) -> bytes:
    if source.endswith(b"\r\n"):
        return b"\r\n"
    return b"\n" if source.endswith(b"\n") else b""


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def guess_format(data: dict, mapping: dict[str, str] | None = None) -> str | None:
    """The record format suggested by one record's keys (after mapping), or None."""
    keys = {(mapping or {}).get(k, k) for k in data}
    if "messages" in keys:
        return RecordFormat.MESSAGES
    if "conversations" in keys:
        return RecordFormat.SHAREGPT
    if keys & {"instruction", "output"}:
        return RecordFormat.ALPACA
    return None


def to_messages(data: dict, schema: Schema | None = None, where: str = "record", *,
                turn_keys: bool = False, weights: bool = False) -> list[dict[str, Any]]:
    """A record's fields as chat messages; see :meth:`Record.messages`.

    Raises:
        DataError: a field has the wrong type or an unknown role, or (with ``weights``) an answer's
            weight is not 0, 1, true or false (``where`` names the record).
    """
    schema = schema or Schema(guess_format(data) or RecordFormat.ALPACA)
    if schema.format == RecordFormat.ALPACA:
        return _alpaca_messages(data, schema, where)
    return _chat_messages(data, schema, where, turn_keys, weights)


WEIGHT_VALUES = "0, 1, true or false"
"""What a turn's ``weight`` may be, in words (for messages)."""


def turn_trains(weight: Any, at: str) -> bool:
    """Whether an assistant turn with this ``weight`` trains: Axolotl's per-turn key of ShareGPT and
    chat_template datasets (and LLaMA-Factory's). 1 or true (or no weight, or null, which a
    dataset with the key on only some turns reads as) trains; 0 or false makes the answer context.

    Args:
        weight: The turn's ``weight`` value.
        at: The turn in words, for the error (``"conversations[2] (assistant)"``).

    Raises:
        DataError: any other value (0.5, 2, "no"): a weight is an on/off switch here, not a scale.
    """
    if weight is None or isinstance(weight, bool):
        return weight is not False
    if isinstance(weight, (int, float)) and weight in (0, 1):
        return bool(weight)
    try:
        shown = json.dumps(weight)
    except (TypeError, ValueError):
        shown = repr(weight)
    raise DataError(f"{at} has the weight {shown}; allowed: {WEIGHT_VALUES} (0 or false: the answer is "
                    "context, not trained)", hint="Set the turn's weight to 0 (not trained) or 1 (trained).")


def _text(value: Any, key: str, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: '{key}' is {_json_type(value)}, expected text")
    return value


def _alpaca_messages(data: dict, schema: Schema, where: str) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    system = _text(schema.key(data, "system"), "system", where)
    if system.strip():
        msgs.append({"role": "system", "content": system})
    history = schema.key(data, "history")
    if history:
        if not isinstance(history, list):
            raise DataError(f"{where}: 'history' is {_json_type(history)}, expected a list of "
                            "[instruction, answer] pairs")
        for i, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise DataError(f"{where}: history[{i}] is not an [instruction, answer] pair")
            msgs.append({"role": "user", "content": _text(pair[0], f"history[{i}][0]", where)})
            msgs.append({"role": "assistant", "content": _text(pair[1], f"history[{i}][1]", where)})
    instruction = _text(schema.key(data, "instruction"), "instruction", where)
    extra = _text(schema.key(data, "input"), "input", where)
    prompt = f"{instruction}\n{extra}" if instruction and extra else (instruction or extra)
    msgs.append({"role": "user", "content": prompt})
    output = schema.key(data, "output")
    if output is not None:
        msgs.append({"role": "assistant", "content": _text(output, "output", where)})
    return msgs


def _chat_messages(data: dict, schema: Schema, where: str, turn_keys: bool = False,
                   weights: bool = False) -> list[dict[str, Any]]:
    key = CONVERSATION_KEY[schema.format]
    turns = schema.key(data, key)
    if turns is None:
        raise DataError(f"{where}: no '{key}' field")
    if not isinstance(turns, list):
        raise DataError(f"{where}: '{key}' is {_json_type(turns)}, expected a list of turns")
    m = schema.mapping
    msgs: list[dict[str, str]] = []
    system = schema.key(data, "system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: {key}[{i}] is {_json_type(turn)}, expected an object")
        turn = {m.get(k, k): v for k, v in turn.items()}
        tag = turn.get("role", turn.get("from", _MISSING))
        content = turn.get("content", turn.get("value", _MISSING))
        if tag is _MISSING:
            raise DataError(f"{where}: {key}[{i}] has no 'role' (or 'from')")
        if content is _MISSING:
            raise DataError(f"{where}: {key}[{i}] has no 'content' (or 'value')")
        tag = m.get(tag, tag) if isinstance(tag, str) else tag
        role = SHAREGPT_ROLES.get(tag) if isinstance(tag, str) else None
        if role is None:
            raise DataError(f"{where}: {key}[{i}] has the role {tag!r}; allowed: "
                            + ", ".join(sorted(SHAREGPT_ROLES)),
                            hint="Map it to a known role with a mapping, e.g. {\"bot\": \"gpt\"}.")
        msg = {"role": role, "content": turn_content(turn, content, f"{key}[{i}]", where)}
        if turn_keys:
            msg.update((k, v) for k, v in turn.items() if k not in _TURN_FIELDS)
        if weights and role == "assistant" and turn.get("weight") is not None:
            msg["weight"] = turn_trains(turn["weight"], f"{where}: {key}[{i}] ({role})")
        msgs.append(msg)
    return msgs


def turn_content(turn: dict, content: Any, at: str, where: str = "record") -> str:
    """A turn's text as it trains: the text itself; OpenAI content parts joined (text parts only);
    an assistant's OpenAI ``tool_calls`` written after its text as the call's JSON
    (``{"name": ..., "arguments": {...}}``, a list for several), the form ShareGPT's
    ``function_call`` turns hold, so both train the same way.

    Raises:
        DataError: content of another type, or a part that isn't text (an image).
    """
    if isinstance(content, list):
        kinds = {p.get("type") if isinstance(p, dict) else _json_type(p) for p in content}
        if kinds - {"text"}:
            raise DataError(f"{where}: {at}.content has {', '.join(sorted(map(str, kinds - {'text'})))} parts; "
                            "only text parts train")
        content = "".join(p.get("text") or "" for p in content)
    text = _text(content, f"{at}.content", where)
    calls = turn.get("tool_calls")
    if not calls:
        return text
    if not isinstance(calls, list):
        raise DataError(f"{where}: {at}.tool_calls is {_json_type(calls)}, expected a list of calls")
    written = []
    for call in calls:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise DataError(f"{where}: {at}.tool_calls has a call without a function name")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                pass  # kept as the text it is
        written.append({"name": fn["name"], "arguments": args})
    call_text = json.dumps(written[0] if len(written) == 1 else written, ensure_ascii=False)
    return f"{text}\n{call_text}" if text.strip() else call_text


def messages_to_format(msgs: list[dict[str, Any]], fmt: str, extras: dict | None = None,
                       where: str = "record") -> dict:
    """Build a record of format ``fmt`` from chat messages, keeping ``extras`` fields after them
    and, in ShareGPT and messages, a message's keys other than role and content on its turn.

    Raises:
        DataError: the conversation can't be held by ``fmt`` (e.g. a tool turn in Alpaca).
    """
    extras = dict(extras or {})
    if fmt == RecordFormat.MESSAGES:
        return {"messages": [dict(m) for m in msgs], **extras}
    if fmt == RecordFormat.SHAREGPT:
        return {"conversations": [{"from": ROLE_TO_SHAREGPT[m["role"]], "value": m["content"],
                                   **{k: v for k, v in m.items() if k not in ("role", "content")}}
                                  for m in msgs], **extras}
    if fmt != RecordFormat.ALPACA:
        raise DataError(f"unknown record format {fmt!r}; allowed: " + ", ".join(RecordFormat.FORMATS))
    rest = list(msgs)
    system = rest.pop(0)["content"] if rest and rest[0]["role"] == "system" else None
    roles = [m["role"] for m in rest]
    if any(r not in ("user", "assistant") for r in roles):
        raise DataError(f"{where}: the conversation has a {sorted(set(roles) - {'user', 'assistant'})} "
                        "turn, which Alpaca can't hold", hint="Export to sharegpt or messages instead.")
    pairs = [rest[i:i + 2] for i in range(0, len(rest), 2)]
    if any(len(p) == 2 and (p[0]["role"], p[1]["role"]) != ("user", "assistant") for p in pairs) or (
            pairs and len(pairs[-1]) == 1 and pairs[-1][0]["role"] != "user"):
        raise DataError(f"{where}: turns don't alternate user/assistant, so they can't be "
                        "Alpaca history pairs", hint="Export to sharegpt or messages instead.")
    out: dict[str, Any] = {}
    last = pairs.pop() if pairs else []
    out["instruction"] = last[0]["content"] if last else ""
    out["input"] = ""
    out["output"] = last[1]["content"] if len(last) == 2 else ""
    if system is not None:
        out["system"] = system
    if pairs:
        out["history"] = [[p[0]["content"], p[1]["content"]] for p in pairs]
    out.update(extras)
    return out


def format_fields(fmt: str) -> tuple[str, ...]:
    """The standard top-level fields of a record format (everything else is an extra)."""
    if fmt == RecordFormat.ALPACA:
        return ALPACA_FIELDS
    return (CONVERSATION_KEY[fmt], "system")


def opens_with_system(turns: Any) -> bool:
    """Whether a conversation's first turn is its system prompt (``{"from": "system"}`` or
    ``{"role": "system"}``)."""
    first = turns[0] if isinstance(turns, list) and turns else None
    tag = first.get("role", first.get("from")) if isinstance(first, dict) else None
    return isinstance(tag, str) and SHAREGPT_ROLES.get(tag) == "system"


def system_in_turns(fmt: str, records: list[Record], sample: int = 1000) -> bool:
    """Whether a file of conversations holds a system prompt as a first ``system`` turn rather than
    as a top-level ``system`` key, so that a prompt added to a record is held as the file holds them.

    The first record of the first ``sample`` that has a system prompt decides. In a file where none
    has one, the format's usual place: a first turn for OpenAI messages; the ``system`` key for
    ShareGPT, as LLaMA-Factory's ShareGPT has it (its ``system`` column).
    """
    key = CONVERSATION_KEY.get(fmt)
    for r in records[:sample]:
        if r.broken:
            continue
        data = r.peek()
        if isinstance(data.get("system"), str):
            return False
        if opens_with_system(data.get(key)):
            return True
    return fmt == RecordFormat.MESSAGES


@dataclass
class DatasetFile:
    """A dataset file in memory: its records and what is needed to write it back the same way.

    Attributes:
        path: The file, or None for a dataset not yet saved.
        format: Record format: alpaca, sharegpt or messages.
        container: File kind: json, jsonl, csv or parquet.
        records: The records in file order, broken ones included.
        detected: What was detected, in words: "Alpaca JSONL, 320 records, UTF-8 with BOM, CRLF".
        bom: The file started with a UTF-8 byte order mark (kept on save).
        newline: The file's line ending, ``"\\n"``, ``"\\r\\n"`` or, in JSON Lines, ``"\\r"`` (a lone CR, as classic
            Mac OS wrote it); used for new lines on save.
        errors: File-level and per-record read problems as :class:`DataError` (path, line, column).
        file_errors: Those of ``errors`` outside any record, in a file whose records all loaded but that
            is not valid as a whole: a JSON array's comma after the last record, its ']' missing.
        mapping: Column/role renames given at load, e.g. ``{"prompt": "instruction"}``.
    """

    path: Any = None
    format: str = RecordFormat.ALPACA
    container: str = RecordFormat.JSONL
    records: list[Record] = field(default_factory=list)
    detected: str = ""
    bom: bool = False
    newline: str = "\n"
    errors: list[DataError] = field(default_factory=list)
    file_errors: list[DataError] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    # How the file was written (JSON separators, ensure_ascii, indent; CSV header), so that
    # edited records are serialised in the file's own style.
    style: dict[str, Any] = field(default_factory=dict)
    # Text before the first record (JSONL leading blank lines, CSV header, "[" of a JSON array),
    # after the last one, and between records (blank lines, JSON separators), keyed by the
    # id() of the record they follow; ``_loaded`` keeps those records alive.
    _preamble: Any = field(default=None, repr=False)
    _trailer: Any = field(default=None, repr=False)
    _gaps: dict = field(default_factory=dict, repr=False)
    # The records as loaded; a save compares against it to know whether anything moved.
    _loaded: tuple = field(default=(), repr=False)
    _schema: Schema | None = field(default=None, repr=False)

    def succeed(self, old: Record, new: Record) -> None:
        """``new`` takes ``old``'s place (an edit): the text that followed ``old`` in the file, such
        as a blank line in a JSONL file, follows ``new``, so a save changes only the edited record."""
        gap = self._gaps.get(id(old))
        if gap is not None:
            self._gaps[id(new)] = gap  # old's stays: an undo puts old back

    @property
    def schema(self) -> Schema:
        """The format and mapping shared by this file's records."""
        if self._schema is None or self._schema.format != self.format or self._schema.mapping != self.mapping:
            self._schema = Schema(self.format, dict(self.mapping))
            for r in self.records:
                r.schema = self._schema
        return self._schema

    def new_record(self, data: dict | None = None) -> Record:
        """A new record for this file (not yet inserted), empty fields of the format when no data."""
        if data is None:
            own = self.schema.own_names()
            if self.format == RecordFormat.ALPACA:  # input only where the file has one, or no names of its own
                data = {own.get(k, k): "" for k in ("instruction", "input", "output")
                        if k != "input" or not own or k in own}
            else:
                data = {own.get(CONVERSATION_KEY[self.format], CONVERSATION_KEY[self.format]): []}
        return Record(data, None, schema=self.schema)

    def broken_indices(self) -> list[int]:
        """Indices of the broken records."""
        return [i for i, r in enumerate(self.records) if r.broken]

    @property
    def modified(self) -> bool:
        """Whether a save would write something different from what was read."""
        from engine.data.formats import record_changed

        if len(self.records) != len(self._loaded) or any(
                a is not b for a, b in zip(self.records, self._loaded, strict=True)):
            return True
        return any(record_changed(r, self) for r in self.records)

    def iter_messages(self):
        """Yield ``(index, record, messages)`` for each good record (for the trainer and preview).

        Raises:
            DataError: a record has the wrong field types (with its line).
        """
        schema = self.schema
        for i, r in enumerate(self.records):
            if not r.broken:
                yield i, r, r.messages(schema)

    def check_trainable(self) -> None:
        """Refuse to train on a file with broken records or no records.

        Raises:
            DataError: the first problem, naming the file, line and column.
        """
        path = str(self.path) if self.path else None
        for r in self.records:
            if r.broken:
                raise DataError(f"record is not valid JSON: {r.error}", path=path, line=r.line,
                                column=r.column, hint="Fix or delete it in the dataset editor.")
        if not any(not r.broken for r in self.records):
            raise DataError("the dataset has no records", path=path)
