"""The adapter library as a Qt list: a thin model over ``engine.adapters`` cards, drawn as cards.

The model adapts a list of :class:`~engine.adapters.AdapterCard` (plus, per card, whether
it fits the chosen base) to ``QAbstractListModel``; the check state says which adapters
go to the playground. The delegate paints each row as a small card.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QEvent, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionButton,
    QStyleOptionViewItem,
)

from engine.adapters import AdapterCard, BaseMatch, base_label, format_size
from gui.scheme import blend, ink, ink_color, is_dark

CardRole = Qt.ItemDataRole.UserRole + 1
MatchRole = Qt.ItemDataRole.UserRole + 2
PathRole = Qt.ItemDataRole.UserRole + 3

OK_COLOR = QColor("#1e7b34")
BAD_COLOR = QColor("#b3261e")
UNKNOWN_COLOR = QColor("#8a6d00")

# How people write the methods' names. A run's card has the run config's method (lower case); an
# added folder's has its PEFT type, lower-cased ("prompt_tuning"), which must read the same.
METHOD_LABELS = {"lora": "LoRA", "qlora": "QLoRA", "ia3": "IA3", "prefix": "Prefix tuning",
                 "prompt": "Prompt tuning", "adapter": "Bottleneck adapter", "full": "Full", "freeze": "Freeze",
                 "prefix_tuning": "Prefix tuning", "prompt_tuning": "Prompt tuning", "p_tuning": "P-tuning",
                 "adalora": "AdaLoRA", "loha": "LoHa", "lokr": "LoKr", "oft": "OFT", "boft": "BOFT", "vera": "VeRA"}

PROBLEM_LINES = 2
"""Lines a card gives to why it can't load or doesn't fit: its last words say what to do."""


def method_label(method: str | None, *, in_sentence: bool = False) -> str:
    """A card's method as people write it ("Prompt tuning" for ``prompt`` and ``prompt_tuning`` alike).

    Args:
        method: The card's method: the run's, else the adapter's PEFT type in lower case.
        in_sentence: For the middle of a sentence: "prompt tuning"; "LoRA" and "IA3" stay as they are.
    """
    label = METHOD_LABELS.get((method or "").lower(), method or "?")
    return label[0].lower() + label[1:] if in_sentence and label[1:2].islower() else label


def wrap_text(text: str, fm: QFontMetrics, width: int, most: int) -> list[str]:
    """``text`` in at most ``most`` lines no wider than ``width``, broken between words; the last
    line ends in "…" when the text is longer (the card's tooltip has it whole)."""
    words = text.split()
    lines: list[str] = []
    line = ""
    for i, word in enumerate(words):
        trial = f"{line} {word}" if line else word
        if not line or fm.horizontalAdvance(trial) <= width:
            line = trial
            continue
        lines.append(line)
        if len(lines) == most - 1:
            line = " ".join(words[i:])
            break
        line = word
    lines.append(line)
    return [fm.elidedText(ln, Qt.TextElideMode.ElideRight, width) for ln in lines]


# Llama-style projection order, so "q k v o gate up down" reads like the architecture.
_TARGET_ORDER = ("q", "k", "v", "o", "gate", "up", "down", "lm_head", "embed_tokens")


def _short_targets(targets: list[str] | str | None) -> str:
    """``['q_proj', 'model.layers.0.mlp.down_proj']`` -> ``q, down``; strings (``all-linear``) as they are."""
    if not targets:
        return ""
    if isinstance(targets, str):
        return targets
    short = []
    for t in targets:
        name = t.rsplit(".", 1)[-1].removesuffix("_proj")
        if name not in short:
            short.append(name)
    short.sort(key=lambda n: (_TARGET_ORDER.index(n) if n in _TARGET_ORDER else len(_TARGET_ORDER), n))
    return ", ".join(short)


def card_summary(card: AdapterCard) -> list[str]:
    """The three detail lines under a card's name."""
    method = method_label(card.method)
    rank = f" r{card.rank}" + (f" α{card.alpha:g}" if card.alpha else "") if card.rank else ""
    if card.extra.get("init"):  # a PiSSA/OLoRA run's final/: rank 2r as saved, r as trained
        rank += f" ({card.extra['init']} r{card.extra.get('trained_rank')})"
    targets = _short_targets(card.targets)
    line1 = f"{method}{rank} on {base_label(card.base_model)}" + (f" · {targets}" if targets else "")
    if not card.method and not card.base_model:  # nothing could be read (the folder is gone): "? on ?" says nothing
        line1 = card.path
    data = []
    if card.dataset_records is not None:
        data.append(f"{card.dataset_records} records")
    if card.dataset_hash:
        h = card.dataset_hash.split(":")[-1]
        data.append(f"#{h[:8]}")
    if card.final_loss is not None:
        data.append(f"loss {card.final_loss:.3f}")
    if card.best_eval_loss is not None:
        data.append(f"eval {card.best_eval_loss:.3f}")
    line2 = " · ".join(data) or "no run record (added folder)"
    # A promoted run's weights are an earlier step's: said on the short third line, where a card
    # this narrow still has room ("run (step 40)").
    source = card.source
    if card.weights_from and source:
        source += f" (step {card.weights_from.removeprefix('checkpoint-')})"
    ended = card.status if card.status and card.status != "completed" else ""  # a stopped run's final/ too
    size = format_size(card.size_bytes) if card.size_bytes or card.loadable else ""  # not "0 B" for a gone folder
    line3 = " · ".join(x for x in (card.date, size, source, ended) if x)
    return [line1, line2, line3]


class AdapterLibraryModel(QAbstractListModel):
    """Adapter cards with a check state (selected for the playground) and a base-fit verdict."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.cards: list[AdapterCard] = []
        self.matches: dict[str, BaseMatch] = {}
        self.checked: set[str] = set()

    # ---- Public API
    def set_cards(self, cards: list[AdapterCard]) -> None:
        """Replace the list, keeping the check state of paths still present and loadable.

        A ticked card that can no longer load (its folder deleted or moved since) is unticked: its
        check box is not checkable any more, so the user could not untick it, and every Generate,
        Compare and Merge would fail on it."""
        self.beginResetModel()
        self.cards = list(cards)
        self.checked &= {c.path for c in self.cards if c.loadable}
        paths = {c.path for c in self.cards}
        self.matches = {p: m for p, m in self.matches.items() if p in paths}
        self.endResetModel()

    def set_matches(self, matches: dict[str, BaseMatch]) -> None:
        """Set each card's fit with the chosen base; refused cards are unchecked."""
        self.matches = dict(matches)
        self.checked = {p for p in self.checked if self.matches.get(p) is None or self.matches[p].ok is not False}
        if self.cards:
            self.dataChanged.emit(self.index(0), self.index(len(self.cards) - 1))

    def checked_cards(self) -> list[AdapterCard]:
        return [c for c in self.cards if c.path in self.checked]

    def row_of(self, path: str | Path) -> int:
        target = str(Path(path).resolve())
        return next((i for i, c in enumerate(self.cards) if c.path == target), -1)

    def set_checked(self, path: str, checked: bool) -> bool:
        row = self.row_of(path)
        if row < 0:
            return False
        return self.setData(self.index(row), Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked,
                            Qt.ItemDataRole.CheckStateRole)

    # ---- QAbstractListModel
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.cards)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.cards):
            return None
        card = self.cards[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return card.name
        if role == Qt.ItemDataRole.CheckStateRole:
            return Qt.CheckState.Checked if card.path in self.checked else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"<b>{card.name}</b>", card.path, *card_summary(card)]
            if card.targets:
                lines.append(f"targets: {card.targets_text}")
            if card.extra.get("prompt_format"):
                lines.append(f"prompt format: {html.escape(card.extra['prompt_format'])}")
            if card.extra.get("added_tokens"):
                lines.append("added tokens: " + html.escape(", ".join(card.extra["added_tokens"])))
            if card.base_model:
                lines.append(f"trained on: {card.base_model}")
            if card.weights_from:
                lines.append(f"weights: {card.weights_from}, made the run's result after training (runs promote)")
            match = self.matches.get(card.path)
            if match is not None:
                lines.append(match.message)
            if card.problem:
                lines.append(f"<span style='color:{ink('#b3261e')}'>{card.problem}</span>")
            return "<br>".join(lines)
        if role == CardRole:
            return card
        if role == MatchRole:
            return self.matches.get(card.path)
        if role == PathRole:
            return card.path
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        card = self.cards[index.row()]
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        match = self.matches.get(card.path)
        if card.loadable and (match is None or match.ok is not False):
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: Any,  # noqa: N802
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.CheckStateRole or not index.isValid():
            return False
        if not self.flags(index) & Qt.ItemFlag.ItemIsUserCheckable:
            return False
        card = self.cards[index.row()]
        state = Qt.CheckState(value) if not isinstance(value, Qt.CheckState) else value
        if state == Qt.CheckState.Checked:
            self.checked.add(card.path)
        else:
            self.checked.discard(card.path)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.CheckStateRole])
        return True


class AdapterCardDelegate(QStyledItemDelegate):
    """Paints a library row as a card: check box, name, method and base, data and losses, fit."""

    HEIGHT = 86  # at the default font; a larger one gets the height its lines need (text_height)
    PAD = 8

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        card: AdapterCard | None = index.data(CardRole)
        extra = 0
        if card is not None and self.problem(card, index.data(MatchRole)):
            extra = (PROBLEM_LINES - 1) * (QFontMetrics(self._small_font(option.font)).height() + 1)
        # Under the name, three lines of the small font: at 13 pt the third was drawn past the
        # card's bottom, over the next card.
        needed = 2 * (3 + self.PAD) + self.text_height(option.font, 3) + extra
        return QSize(option.rect.width() or 300, max(self.HEIGHT + extra, needed))

    def text_height(self, font: QFont, lines: int) -> int:
        """The height :meth:`paint` draws text in: the name, then ``lines`` detail lines."""
        return (QFontMetrics(self._name_font(font)).height() + 3
                + lines * (QFontMetrics(self._small_font(font)).height() + 1))

    # ---- Public API
    @staticmethod
    def problem(card: AdapterCard, match: BaseMatch | None) -> str:
        """Why the card can't be used with the base ("" when it can): shown in red, on two lines."""
        if card.problem:
            return card.problem
        if match is not None and match.ok is False:
            return "other base: " + (", ".join(match.differences) or match.message)
        return ""

    def detail_lines(self, card: AdapterCard, match: BaseMatch | None, font: QFont,
                     width: int) -> list[tuple[str, bool]]:
        """The lines under the card's name, ``width`` px wide: (text, is the problem)."""
        first, data, source = card_summary(card)
        problem = self.problem(card, match)
        if not problem:
            return [(first, False), (data, False), (source, False)]
        wrapped = wrap_text(problem, QFontMetrics(self._small_font(font)), width, PROBLEM_LINES)
        return [(first, False), *((line, True) for line in wrapped), (source, False)]

    def text_span(self, row: QRect) -> tuple[int, int]:
        """The left and right x of a card's text in a row of the list (``option.rect``)."""
        rect = row.adjusted(4, 3, -4, -3)
        return self._check_rect(rect).right() + 10, rect.right() - self.PAD

    @staticmethod
    def _name_font(font: QFont) -> QFont:
        name = QFont(font)
        name.setBold(True)
        name.setPointSizeF(font.pointSizeF() + 1)
        return name

    @staticmethod
    def _small_font(font: QFont) -> QFont:
        small = QFont(font)
        small.setPointSizeF(max(font.pointSizeF() - 1, 7))
        return small

    def _check_rect(self, rect: QRect) -> QRect:
        return QRect(rect.left() + self.PAD + 2, rect.top() + self.PAD + 4, 16, 16)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        card: AdapterCard = index.data(CardRole)
        match: BaseMatch | None = index.data(MatchRole)
        # The application palette: the view's style sheet makes its own Base transparent.
        pal = QApplication.palette()
        rect = option.rect.adjusted(4, 3, -4, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        highlight, base = pal.color(QPalette.ColorRole.Highlight), pal.color(QPalette.ColorRole.Base)
        # A pale highlight under a light palette; under a dark one the highlight's hue, dark, that the
        # palette's light text reads on (its lighter() was near-white behind white text).
        selected_bg = blend(base, highlight, 0.35) if is_dark(pal) else highlight.lighter(185)
        bg = selected_bg if selected else base
        border = pal.color(QPalette.ColorRole.Highlight) if selected else pal.color(QPalette.ColorRole.Mid)
        painter.setPen(border)
        painter.setBrush(bg)
        painter.drawRoundedRect(rect, 6, 6)

        checkable = bool(index.flags() & Qt.ItemFlag.ItemIsUserCheckable)
        box = QStyleOptionButton()
        box.rect = self._check_rect(rect)
        box.state = QStyle.StateFlag.State_Enabled if checkable else QStyle.StateFlag.State_None
        box.state |= (QStyle.StateFlag.State_On if index.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
                      else QStyle.StateFlag.State_Off)
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_IndicatorCheckBox, box, painter, option.widget)

        left, right = self.text_span(option.rect)
        text_color = pal.color(QPalette.ColorRole.Text)
        muted = pal.color(QPalette.ColorRole.PlaceholderText)
        name_font = self._name_font(option.font)
        painter.setFont(name_font)
        painter.setPen(text_color if card.loadable else muted)
        fm = QFontMetrics(name_font)
        top = rect.top() + self.PAD
        verdict, color = self._verdict(card, match)
        small = self._small_font(option.font)
        sfm = QFontMetrics(small)
        verdict_w = sfm.horizontalAdvance(verdict) + 4 if verdict else 0
        name = fm.elidedText(card.name, Qt.TextElideMode.ElideRight, max(right - left - verdict_w - 8, 40))
        painter.drawText(QRect(left, top, right - left, fm.height()), Qt.AlignmentFlag.AlignLeft, name)
        if verdict:
            painter.setFont(small)
            painter.setPen(ink_color(color, pal, on=bg))
            painter.drawText(QRect(right - verdict_w, top + 2, verdict_w, sfm.height()), Qt.AlignmentFlag.AlignRight,
                             verdict)
        painter.setFont(small)
        y = top + fm.height() + 3
        # Why a card can't be used wraps onto a second line: cut to one, "the folder no longer
        # exists (deleted or moved): select…" lost the "press Remove" that says what to do.
        for i, (line, problem_line) in enumerate(self.detail_lines(card, match, option.font, right - left)):
            painter.setPen(ink_color(BAD_COLOR, pal, on=bg) if problem_line else (text_color if i == 0 else muted))
            painter.drawText(QRect(left, y, right - left, sfm.height()), Qt.AlignmentFlag.AlignLeft,
                             sfm.elidedText(line, Qt.TextElideMode.ElideRight, right - left))
            y += sfm.height() + 1
        painter.restore()

    @staticmethod
    def _verdict(card: AdapterCard, match: BaseMatch | None) -> tuple[str, QColor]:
        if not card.loadable:
            return "can't load", BAD_COLOR
        if match is None:
            return "", OK_COLOR
        if match.ok is True:
            return "✓ fits base", OK_COLOR
        if match.ok is False:
            return "✗ other base", BAD_COLOR
        if match.base_missing:  # "checked on load" would promise a load that can't happen
            return "✗ base can't load", BAD_COLOR
        return "? checked on load", UNKNOWN_COLOR

    def editorEvent(self, event: QEvent, model: Any, option: QStyleOptionViewItem,  # noqa: N802
                    index: QModelIndex) -> bool:
        # The check box is painted by hand, so clicks on it (and Space) toggle it here.
        if not index.flags() & Qt.ItemFlag.ItemIsUserCheckable:
            return False
        toggle = False
        if event.type() in (QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick):
            hit = self._check_rect(option.rect.adjusted(4, 3, -4, -3)).adjusted(-4, -4, 4, 4)
            on_box = hit.contains(event.position().toPoint())
            # A click on the box toggles; a double-click anywhere else on the card does too.
            toggle = on_box if event.type() == QEvent.Type.MouseButtonRelease else not on_box
        elif event.type() == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Space, Qt.Key.Key_Select):
            toggle = True
        if not toggle:
            return False
        checked = index.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
        return model.setData(index, Qt.CheckState.Unchecked if checked else Qt.CheckState.Checked,
                             Qt.ItemDataRole.CheckStateRole)
