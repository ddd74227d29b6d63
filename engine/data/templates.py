"""Prompt templates: how a conversation becomes the text a model trains on and answers after.

The run config's ``template`` is one of

- ``auto``: the tokenizer's chat template, or the Alpaca prompt when it has none;
- ``chat``: the tokenizer's chat template (an error when it has none);
- ``alpaca``: the Alpaca instruction prompt, for base models;
- a named chat format for teaching a base model to chat: ``chatml`` (Qwen, many fine-tunes),
  ``llama3``, ``gemma`` or ``phi3``;
- the path of a ``.jinja`` file: a chat template of your own, in the Jinja form Hugging Face
  tokenizers use (``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``).

Every template but the tokenizer's own is a Jinja chat template handed to
``apply_chat_template(chat_template=...)``, and a run writes the one it trained with into the
tokenizer it saves beside its result. A merged model or a GGUF file then formats chats the way
the model learned them, in transformers, llama.cpp, Ollama and LM Studio alike.

The Alpaca text is tokenized as a plain string with the tokenizer's own special tokens (as
before it had a Jinja form); its saved Jinja form renders the same text, the BOS included when
the tokenizer adds one.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, DataError

ALPACA_SYSTEM = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")

# The Alpaca prompt as a Jinja chat template. The comment marks a tokenizer's template as ours,
# so a saved run tokenizer still renders Alpaca the way training did (a plain string).
ALPACA_MARK = "{#- finetune-studio: alpaca -#}"
_ALPACA = (
    ALPACA_MARK
    + "{%- set ns = namespace(system='" + ALPACA_SYSTEM + "') -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- if loop.first -%}{%- set ns.system = m['content'] -%}"
    "{%- endif -%}{%- endfor -%}"
    "{{- ns.system | trim + '\\n\\n' -}}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{- '### Instruction:\\n' + m['content'] + '\\n\\n### Response:\\n' -}}"
    "{%- elif m['role'] == 'assistant' -%}{{- m['content'] + (eos_token or '') + '\\n\\n' -}}"
    "{%- elif m['role'] == 'tool' -%}{{- '### Observation:\\n' + m['content'] + '\\n\\n### Response:\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and (messages | length == 0 or messages[-1]['role'] not in ['user', 'tool']) -%}"
    "{{- '### Response:\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class ChatFormat:
    """A named chat format: its Jinja template, the markers it needs as single tokens, its end of turn."""

    name: str
    jinja: str
    markers: tuple[str, ...]
    end: str


FORMATS: dict[str, ChatFormat] = {f.name: f for f in (
    ChatFormat("chatml", (
        "{%- for m in messages -%}"
        "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"),
        ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),  # ChatML: Qwen and many fine-tunes
    ChatFormat("llama3", (
        "{%- for m in messages -%}"
        "{{- '<|start_header_id|>' + ('ipython' if m['role'] == 'tool' else m['role']) + '<|end_header_id|>\\n\\n'"
        " + m['content'] | trim + '<|eot_id|>' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"),
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    ChatFormat("gemma", (
        "{%- set ns = namespace(system='') -%}"
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'system' -%}{%- set ns.system = m['content'] | trim + '\\n\\n' -%}"
        "{%- elif m['role'] == 'assistant' -%}{{- '<start_of_turn>model\\n' + m['content'] | trim + '<end_of_turn>\\n' -}}"
        "{%- else -%}{{- '<start_of_turn>user\\n' + ns.system + m['content'] | trim + '<end_of_turn>\\n' -}}"
        "{%- set ns.system = '' -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"),
        ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),  # the system prompt joins the first user turn
    ChatFormat("phi3", (
        "{%- for m in messages -%}"
        "{{- '<|' + ('user' if m['role'] == 'tool' else m['role']) + '|>\\n' + m['content'] + '<|end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"),
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<|end|>"),
)}

BUILTIN = ("auto", "chat", "alpaca")
TEMPLATE_CHOICES = BUILTIN + tuple(FORMATS)
"""The template names a run config takes; a path ending in ``.jinja`` is taken too."""
TEMPLATE_FILE_SUFFIX = ".jinja"


def is_template_file(template: str) -> bool:
    return isinstance(template, str) and template.lower().endswith(TEMPLATE_FILE_SUFFIX)


def check_template_name(template: Any, key: str = "template") -> str:
    """``template`` if it is a name or a ``.jinja`` path; a ConfigError naming the choices otherwise."""
    if isinstance(template, str) and (template in TEMPLATE_CHOICES or is_template_file(template)):
        return template
    raise ConfigError(f"'{key}' must be one of {', '.join(TEMPLATE_CHOICES)} or a .jinja file; got {template!r}",
                      key=key)


@dataclass(frozen=True)
class Rendering:
    """How one template renders a tokenizer's conversations.

    ``alpaca``: the Alpaca prompt, tokenized as a plain string. Otherwise ``jinja`` is the chat
    template to hand ``apply_chat_template`` (None: the tokenizer's own).
    """

    name: str
    alpaca: bool = False
    jinja: str | None = None
    end: str | None = None          # the end-of-turn marker generation stops at, if the format has one
    markers: tuple[str, ...] = ()


def _tokenizer_adds_bos(tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def _bos_prefix(tokenizer: Any) -> str:
    """The BOS a template must write itself: ``apply_chat_template`` adds no special tokens."""
    return "{{- bos_token -}}" if _tokenizer_adds_bos(tokenizer) else ""


@functools.lru_cache(maxsize=16)
def _read_template_file(path: str, mtime_ns: int) -> str:
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: the chat template is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:  # a folder named x.jinja, no permission: "Is a directory: ..." from the CLI, a Qt slot's traceback
        what = "is a folder, not a file" if Path(path).is_dir() else f"can't be read: {e.strerror or e}"
        raise DataError(f"the chat template file '{path}' {what}",
                        hint="Give the path of a .jinja file, relative to the run config's folder or absolute.",
                        fix={"template": "auto"}) from None
    try:
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).parse(text)
    except TemplateSyntaxError as e:
        raise DataError(f"{path}:{e.lineno}: the chat template is not valid Jinja: {e.message}") from None
    if "messages" not in text:
        raise DataError(f"{path}: the chat template never reads 'messages', so every record would render the same",
                        hint="A chat template loops over messages, e.g. {% for m in messages %}…{% endfor %}.")
    return text


def read_template_file(path: str | os.PathLike) -> str:
    """The Jinja text of a ``.jinja`` template file, checked for syntax.

    Raises:
        DataError: the file is missing, not UTF-8, not valid Jinja (with its line), or never
            reads ``messages``.
    """
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise DataError(f"the chat template file '{p}' does not exist",
                        hint="Give the path of a .jinja file, relative to the run config's folder or absolute.",
                        fix={"template": "auto"}) from None
    return _read_template_file(str(p.resolve()), mtime)


def resolve(tokenizer: Any, template: str | Rendering) -> Rendering:
    """How ``template`` renders this tokenizer's conversations.

    Raises:
        DataError: ``chat`` with a tokenizer that has no chat template; a bad template file.
        ConfigError: an unknown template name.
    """
    if isinstance(template, Rendering):
        return template
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    if template == "chat":
        if not own:
            raise DataError("template 'chat' was chosen but the tokenizer has no chat template",
                            fix={"template": "alpaca"})
        return _known(own, "chat", None)
    if template == "alpaca" or (template == "auto" and (not own or ALPACA_MARK in own)):
        return Rendering("alpaca", alpaca=True)
    if template == "auto":
        return _known(own, "chat", None)
    if template in FORMATS:
        f = FORMATS[template]
        return Rendering(f.name, jinja=_bos_prefix(tokenizer) + f.jinja, end=f.end, markers=f.markers)
    if is_template_file(template):
        return Rendering(Path(template).name, jinja=read_template_file(template))
    check_template_name(template)
    raise AssertionError(template)  # check_template_name raised


def saved_template(tokenizer: Any, template: str | Rendering) -> str | None:
    """The chat template a run writes into the tokenizer it saves; None keeps the tokenizer's own."""
    r = resolve(tokenizer, template)
    if r.alpaca:
        return _bos_prefix(tokenizer) + _ALPACA
    return r.jinja


def alpaca_text(messages: list[dict], add_generation_prompt: bool, eos: str) -> str:
    """The Alpaca prompt text of a conversation (what the saved Jinja form renders, BOS aside)."""
    return _alpaca_env().render(messages=messages, add_generation_prompt=add_generation_prompt, eos_token=eos)


@functools.lru_cache(maxsize=1)
def _alpaca_env():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(_ALPACA)


def marker_problems(tokenizer: Any, template: str | Rendering) -> list[str]:
    """The markers of a named chat format that this tokenizer splits into several tokens.

    The model can still learn such a format, but as text pieces: often worse, and the
    markers cost tokens. A tokenizer of the format's own family has them as single tokens.
    """
    return [f"{m} ({n} tokens)" for m, n in _split(tokenizer, template)]


def split_markers(tokenizer: Any, template: str | Rendering) -> list[str]:
    """The markers of a named chat format that this tokenizer splits (the ``add_tokens`` that fix it)."""
    return [m for m, _ in _split(tokenizer, template)]


def _split(tokenizer: Any, template: str | Rendering) -> list[tuple[str, int]]:
    out = []
    for m in resolve(tokenizer, template).markers:
        n = len(tokenizer(m, add_special_tokens=False)["input_ids"])
        if n != 1:
            out.append((m, n))
    return out


def stops(tokenizer: Any, rendering: Rendering) -> tuple[list[int], list[str]]:
    """What ends an answer under this rendering besides the tokenizer's EOS.

    Returns:
        (token ids, strings): the format's end-of-turn marker as its token id when it is one
        token, else as a string for ``generate(stop_strings=...)``.
    """
    if not rendering.end:
        return [], []
    ids = tokenizer(rendering.end, add_special_tokens=False)["input_ids"]
    return (list(ids), []) if len(ids) == 1 else ([], [rendering.end])


def saved_chat_template(folder: str | os.PathLike) -> str | None:
    """The chat template a tokenizer saved in ``folder`` holds (its default one), or None.

    Read from the files, as transformers writes them: ``chat_template.jinja`` (transformers 5),
    ``chat_template.json`` or the ``chat_template`` of ``tokenizer_config.json`` (a string, or a
    list of named templates).
    """
    import json

    folder = Path(folder)
    text: Any = None
    try:
        if (folder / "chat_template.jinja").is_file():
            text = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        else:
            for name in ("chat_template.json", "tokenizer_config.json"):
                if (folder / name).is_file():
                    text = json.loads((folder / name).read_text(encoding="utf-8")).get("chat_template")
                    if text:
                        break
    except (OSError, ValueError):
        return None
    if isinstance(text, list):  # several named templates: the default one
        text = next((t.get("template") for t in text if isinstance(t, dict) and t.get("name") == "default"), None)
    return text if isinstance(text, str) and text.strip() else None


def saved_rendering(folder: str | os.PathLike) -> Rendering | None:
    """The template a tokenizer saved in ``folder`` (a run's ``final/``) renders with.

    A run saves the template it trained with, so an adapter answers in its own format even when
    it was trained with another template than its base's. None when the folder holds no template.
    """
    text = saved_chat_template(folder)
    if text is None:
        return None
    return Rendering("alpaca", alpaca=True) if ALPACA_MARK in text else _known(text, "saved", text)


def cut_at_stops(text: str, stop_strings: list[str]) -> str:
    """An answer's text before its first stop string (``generate`` stops after one and keeps it)."""
    for s in stop_strings:
        text = text.split(s, 1)[0]
    return text


def _known(text: str, name: str, jinja: str | None) -> Rendering:
    """A chat template's rendering; one of ours (a run saved it) keeps its name and end marker."""
    for f in FORMATS.values():
        if text.endswith(f.jinja):
            return Rendering(f.name, jinja=jinja, end=f.end, markers=f.markers)
    return Rendering(name, jinja=jinja)
