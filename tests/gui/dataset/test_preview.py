"""The prompt preview: the demo tokenizer loads in the tokenizer's process; trained tokens are highlighted."""

from __future__ import annotations

import pytest

from engine.paths import demo_model_dir


def shown_preview(make_editor, path, qtbot):
    """An editor on ``path`` with record 1 shown in the Prompt preview, its tokenizer loaded (in the
    tokenizer's process) and the record rendered."""
    ed = make_editor(path)
    ed.select_record(0)
    with qtbot.waitSignal(ed.preview.sig_rendered, timeout=120000):
        ed.tabs.setCurrentWidget(ed.preview)  # the first show loads the tokenizer
    return ed


@pytest.mark.skipif(not (demo_model_dir() / "tokenizer_config.json").exists(), reason="no demo tokenizer")
def test_preview_marks_the_answer_as_trained(make_editor, small_dataset, qtbot):
    ed = shown_preview(make_editor, small_dataset, qtbot)
    answer = ed.dataset().records[0].peek()["output"]
    doc = ed.preview.text.document()
    trained, prompt = [], []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            (trained if frag.charFormat().background().color().green() == 240 else prompt).append(frag.text())
            it += 1
        block = block.next()
    assert answer.split()[0] in "".join(trained)
    assert ed.dataset().records[0].peek()["instruction"].split()[0] in "".join(prompt)
    assert "trained" in ed.preview.stats.text()
    # A check with the tokenizer gives exact token lengths.
    # (The tokenizer's check may have finished while the preview rendered, so wait on the report shown.)
    qtbot.waitUntil(lambda: ed.lint_report() is not None
                    and ed.lint_report().stats["length"]["method"].startswith("tokenizer"), timeout=60000)


@pytest.mark.skipif(not (demo_model_dir() / "tokenizer_config.json").exists(), reason="no demo tokenizer")
def test_preview_renders_a_named_format_and_says_when_the_tokenizer_splits_its_markers(make_editor, small_dataset,
                                                                                        qtbot):
    ed = shown_preview(make_editor, small_dataset, qtbot)

    def rendered(action):
        with qtbot.waitSignal(ed.preview.sig_rendered, timeout=60000):
            action()

    rendered(lambda: ed.preview.set_template("chatml"))  # the demo tokenizer has ChatML's markers as tokens
    assert "<|im_start|>assistant" in ed.preview.text.toPlainText()
    assert "splits" not in ed.preview.stats.text()
    rendered(lambda: ed.preview.set_template("llama3"))
    assert "<|start_header_id|>assistant<|end_header_id|>" in ed.preview.text.toPlainText()
    assert "splits the llama3 markers" in ed.preview.stats.text()
    assert "&lt;|eot_id|&gt; (8 tokens)" in ed.preview.stats.text()
    assert "Add tokens: &lt;|start_header_id|&gt;, &lt;|end_header_id|&gt;, &lt;|eot_id|&gt;" in ed.preview.stats.text()
    split_count = int(ed.preview.stats.text().split(" tokens")[0].lstrip("≈").replace(",", ""))
    # The Train area's add_tokens: the markers become whole tokens, and the note goes.
    rendered(lambda: ed.preview.set_add_tokens(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]))
    assert "splits" not in ed.preview.stats.text()
    whole_count = int(ed.preview.stats.text().split(" tokens")[0].lstrip("≈").replace(",", ""))
    assert split_count - whole_count == 2 * (13 - 1) + 2 * (11 - 1) + 2 * (8 - 1)
    rendered(lambda: ed.preview.set_add_tokens([]))  # the model's own tokenizer is left as it was
    assert "splits the llama3 markers" in ed.preview.stats.text()


@pytest.mark.skipif(not (demo_model_dir() / "tokenizer_config.json").exists(), reason="no demo tokenizer")
def test_the_checks_count_tokens_in_the_format_and_with_the_tokens_the_run_will_use(make_editor, small_dataset,
                                                                                     qtbot):
    from engine.data.tokenize import render_record
    from engine.models import load_tokenizer

    ed = shown_preview(make_editor, small_dataset, qtbot)
    markers = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = load_tokenizer(str(demo_model_dir()))  # here, to know what the tokenizer's process must count
    grown = load_tokenizer(str(demo_model_dir()), add_tokens=markers)
    records = ed.dataset().records

    def lengths():
        report = ed.lint_report()
        return report.stats["length"]["per_record"] if report is not None else {}

    want = len(render_record(records[0].messages(), tok, "llama3")["input_ids"])
    ed.preview.set_template("llama3")  # as the Train area's template follows into the preview
    qtbot.waitUntil(lambda: lengths().get(0) == want, timeout=60000)
    whole = len(render_record(records[0].messages(), grown, "llama3")["input_ids"])
    assert whole < want
    ed.preview.set_add_tokens(markers)
    qtbot.waitUntil(lambda: lengths().get(0) == whole, timeout=60000)
    assert "template llama3" in ed.lint_report().stats["length"]["method"]
