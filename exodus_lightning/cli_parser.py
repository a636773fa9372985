"""The CLI's argument parser: one-line errors that name the key and the fix, no abbreviated
options, a short help, and `--<key>.help CLASS` showing the values the command would use.

LightningCLI's parser (jsonargparse) reports a mistake after the whole usage text (~75 lines)
as a nested, multi-line message; `condense_error` turns that message into one line.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import inspect
import re
import sys
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser

PROG = "exodus-lightning"
# Bases whose "known subclasses" list in --help is everything imported (~460 torch.nn classes):
# shown as our own classes plus a sentence instead.
LONG_SUBCLASS_LISTS = {"torch.nn.Module": "any torch.nn.Module importable by class path"}

# (dest, current value) of the `--<dest>.help CLASS` being printed: its class's defaults are
# then the values the command would use, not the constructor's.
_help_defaults: contextvars.ContextVar[tuple[str, Any] | None] = contextvars.ContextVar(
    "help_defaults", default=None)
# {key: class_path} of the settings whose class the command line switches (see
# `class_switch_defaults`).
_class_switches: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "class_switches", default=None)
# Set while parsing the stated values alone: a mistake raises StatedValuesError, unprinted
# (the full parse reports it).
_raise_errors: contextvars.ContextVar[bool] = contextvars.ContextVar("raise_errors", default=False)


class StatedValuesError(Exception):
    """The arguments could not be parsed without the defaults."""


def _type_name(text: str) -> str:
    """"<class 'collections.abc.Sequence'>" -> "a list, e.g. [1, 2]"; NoneType -> null."""
    name = re.sub(r"<class '([\w.]+)'>", r"\1", text.strip()).rsplit(".", 1)[-1]
    return {"NoneType": "null", "Sequence": "a list, e.g. [1, 2]", "str": "a string",
            "int": "an integer", "float": "a number", "bool": "true or false"}.get(name, name)


def _close_matches(word: str, candidates: Iterable[str]) -> list[str]:
    """The closest candidate, and a second one only if it is about as close."""
    scored = sorted(((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates),
                    reverse=True)
    best = scored[0][0] if scored else 0.0
    return [c for score, c in scored[:2] if score >= max(0.6, best - 0.05)]


def _init_parameters(class_path: str) -> list[str]:
    """Constructor parameter names of an importable class (empty if it cannot be imported)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
    except (ImportError, AttributeError, TypeError, ValueError):
        return []


def _innermost(message: str) -> tuple[str | None, str]:
    """The full dotted key of the innermost `Parser key "..."` of a nested message, and that
    key's own part of the message (the whole message where no key is named).

    jsonargparse nests a setting's error under its parents' (a class_path's arguments under the
    class, a Union's alternatives side by side): the innermost key says what was wrong, its
    parents only where it sits. Depth is the line's indentation, then the column (a key named
    mid-line is inside that line's).
    """
    lines = message.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    chain: list[tuple[tuple[int, int], re.Match]] = []
    deepest: list[tuple[tuple[int, int], re.Match]] = []
    for match in re.finditer(r'Parser key "([^"]+)"', message):
        line = next(i for i in range(len(lines)) if starts[i + 1] > match.start())
        indent = len(lines[line]) - len(lines[line].lstrip(" "))
        depth = (indent, match.start() - starts[line])
        while chain and chain[-1][0] >= depth:
            chain.pop()
        chain.append((depth, match))
        if not deepest or depth > deepest[-1][0]:  # the first of equally deep ones
            deepest = list(chain)
    if not deepest:
        return None, message
    key, position = None, 0
    for _, match in deepest:
        if key is None:
            key = match.group(1)
        else:
            between = message[position : match.start()]
            # Inside a class_path's (or a callable class's) arguments: those are init_args.
            nested = "class_path" in between or "callable class" in between
            key += (".init_args." if nested else ".") + match.group(1)
        position = match.end()
    # The innermost key's part: up to the next line indented no deeper than its own line.
    (indent, _), last = deepest[-1]
    end = len(message)
    for i, start in enumerate(starts[:-1]):
        text = lines[i]
        if start > last.end() and text.strip() and len(text) - len(text.lstrip(" ")) <= indent:
            end = start
            break
    return key, message[last.end() : end]


def _split_types(text: str) -> list[str]:
    """The members of a `Subtypes: [...]` list, split at its top-level commas only (a
    Literal['a', 'b'] or Sequence[int] member holds commas and brackets of its own)."""
    members, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            members.append(current.strip())
            current = ""
        else:
            current += char
    return [m for m in [*members, current.strip()] if m]


def _literal_choices(text: str) -> list[str]:
    """["a", "b"] for "typing.Literal['a', 'b']"."""
    inner = text[text.index("[") + 1 : text.rindex("]")]
    return [c.strip().strip("'\"") for c in inner.split(",")]


def _expected(subtypes: list[str]) -> str:
    """What a Union of `subtypes` accepts, in words: "an integer or null", "one of a, b or
    null" (the choices of all its Literal members together), "true or false or warn"."""
    names, choices = [], []
    for subtype in subtypes:
        if re.match(r"(typing\.)?Literal\[", subtype):
            choices += _literal_choices(subtype)
            if "one of" not in names:
                names.append("one of")
        else:
            names.append(_type_name(re.sub(r"\[.*\]$", "", subtype)))
    choices = list(dict.fromkeys(choices))
    text = " or ".join(dict.fromkeys(names))
    return text.replace("one of", f"one of {', '.join(choices)}" if len(choices) > 1
                        else "".join(choices))


def condense_error(message: str, options: Iterable[str] = ()) -> str:
    """One line for a jsonargparse error message: the option, what is wrong, and the fix.

    `options` are the parser's option strings, for suggesting a mistyped or shortened one.
    """
    unrecognized = re.match(r"Unrecognized arguments: (.*)", message, re.DOTALL | re.IGNORECASE)
    if unrecognized:
        given = [arg.split("=", 1)[0] for arg in unrecognized.group(1).split()
                 if arg.startswith("--")] or unrecognized.group(1).split()[:1]
        parts = []
        for arg in given:
            suggestion = _close_matches(arg, options)
            hint = f" (did you mean {' or '.join(suggestion)}?)" if suggestion else ""
            parts.append(f"{arg}: no such option{hint}")
        return "; ".join(parts)
    not_accepted_key = re.search(r"does not accept option '([^']+)'", message)
    if not_accepted_key:  # a key in a --config file
        given = f"--{not_accepted_key.group(1)}"
        suggestion = _close_matches(given, options)
        hint = f" (did you mean {' or '.join(s.lstrip('-') for s in suggestion)}?)" \
            if suggestion else ""
        return f"{given.lstrip('-')}: no such key in the config{hint}"
    linked = re.search(r'Linked "([^"]+)" must be given via "([^"]+)"', message)
    if linked:  # a link target typed on the command line (jsonargparse refuses any value)
        attribute = linked.group(2).rpartition(".")[2]
        return (f"--{linked.group(1)}: set from the data (its {attribute}); remove it, or change "
                "the data's settings (--data.init_args.*) to change it")
    key, own = _innermost(message)
    option = f"--{key}" if key else "the config"
    not_accepted = re.search(r"Option '([^']+)' is not accepted", message)
    if not_accepted:
        name = not_accepted.group(1)
        class_path = re.findall(r"class_path '([\w.]+)'", message)
        accepted = _init_parameters(class_path[-1]) if class_path else []
        suggestion = _close_matches(name, accepted)
        where = f" of {class_path[-1]}" if class_path else ""
        hint = (f"; did you mean {option}.init_args.{suggestion[0]}?" if suggestion
                else f"; it takes {', '.join(accepted)}" if accepted else "")
        return f"{option}.init_args.{name}: no such argument{where}{hint}"
    # What the innermost key expected: a value inside a DataModule's (or a logger's) arguments
    # fails their Union (class or null) too, whose subtypes say nothing about the value.
    for text in (own, message):
        given = re.search(r"(?:Given value|Got value): (.*?)(?:\. Got value:|$)", text,
                          re.MULTILINE)
        value = f", got '{given.group(1).strip()}'" if given else ""
        literal = re.search(r"Expected a (typing\.Literal\[.*?\])\. Got value: (.*)", text)
        if literal:
            choices = ", ".join(_literal_choices(literal.group(1)))
            return f"{option}: '{literal.group(2).strip()}' is not one of {choices}"
        subtypes = re.search(r"^\s*Subtypes: \[(.*)\]\s*$", text, re.MULTILINE)
        if subtypes:
            return f"{option}: expected {_expected(_split_types(subtypes.group(1)))}{value}"
        expected = re.search(r"Expected a (<class '[\w.]+'>)", text)
        if expected:
            return f"{option}: expected {_type_name(expected.group(1))}{value}"
    if "No module named" in message or "not accessible or invalid" in message:
        path = re.search(r"class_path '([^']+)'", message)
        cause = re.search(r"(No module named '[^']+'|has no attribute '[^']+')", message)
        what = f"'{path.group(1)}'" if path else "the class path"
        return (f"{option}: cannot import {what}" + (f" ({cause.group(1)})" if cause else "")
                + "; a class path names a module importable from the folder you run in, "
                "e.g. my_nets.TwoLayerSNN for my_nets.py")
    file_missing = re.search(r"File does not exist: (.*)", message)
    if file_missing:
        return f"{option}: file does not exist: {file_missing.group(1).strip()}"
    # Otherwise: the first line that says something, with the key when there is one.
    lines = [line.strip(" -") for line in message.splitlines()]
    informative = [line for line in lines if line and not line.startswith("Parser key")]
    text = informative[0] if informative else message.strip()
    return f"{option}: {text}" if key else text


class ExodusArgumentParser(LightningArgumentParser):
    """LightningArgumentParser with one-line errors, no abbreviated options (a shortened flag
    such as --trainer.max_epoch is an error, not silently --trainer.max_epochs), short
    "known subclasses" lists in --help, and `--<key>.help CLASS` showing the values this
    command would use (its defaults and any --config given before it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("prog", PROG)  # subcommand parsers get "exodus-lightning <name>"
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Print `<prog>: error: <one line>` and exit 2 (raise, when not exiting on errors)."""
        if _raise_errors.get():
            raise StatedValuesError(message)
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        line = condense_error(message, parser._option_string_actions)
        sys.stderr.write(f"{prog}: error: {line}\n")
        self.exit(2)

    def get_defaults(self, skip_validation: bool = False, **kwargs: Any) -> Namespace:
        """The defaults, where the command line switches a setting to another class: that class
        alone (its own defaults), without the values written for the default class."""
        defaults = super().get_defaults(skip_validation, **kwargs)
        for key, class_path in (_class_switches.get() or {}).items():
            current = defaults.get(key) if key in defaults else None
            if _is_class_spec(current) and current.get("class_path") != class_path:
                defaults[key] = Namespace(class_path=class_path)
        return defaults

    def add_class_arguments(self, class_type: type, nested_key: str | None = None,
                            *args: Any, **kwargs: Any) -> list[str]:
        added = super().add_class_arguments(class_type, nested_key, *args, **kwargs)
        for action in self._actions:
            _prefer_int_over_float(action)
        context = _help_defaults.get()
        if context is not None and nested_key == context[0]:
            _set_help_defaults(self, class_type, nested_key, context[1])
        return added

    def format_help(self) -> str:
        for action in self._actions:
            _shorten_subclass_list(action)
            action.help = first_sentence(action.help)
        return super().format_help()


def _prefer_int_over_float(action: Any) -> None:
    """Parse "1" as the int 1 where an option takes an int or a float: Trainer's
    limit_*_batches say int = batches, float = fraction, so "1" read as 1.0 meant every batch.

    Trainer annotates them Union[int, float], but typing caches equal unions, so the order of
    one created earlier with float first (lightning does) is what jsonargparse tries (Lightning
    issue #21259). ``int | float`` is not cached with them and keeps its order.
    """
    hint = getattr(action, "_typehint", None)
    members = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else ()
    if int in members and float in members and members.index(float) < members.index(int):
        ordered: Any = int | float
        for member in members:
            if member not in (int, float):
                ordered = ordered | member
        action._typehint = ordered


def _is_class_spec(value: Any) -> bool:
    return isinstance(value, Namespace) and isinstance(value.get("class_path"), str)


def class_settings(defaults: Namespace) -> dict[str, str]:
    """{key: class_path} of every setting of `defaults` that names a class (data,
    model.network, model.optimizer, trainer.logger, ...), outermost only."""
    found: dict[str, str] = {}
    for key, value in defaults.items(branches=True):
        if _is_class_spec(value) and not any(key.startswith(f"{k}.") for k in found):
            found[key] = value.class_path
    return found


@contextlib.contextmanager
def class_switch_defaults(switches: dict[str, str]) -> Iterator[None]:
    """While parsing, a setting in `switches` ({key: class_path}) starts from that class's own
    defaults instead of the default config's class and values.

    jsonargparse keeps the values that a new class_path shares with the previous one: without
    this, `--data SHDDataModule` would inherit the built-in Randman task's num_time_steps 50 and
    num_channels 20, and `--model.network ConvSNN` the default network's spike_threshold 0.5.
    """
    token = _class_switches.set(dict(switches))
    try:
        yield
    finally:
        _class_switches.reset(token)


def stated_values(parser: LightningArgumentParser, args: list[str],
                  seeds: dict[str, Namespace]) -> Namespace | None:
    """What `args` state themselves (their --config files and options, in order), without any
    default; None where they cannot be parsed so (the full parse then says why).

    `seeds` ({prefix: defaults}) name the default classes of the settings, so that an option
    such as --model.network.init_args.tau_mem parses without its class_path. A class_path
    equal to the default class is dropped from the result: it restates the default.
    """
    tokens = [arg.split("=", 1)[0] for arg in args]
    if any(t in ("-h", "--help") or t.endswith(".help") for t in tokens):
        return None  # help is printed by the full parse
    try:  # --print_config prints during the full parse only
        from jsonargparse._actions import _ActionPrintConfig
        skip_print_config = _ActionPrintConfig.skip_print_config
    except (ImportError, AttributeError):  # another jsonargparse version
        if "--print_config" in tokens:
            return None
        skip_print_config = contextlib.nullcontext
    start = Namespace()
    classes: dict[str, str] = {}
    for prefix, defaults in seeds.items():
        for key, class_path in class_settings(defaults).items():
            full_key = f"{prefix}.{key}" if prefix else key
            start[full_key] = Namespace(class_path=class_path)
            classes[full_key] = class_path
    token = _raise_errors.set(True)
    try:
        with skip_print_config():
            stated = parser.parse_args(args, namespace=start, defaults=False,
                                       _skip_validation=True)
    except (StatedValuesError, SystemExit, TypeError, ValueError, KeyError):
        return None
    finally:
        _raise_errors.reset(token)
    for full_key, class_path in classes.items():
        spec = stated.get(full_key) if full_key in stated else None
        if _is_class_spec(spec) and spec.class_path == class_path:
            del spec["class_path"]
    return _without_empty_branches(stated)


def names_class(args: list[str], key: str) -> bool:
    """Whether `args` name the class of setting `key` (e.g. "data") themselves: `--data X`,
    `--data.class_path X`, or a --config (a file or YAML text) whose `data` names a class.

    stated_values leaves out a class_path equal to the default class; this tells that
    restatement (`--data RandmanDataModule`) from options that name no class."""
    tokens = [arg.split("=", 1)[0] for arg in args]
    if f"--{key}" in tokens or f"--{key}.class_path" in tokens:
        return True
    for index, arg in enumerate(args):
        if arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        elif arg == "--config" and index + 1 < len(args):
            value = args[index + 1]
        else:
            continue
        try:
            text = Path(value).read_text() if Path(value).is_file() else value
            node = yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError):
            continue  # the full parse says what is wrong with it
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str) or (isinstance(node, dict) and "class_path" in node):
            return True
    return False


def _without_empty_branches(namespace: Namespace) -> Namespace:
    """`namespace` without the sections that hold no value (left by dropped class_paths)."""
    for key, value in list(namespace.items(branches=True, nested=False)):
        if isinstance(value, Namespace):
            value = _without_empty_branches(value)
            if next(iter(value.keys()), None) is None:
                del namespace[key]
    return namespace


def _set_help_defaults(parser: LightningArgumentParser, class_type: type, key: str,
                       current: Any) -> None:
    """Make `current` (a class_path + init_args value) the defaults shown for `class_type`."""
    if current is None or not hasattr(current, "get"):
        return
    class_path = current.get("class_path")
    if class_path is None or class_path.rsplit(".", 1)[-1] != class_type.__name__:
        return  # help for another class than the one configured: its own defaults
    init_args = current.get("init_args") or {}
    items = init_args.items() if hasattr(init_args, "items") else []
    for name, value in items:
        try:
            parser.set_defaults({f"{key}.{name}": value})
        except (KeyError, ValueError, TypeError):
            continue  # e.g. a value linked from the data (num_classes): nothing to show
    parser.description = (f"{parser.description} (defaults: the values this command uses)"
                          if parser.description else None)


def wrap_class_help(parser: LightningArgumentParser) -> None:
    """Let every `--<key>.help CLASS` option of `parser` show the values the command uses."""
    for action in parser._actions:
        if type(action).__name__ != "_ActionHelpClassPath" or getattr(action, "_wrapped", False):
            continue
        original = action.print_help

        def print_help(call_args: tuple, action: Any = action, original: Any = original) -> Any:
            _parser, namespace, _value, _option = call_args
            dest = action.dest.removesuffix(".help")
            current = namespace.get(dest) if hasattr(namespace, "get") else None
            token = _help_defaults.set((dest, current))
            try:
                return original(call_args)
            finally:
                _help_defaults.reset(token)

        action.print_help = print_help
        action._wrapped = True


def first_sentence(text: str | None, longer_than: int = 160) -> str | None:
    """A long help text's first sentence: Lightning's docstrings run to 20 lines per option,
    which made `fit --help` 1,200 lines. The documentation has the rest."""
    if not text or len(text) <= longer_than or "%(" in text:
        return text
    match = re.search(r"^(.+?[.:])(\s|$)", text.strip(), re.DOTALL)
    return match.group(1) if match else text


def _shorten_subclass_list(action: Any) -> None:
    """Replace an action's help list of every imported subclass of torch.nn.Module with ours."""
    if not hasattr(action, "extra_help") or getattr(action, "_shortened", False):
        return
    action._shortened = True
    text = action.extra_help()
    for base, sentence in LONG_SUBCLASS_LISTS.items():
        if f"known subclasses: {base}," not in text:
            continue
        paths = text.split("known subclasses: ", 1)[1].rstrip(")").split(", ")
        # Our networks: the classes the data's num_classes can be linked into.
        ours = [path for path in paths if path.startswith("exodus_lightning.models.")
                and "num_classes" in _init_parameters(path)]
        shortened = f", built in: {', '.join(ours)}; or {sentence}"
        action.extra_help = lambda shortened=shortened: shortened
