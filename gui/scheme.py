"""Light or dark: the app's colours, read from the palette so they hold under both schemes.

The GUI's colours were chosen for text on white. Under a dark palette the same hex values are dark
ink on a dark window (an error red at 2:1 contrast), and the pale tints behind banners become
glaring white boxes. Rather than keep a second table of every colour, the light value stays the one
source and the dark one is derived from it:

- ``ink(c)`` is a colour for text or a thin mark: ``c`` itself under a light palette, and under a
  dark one the same hue made lighter until it reads at the WCAG 2 contrast for text (4.5:1) on the
  palette's window and base.
- ``tint(c)`` is a pale background tint (a banner, a highlighted span): itself under a light
  palette, and under a dark one a dark shade of its hue that light text reads on.

So light mode paints exactly what it did, and dark mode keeps each colour's meaning (red is still
the error red) while staying readable. ``apply_color_scheme`` turns the user's Appearance choice
into Qt's colour-scheme request, with a palette of our own where the platform can't honour it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette

TEXT_CONTRAST = 4.5  # WCAG 2.1 SC 1.4.3: normal-size text
MARK_CONTRAST = 3.0  # WCAG 2.1 SC 1.4.11: graphical objects (plot lines, marks)

SCHEMES = ("system", "light", "dark")
SCHEME_KEY = "appearance/color_scheme"

Role = QPalette.ColorRole


def app_palette() -> QPalette:
    app = QGuiApplication.instance()
    return app.palette() if app is not None else QPalette()


def palette_signature() -> tuple[int, ...]:
    """What the application palette paints with, to tell a real change from an event that only
    says one might have happened (a reparented widget gets a PaletteChange too)."""
    palette = app_palette()
    return tuple(palette.color(role).rgba() for role in (Role.Window, Role.WindowText, Role.Base, Role.Text,
                                                            Role.Highlight, Role.Mid, Role.PlaceholderText))


def is_dark(palette: QPalette | None = None) -> bool:
    """Whether ``palette`` (the application's by default) has a dark window: judged by what it
    paints, not by the requested scheme, so a dark system theme counts even where Qt reports
    the scheme as unknown."""
    window = (palette or app_palette()).color(Role.Window)
    return window.lightnessF() < 0.5


def luminance(color: QColor) -> float:
    """Relative luminance as WCAG 2.1 defines it (sRGB, gamma-expanded)."""
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast(a: QColor, b: QColor) -> float:
    """The WCAG contrast ratio of two colours, 1 to 21."""
    la, lb = sorted((luminance(QColor(a)), luminance(QColor(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _lifted(color: QColor, backgrounds: list[QColor], target: float) -> QColor:
    """``color``'s hue, raised in lightness until it reaches ``target`` on every background."""
    h, s, lightness, a = color.getHslF()
    h = max(h, 0.0)  # -1 for greys
    c = QColor(color)
    while min(contrast(c, bg) for bg in backgrounds) < target and lightness < 1.0:
        lightness = min(1.0, lightness + 0.02)
        c = QColor.fromHslF(h, s, lightness, a)
    return c


def ink_color(color: str | QColor, palette: QPalette | None = None, *, on: QColor | None = None,
              target: float = TEXT_CONTRAST) -> QColor:
    """``color`` for text (or, with ``target=MARK_CONTRAST``, a line or mark) on this palette.

    Args:
        color: the colour as chosen for a light palette.
        palette: the palette it is painted with; the application's by default.
        on: the background it sits on, when that is not the palette's window or base (a tint).
        target: the contrast ratio it must reach under a dark palette.

    Returns:
        ``color`` unchanged under a light palette; under a dark one, the same hue lightened
        until it reaches ``target`` on the background(s).
    """
    color = QColor(color)
    palette = palette or app_palette()
    if not is_dark(palette):
        return color
    backgrounds = [QColor(on)] if on is not None else [palette.color(Role.Window), palette.color(Role.Base)]
    return _lifted(color, backgrounds, target)


def ink(color: str | QColor, palette: QPalette | None = None, *, on: QColor | None = None,
        target: float = TEXT_CONTRAST) -> str:
    """``ink_color`` as a ``#rrggbb`` string, for style sheets and rich text."""
    c = ink_color(color, palette, on=on, target=target)
    return c.name() if c.alpha() == 255 else c.name(QColor.NameFormat.HexArgb)


def tint_color(color: str | QColor, palette: QPalette | None = None) -> QColor:
    """A pale background tint (chosen for a light palette) as it should sit on this palette:
    unchanged when light; when dark, a dark shade of the same hue, a step off the window."""
    color = QColor(color)
    palette = palette or app_palette()
    if not is_dark(palette):
        return color
    h, s, _, a = color.getHslF()
    window = palette.color(Role.Window).lightnessF()
    return QColor.fromHslF(max(h, 0.0), min(s, 0.4), min(1.0, window + 0.1), a)


def tint(color: str | QColor, palette: QPalette | None = None) -> str:
    """``tint_color`` as a ``#rrggbb`` string."""
    c = tint_color(color, palette)
    return c.name() if c.alpha() == 255 else c.name(QColor.NameFormat.HexArgb)


def hint_style() -> str:
    """A style sheet for a hint's text: the grey it always had under a light palette
    (``#666``); under a dark one, the palette's placeholder grey."""
    return f"color: {ink('#666666')};"


# ---- Following a scheme change at run time
class _PaletteHub(QObject):
    """Tells every watcher once the application's palette has changed, and first gives each widget
    with a style sheet its sheet again: a sheet's colours (``palette(window)``, the ones
    ``keep_styled`` makes) are resolved when it is applied, and Qt does not redo that when the
    application palette changes. It watches the windows it is given (``follow_palette``): a window
    gets ApplicationPaletteChange; an application-wide event filter would run Python for every
    event of the app."""

    def __init__(self, app: QObject):
        super().__init__(app)
        self._seen = palette_signature()
        self._pending = False
        self.styled: dict[int, tuple[QObject, Callable[[], str]]] = {}  # keep_styled's widgets

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange, QEvent.Type.ThemeChange):
            self.check()
        return False

    def check(self) -> None:
        key = palette_signature()
        if key != self._seen and not self._pending:
            self._seen = key
            self._pending = True
            QTimer.singleShot(0, self, self._fire)

    def _fire(self) -> None:
        from PySide6.QtWidgets import QApplication

        self._pending = False
        for widget in QApplication.allWidgets():
            sheet = widget.styleSheet()
            style = self.styled.get(id(widget))
            if style is not None and style[0] is widget:
                widget.setStyleSheet(style[1]())
            elif sheet:
                widget.setStyleSheet(sheet)


def _hub() -> _PaletteHub:
    app = QGuiApplication.instance()
    hub = app.findChild(_PaletteHub)
    return hub if hub is not None else _PaletteHub(app)


def follow_palette(window: QObject) -> None:
    """Re-colour the app when ``window`` (the main window) sees the application palette change."""
    window.installEventFilter(_hub())


class FollowsPalette:
    """For a QWidget whose colours a palette doesn't reach by itself (a plot's background and
    pens, rich text with colours baked in): ``_on_palette_change()`` runs after the application
    palette changed (the user switched between light and dark while the app runs).

    From its own change event, after the event loop turned (the palette reaches the children
    after the event); only on a real change of colours (a reparented widget gets a PaletteChange
    too); and for a hidden widget when it is shown (a hidden area, a closed window on its way out).
    Put it before QWidget among the bases.
    """

    def _on_palette_change(self) -> None:
        raise NotImplementedError

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            QTimer.singleShot(0, self, self._follow_palette)

    def showEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._follow_palette()

    def _follow_palette(self) -> None:
        now = palette_signature()
        seen = getattr(self, "_painted_with", None)
        if seen is None:
            self._painted_with = now  # built with the palette of the moment
        elif now != seen and self.isVisible():
            self._painted_with = now
            self._on_palette_change()


def keep_styled(widget: QObject, style: Callable[[], str]) -> None:
    """Give ``widget`` the style sheet ``style()`` makes, now and again after each palette change
    (for a style sheet whose colours come from ``ink`` or ``tint``)."""
    widget.setStyleSheet(style())
    styled = _hub().styled
    key = id(widget)
    styled[key] = (widget, style)
    widget.destroyed.connect(lambda *_: styled.pop(key, None))


# ---- The Appearance choice
def dark_palette() -> QPalette:
    """A dark palette for where the platform gives none (Qt only switches the palette when the
    platform theme honours a colour-scheme request: Windows, macOS, GNOME and KDE do; the
    offscreen platform and bare X11 sessions don't). Greys after KDE's Breeze Dark."""
    p = QPalette()
    colors = {
        Role.Window: "#202326", Role.WindowText: "#fcfcfc", Role.Base: "#141618",
        Role.AlternateBase: "#1d1f22", Role.ToolTipBase: "#292c30", Role.ToolTipText: "#fcfcfc",
        Role.PlaceholderText: "#a1a9b1", Role.Text: "#fcfcfc", Role.Button: "#292c30",
        Role.ButtonText: "#fcfcfc", Role.BrightText: "#ffffff", Role.Light: "#40464c",
        Role.Midlight: "#33383d", Role.Mid: "#8c9399", Role.Dark: "#101214", Role.Shadow: "#000000",
        Role.Highlight: "#3daee9", Role.HighlightedText: "#fcfcfc", Role.Link: "#1d99f3",
        Role.LinkVisited: "#9b59b6", Role.Accent: "#3daee9",
    }
    for role, value in colors.items():
        p.setColor(role, QColor(value))
    disabled = QPalette.ColorGroup.Disabled
    for role in (Role.WindowText, Role.Text, Role.ButtonText):
        p.setColor(disabled, role, QColor("#6e7378"))
    p.setColor(disabled, Role.Base, QColor("#1a1c1e"))
    p.setColor(disabled, Role.Button, QColor("#25282b"))
    return p


def apply_color_scheme(scheme: str) -> None:
    """Follow the system (``"system"``) or force ``"light"`` / ``"dark"``.

    Qt's own request comes first, so the platform's dark palette is used where there is one;
    where the platform ignores the request (the scheme it reports stays otherwise), the Fusion
    style's light palette or ``dark_palette`` is set instead.

    Raises:
        ValueError: ``scheme`` is not one of ``SCHEMES``.
    """
    from PySide6.QtWidgets import QApplication

    if scheme not in SCHEMES:
        raise ValueError(f"colour scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    app = QApplication.instance()
    hints = QGuiApplication.styleHints()
    wanted = {"system": Qt.ColorScheme.Unknown, "light": Qt.ColorScheme.Light,
              "dark": Qt.ColorScheme.Dark}[scheme]
    hints.setColorScheme(wanted)
    if scheme == "system" or hints.colorScheme() == wanted:
        app.setPalette(QPalette())  # back to what the style and platform give
    else:
        app.setPalette(dark_palette() if scheme == "dark" else app.style().standardPalette())
    _hub().check()


def saved_scheme() -> str:
    """The Appearance choice kept in the settings file; "system" when none or not a known one."""
    from gui.settings import studio_settings

    value = studio_settings().value(SCHEME_KEY, "system")
    return value if value in SCHEMES else "system"


# ---- Plots
def blend(a: QColor | str, b: QColor | str, t: float) -> QColor:
    """``a`` moved ``t`` (0..1) of the way to ``b``."""
    a, b = QColor(a), QColor(b)
    return QColor.fromRgbF(a.redF() + (b.redF() - a.redF()) * t, a.greenF() + (b.greenF() - a.greenF()) * t,
                           a.blueF() + (b.blueF() - a.blueF()) * t)


class PlotColors:
    """A pyqtgraph plot's colours on a palette: its background is the palette's base (white under
    the light palette, as it always was), the light values are the ones the plots were drawn with."""

    def __init__(self, palette: QPalette | None = None):
        palette = palette or app_palette()
        self.dark = is_dark(palette)
        self.background = palette.color(Role.Base)
        on = self.background
        text = palette.color(Role.Text)
        # Titles and tick labels: the dark grey they always were; on a dark palette, the text colour
        # a little toward the background (a grey lifted to 4.5:1 read as disabled).
        self.foreground = blend(on, text, 0.8) if self.dark else QColor("#333333")
        self.axis = ink_color("#555555", palette, on=on)  # axis lines, and the axis label ("step") with them
        self.hint = ink_color("#888888", palette, on=on)  # "Start a run to see live curves"
        self.grid_major = blend(on, text, 0.16) if self.dark else QColor("#e3e3e3")
        self.grid_minor = blend(on, text, 0.08) if self.dark else QColor("#f1f1f1")

    def line(self, color: str | QColor) -> QColor:
        """A curve's colour: as chosen under a light palette, lightened to 3:1 on a dark background."""
        return ink_color(color, on=self.background, target=MARK_CONTRAST) if self.dark else QColor(color)

    def faint(self, color: str | QColor, strong: str | QColor) -> QColor:
        """A curve meant to sit quietly under ``strong`` (the raw loss under the smoothed one): as
        chosen when light; when dark, ``strong``'s dark-palette colour part-way to the background,
        since the pale light-palette colour would outshine it there."""
        return blend(self.line(strong), self.background, 0.55) if self.dark else QColor(color)


def error_banner_style() -> str:
    """A problem's banner (the Train and Adapters areas'): dark red text on a pale red tint with a
    rose border under a light palette, and the same hues for a dark one."""
    background = tint_color("#fdecea")
    return (f"background: {background.name()}; color: {ink('#8a1c14', on=background)}; "
            f"border: 1px solid {ink('#f0b4ae', on=background, target=MARK_CONTRAST)}; border-radius: 4px; "
            "padding: 6px;")
