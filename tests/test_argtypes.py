"""argparse converters: bounds, messages, and a CLI refusing a bad number with exit status 2."""

from __future__ import annotations

import argparse

import pytest

from fomm.cli.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from fomm.cli.main import main


@pytest.mark.parametrize(("parse", "good", "bad"), [
    (positive_int, "1", "0"), (non_negative_int, "0", "-1"),
    (positive_float, "0.001", "0"), (non_negative_float, "0", "-0.5"),
])
def test_bounds(parse, good: str, bad: str) -> None:
    assert parse(good) == type(parse(good))(good)
    with pytest.raises(argparse.ArgumentTypeError, match="must be"):
        parse(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="expected a"):
        parse("three")


def test_cli_refuses_a_bad_batch_size(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["animate", "a.png", "b.mp4", "--batch-size", "0"])
    assert exc.value.code == 2
    assert "--batch-size: must be at least 1, got 0" in capsys.readouterr().err
