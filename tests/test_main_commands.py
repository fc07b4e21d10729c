"""main.py imports only the module of the command asked for: its table must name every command
each module registers, and a command line must parse the same with one module as with all."""

from __future__ import annotations

import argparse
import importlib

import pytest

import main


def _registered(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    return set(sub.choices)


def test_the_table_names_every_command_of_every_module() -> None:
    modules = set(main.COMMAND_MODULES.values())
    table: dict[str, set[str]] = {m: set() for m in modules}
    for command, module in main.COMMAND_MODULES.items():
        table[module].add(command)
    assert {m: _registered(m) for m in modules} == table
    full = main.build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(main.COMMAND_MODULES)


def test_one_command_parses_as_with_all_modules() -> None:
    argv = [
        "--lang",
        "en",
        "sell",
        "--customer",
        "100000000001",
        "--amount",
        "20",
        "--operator",
        "t01",
    ]
    light = main.build_parser(command="sell")
    sub = next(a for a in light._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {c for c, m in main.COMMAND_MODULES.items() if m == "app.cli_sales"}
    one = vars(light.parse_args(argv))
    every = vars(main.build_parser().parse_args(argv))
    assert one.keys() == every.keys()
    assert {k: v for k, v in one.items() if k != "func"} == {
        k: v for k, v in every.items() if k != "func"
    }
    assert one["func"] is every["func"]


def test_an_unknown_command_is_refused_with_the_whole_list(capsys) -> None:

    with pytest.raises(SystemExit) as exc:
        main.main(["--lang", "en", "sel"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sel'" in err
    assert "'central'" in err and "'sell'" in err
