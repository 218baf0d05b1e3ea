"""Every ``--option`` a message or help text of fomm names is an option of some fomm command
(or of the seed command, tools/first-order-demo.py)."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*")
# options of other programs that fomm's messages quote (torchrun's)
FOREIGN = {"--nproc_per_node"}


def _parser_options(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _parser_options(sub)
    return found


def known_options() -> set[str]:
    """The option strings of every fomm subcommand (the lazy ones registered for real) and of
    the seed command."""
    from fomm.cli.main import LAZY_COMMANDS, build_parser

    found = _parser_options(build_parser())
    subparsers = argparse.ArgumentParser().add_subparsers()
    for module in {m for m, _ in LAZY_COMMANDS.values()}:
        importlib.import_module(module).register(subparsers)
    for parser in subparsers.choices.values():
        found |= _parser_options(parser)
    spec = importlib.util.spec_from_file_location("first_order_demo",
                                                  ROOT / "tools" / "first-order-demo.py")
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    return found | _parser_options(seed.build_parser())


def _not_messages(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are not messages: docstrings (they document code) and the
    option names an ``add_argument`` call defines (a parser of its own, e.g. a module's
    ``python -m`` tool, defines what it names)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            ids.update(id(arg) for arg in node.args)
    return ids


def mentioned_options() -> dict[str, list[str]]:
    """``--option`` → where fomm's string literals (messages, help texts, f-string parts) name it;
    docstrings and comments are not messages."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "fomm").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _not_messages(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    id(node) not in skip:
                for option in OPTION.findall(node.value):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.setdefault(option, []).append(where)
    return found


def test_the_scan_finds_messages() -> None:
    mentioned = mentioned_options()
    assert "--backend" in mentioned  # e.g. "use --backend torch"
    assert "--checkpoint" in mentioned


def test_every_option_named_in_a_message_exists() -> None:
    known = known_options() | FOREIGN
    unknown = {option: where for option, where in mentioned_options().items()
               if option not in known}
    assert unknown == {}, unknown


def test_backend_is_an_option_of_every_running_command() -> None:
    from fomm.cli.main import LAZY_COMMANDS, build_parser
    from fomm.runtime.backends import BACKENDS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {"animate": sub.choices["animate"]}
    subparsers = argparse.ArgumentParser().add_subparsers()
    for command in ("live", "serve", "worker"):
        importlib.import_module(LAZY_COMMANDS[command][0]).register(subparsers)
        parsers[command] = subparsers.choices[command]
    for command, parser in parsers.items():
        action = next(a for a in parser._actions if a.dest == "backend")
        assert tuple(action.choices) == BACKENDS, command
        assert action.default is None, command  # None: $FOMM_BACKEND, else auto
