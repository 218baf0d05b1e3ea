"""Library code logs; the CLI shows fomm's lines on stderr, one each: information as it is,
warnings as ``note: ...``."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from fomm.cli.main import show_notes

PACKAGE = Path(__file__).resolve().parents[1] / "fomm"


def _command(name: str) -> bool:
    """A command's body (``python -m`` main, a subcommand's cmd_*): its printed line is the
    command's output, not library chatter."""
    return name == "main" or name.startswith("cmd_")



@pytest.fixture
def cli_logging():
    logger = logging.getLogger("fomm")
    level, handlers = logger.level, list(logger.handlers)
    show_notes()
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_the_cli_shows_information_as_it_is_and_warnings_as_notes(cli_logging, capsys) -> None:
    logging.getLogger("fomm.inference.pipeline").info("faces: animating the largest of 2")
    logging.getLogger("fomm.live.loop").warning("the expression layer is off")
    logging.getLogger("fomm.inference.pipeline").debug("not shown")
    assert capsys.readouterr().err.splitlines() == [
        "faces: animating the largest of 2", "note: the expression layer is off"]


def _prints(path: Path) -> list[tuple[str, int]]:
    """(enclosing top-level function, line) of each print() call in ``path``."""
    found = []
    for top in ast.parse(path.read_text()).body:
        name = getattr(top, "name", "")
        for node in ast.walk(top):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                found.append((name, node.lineno))
    return found


def test_library_code_does_not_print() -> None:
    printing = [f"{path.relative_to(PACKAGE)}:{line} ({name})"
                for path in sorted(PACKAGE.rglob("*.py")) if path.parts[-2] != "cli"
                for name, line in _prints(path)
                if not _command(name)]
    assert not printing, printing
