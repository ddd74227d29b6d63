"""What the keyboard meets in a window, as Qt decides it: the Tab chain, the shortcuts live for a
focus widget (two on one key in one context: Qt emits ``activatedAmbiguously`` and does nothing),
and the ``&`` mnemonics.

The shortcut rules follow Qt's own matcher (``correctWidgetContext`` in qshortcut.cpp and
qaction_widgets.cpp): a shortcut counts when its widget is visible and enabled and the focus is
on it (WidgetShortcut), inside it (WidgetWithChildrenShortcut) or in its window (WindowShortcut).
"""

from __future__ import annotations

from collections import defaultdict

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QShortcut
from PySide6.QtWidgets import QAbstractButton, QApplication, QGroupBox, QLabel, QMenu, QTabWidget, QWidget

_C = Qt.ShortcutContext
_CHILD_TYPES = (Qt.WindowType.Widget, Qt.WindowType.Popup, Qt.WindowType.SubWindow)


def describe(w: QWidget | None) -> str:
    if w is None:
        return "None"
    text = ""
    for attr in ("text", "placeholderText", "currentText", "title", "accessibleName"):
        f = getattr(w, attr, None)
        if callable(f) and (value := f()):
            text = str(value)[:30]
            break
    return f"{type(w).__name__}({w.objectName() or text!r})"


def tab_chain(start: QWidget, limit: int = 200) -> list[QWidget]:
    """The widgets Tab visits from ``start`` (given the focus first) until it comes back to it
    (or stops moving, or ``limit`` presses): each press is a real key click."""
    from PySide6.QtTest import QTest

    start.setFocus(Qt.FocusReason.TabFocusReason)
    QApplication.processEvents()
    first = QApplication.focusWidget()
    chain = [first]
    for _ in range(limit):
        QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        QApplication.processEvents()
        now = QApplication.focusWidget()
        if now is first or now is chain[-1]:
            break
        chain.append(now)
    return chain


def tab_stops(scope: QWidget) -> list[QWidget]:
    """The visible, enabled widgets in ``scope`` that Tab should reach."""
    return [w for w in scope.findChildren(QWidget)
            if w.isVisible() and w.isEnabled() and w.focusProxy() is None
            and (w.focusPolicy() & Qt.FocusPolicy.TabFocus) == Qt.FocusPolicy.TabFocus]


def _in_context(context: Qt.ShortcutContext, w: QWidget, focus: QWidget, window: QWidget) -> bool:
    if not (w.isVisible() and w.isEnabled()):
        return False
    if context == _C.ApplicationShortcut:
        return True
    if context == _C.WidgetShortcut:
        return w is focus
    if context == _C.WidgetWithChildrenShortcut:
        up = focus
        while up is not None and up is not w and up.windowType() in _CHILD_TYPES:
            up = up.parentWidget()
        return up is w
    return w.window() is window


def _action_widgets(action: QAction) -> list[QWidget]:
    out: list[QWidget] = []
    for o in action.associatedObjects():
        if isinstance(o, QMenu) and not o.isVisible():
            out += _action_widgets(o.menuAction())  # a closed menu's keys live where its menu button is
        elif isinstance(o, QWidget):
            out.append(o)
    return out


def live_shortcuts(window: QWidget, focus: QWidget) -> list[tuple[str, str, object]]:
    """(key, label, action or shortcut) for each key that would fire with ``focus`` holding the keyboard."""
    out = []
    for action in window.findChildren(QAction):
        if action.isEnabled() and action.isVisible() and action.shortcuts() and any(
                _in_context(action.shortcutContext(), w, focus, window) for w in _action_widgets(action)):
            out += [(k.toString(), action.text(), action) for k in action.shortcuts()]
    for sc in window.findChildren(QShortcut):
        if sc.isEnabled() and isinstance(sc.parent(), QWidget) and _in_context(sc.context(), sc.parent(), focus, window):
            out += [(k.toString(), sc.whatsThis() or describe(sc.parent()), sc) for k in sc.keys()]
    return out


def ambiguous_shortcuts(window: QWidget) -> dict[str, list[str]]:
    """For each focusable widget of ``window``: keys bound by two actions or shortcuts that would both
    be live there, as ``"key with focus on W" -> [labels]``."""
    found: dict[str, list[str]] = {}
    for focus in [window, *tab_stops(window)]:
        by_key: dict[str, dict[int, str]] = defaultdict(dict)
        for key, label, owner in live_shortcuts(window, focus):
            by_key[key][id(owner)] = label
        for key, owners in by_key.items():
            if len(owners) > 1:
                found.setdefault(f"{key} with the focus on {describe(focus)}", sorted(owners.values()))
    return found


def duplicate_mnemonics(window: QWidget) -> dict[str, list[str]]:
    """``&`` letters used twice among the visible buttons, buddied labels, group boxes and tabs."""
    texts = []
    for w in window.findChildren(QWidget):
        if not w.isVisible():
            continue
        if isinstance(w, QAbstractButton) or (isinstance(w, QLabel) and w.buddy() is not None):
            texts.append(w.text())
        elif isinstance(w, QGroupBox):
            texts.append(w.title())
        elif isinstance(w, QTabWidget):
            texts += [w.tabText(i) for i in range(w.count())]
    letters: dict[str, list[str]] = defaultdict(list)
    for text in texts:
        plain = text.replace("&&", "")
        if (i := plain.find("&")) >= 0 and i + 1 < len(plain):
            letters[plain[i + 1].lower()].append(text)
    return {k: v for k, v in letters.items() if len(v) > 1}


def spoken_name(w: QWidget) -> str:
    """What a screen reader says a widget is: its accessible name, or for a combo box (whose name is
    its current text on Linux, where the label comes by the "labelled by" relation) its label's text."""
    from PySide6.QtGui import QAccessible

    iface = QAccessible.queryAccessibleInterface(w)
    if iface.role() == QAccessible.Role.ComboBox:
        labels = [other.text(QAccessible.Text.Name) for other, _ in iface.relations(QAccessible.RelationFlag.Label)]
        if labels:
            return labels[0]
    return iface.text(QAccessible.Text.Name)


def spoken_description(w: QWidget) -> str:
    from PySide6.QtGui import QAccessible

    return QAccessible.queryAccessibleInterface(w).text(QAccessible.Text.Description)
