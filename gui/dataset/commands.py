"""Undo commands for every edit in the dataset editor.

Each command holds record *objects*, not copies: redo puts the new objects in, undo puts
the originals back (see :mod:`gui.dataset.table_model` for why records are swapped rather
than mutated). Positions are record indices in ``ds.records``; because every structural
change goes through this stack, the indices a command saw are valid again when it is undone.
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from engine.data.records import Record

# Typing in the form commits a field every few hundred ms; consecutive commits to the same
# field of the same record merge into one undo step, like a text editor's typing burst.
_MERGE_ID = 0x5E7


class ReplaceRecordsCommand(QUndoCommand):
    """Put new record objects at given indices (cell edit, form edit, fix, replace-all)."""

    def __init__(self, model, changes: list[tuple[int, Record]], text: str, *, merge_key=None):
        super().__init__(text)
        self._model = model
        self._changes = changes
        self._old: list[Record] | None = None
        self._merge_key = merge_key

    def redo(self) -> None:
        old = self._model.replace_records(self._changes)
        if self._old is None:
            self._old = old

    def undo(self) -> None:
        self._model.replace_records([(i, r) for (i, _), r in zip(self._changes, self._old, strict=True)])

    def id(self) -> int:
        return _MERGE_ID if self._merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, ReplaceRecordsCommand) or other._merge_key != self._merge_key:
            return False
        # Keep our originals, take the newer records.
        self._changes = other._changes
        return True

    def seal(self) -> None:
        """Stop later commits from merging into this step (the user moved on)."""
        self._merge_key = None

    def touched(self, undone: bool) -> list[int]:
        """The record indices this step changed, as they are after it was undone or redone."""
        return [i for i, _ in self._changes]


class InsertRecordsCommand(QUndoCommand):
    """Insert records at an index (add, duplicate, paste)."""

    def __init__(self, model, index: int, records: list[Record], text: str):
        super().__init__(text)
        self._model, self._index, self._records = model, index, records

    def redo(self) -> None:
        self._model.insert_records(self._index, self._records)

    def undo(self) -> None:
        self._model.remove_records(list(range(self._index, self._index + len(self._records))))

    def touched(self, undone: bool) -> list[int]:
        """The inserted records after a redo; after an undo, the place they were taken from."""
        return [self._index] if undone else list(range(self._index, self._index + len(self._records)))

    @property
    def index(self) -> int:
        return self._index


class RemoveRecordsCommand(QUndoCommand):
    """Delete records (any selection, contiguous or not)."""

    def __init__(self, model, indices: list[int], text: str):
        super().__init__(text)
        self._model = model
        self._indices = sorted(set(indices))
        self._removed: list[tuple[int, Record]] = []

    def redo(self) -> None:
        self._removed = self._model.remove_records(self._indices)

    def undo(self) -> None:
        self._model.restore_records(self._removed)

    def touched(self, undone: bool) -> list[int]:
        """The records put back after an undo; after a redo, the place the first was taken from."""
        return list(self._indices) if undone else self._indices[:1]


class MoveRecordsCommand(QUndoCommand):
    """Move selected records one place up (-1) or down (+1), keeping their relative order.

    Like a code editor's "move line": records at the edge, or blocked by another selected
    record that can't move, stay where they are.
    """

    def __init__(self, model, indices: list[int], delta: int, text: str):
        super().__init__(text)
        self._model = model
        self._delta = -1 if delta < 0 else 1
        self._moves: list[tuple[int, int]] = []
        n = model.rowCount()
        chosen = sorted(set(indices), reverse=self._delta > 0)
        occupied = set(chosen)
        for i in chosen:
            j = i + self._delta
            if 0 <= j < n and j not in occupied:
                self._moves.append((i, j))
                occupied.discard(i)
                occupied.add(j)
        self.setObsolete(not self._moves)

    @property
    def new_indices(self) -> list[int]:
        return [j for _, j in self._moves]

    def redo(self) -> None:
        for i, j in self._moves:
            self._model.move_record(i, j)

    def undo(self) -> None:
        for i, j in reversed(self._moves):
            self._model.move_record(j, i)

    def touched(self, undone: bool) -> list[int]:
        """Where the moved records are after the undo or redo."""
        return sorted(i for i, _ in self._moves) if undone else sorted(self.new_indices)
