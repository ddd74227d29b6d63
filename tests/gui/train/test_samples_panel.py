"""The Train area's Answers tab: the model's answers at each evaluation beside the references."""

from __future__ import annotations

from gui.train.samples_panel import EMPTY, SamplesPanel


def event(step: int, answer: str) -> dict:
    return {"step": step, "source": "eval", "time_s": 0.4,
            "samples": [{"line": 7, "prompt": "What is <b>2+2</b>?", "reference": "4", "answer": answer, "tokens": 3}]}


def test_the_newest_step_shows_first_and_an_earlier_one_can_be_picked(qtbot):
    panel = SamplesPanel()
    qtbot.addWidget(panel)
    panel.add(event(10, "five"))
    panel.add(event(20, "4 <script>"))
    assert panel.shown_step() == 20 and [panel.step.itemData(i) for i in range(panel.step.count())] == [20, 10]
    text = panel.view.toPlainText()
    assert "line 7" in text and "What is <b>2+2</b>?" in text and "4 <script>" in text  # shown as text
    assert "1 held-out records" in panel.about.text()
    panel.step.setCurrentIndex(1)
    assert "five" in panel.view.toPlainText() and "4 <script>" not in panel.view.toPlainText()
    panel.add(event(10, "again"))  # a step made again after a rollback replaces the old one
    assert panel.step.count() == 2 and panel.shown_step() == 20
    panel.set_rows([])
    assert panel.step.count() == 0 and not panel.step.isEnabled()
    assert panel.view.toPlainText() == EMPTY  # what will appear here, not an old run's answers
