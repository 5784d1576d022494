"""`--help` as a practice's IT person reads it at 80 columns: options grouped by concern (no
panel of more than 20), metavars that read (no `<bool>`, no `<list[Path]>`), no word lost to
rich markup, every option explained, every default shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer.main

from orthovision_cli.cli import COMMAND_MODULES, app
from orthovision_cli.commands.helpfmt import OTHER, panel_sizes

COMMANDS = [c for c in COMMAND_MODULES if c in typer.main.get_command(app).commands]  # type: ignore[attr-defined]


def _help(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_like_a_mature_tool(command: str) -> None:
    text = _help(command)
    assert "<bool>" not in text
    assert not re.search(r"<(list|int|float|str|path)", text), text
    assert "{inputs}" not in text and "internal error" not in text
    assert "  extra" not in text and "to  instead" not in text  # words lost to rich markup


def test_root_help_has_no_type_names_and_no_hard_breaks() -> None:
    text = _help()
    assert "<bool>" not in text
    # Each command's summary is reflowed to the terminal, not broken where its docstring was.
    assert "their confidence and source" in " ".join(text.split())
    assert not re.search(r"and\s*│\n│\s+print modality", text)


def test_help_keeps_words_in_square_brackets() -> None:
    text = _help("convert")
    assert "[cluster]" in text
    assert "[base]" in text  # --post-to-base


@pytest.mark.parametrize("command", COMMANDS)
def test_options_are_grouped_in_small_panels_and_explained(command: str) -> None:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    sizes = panel_sizes(click_command)
    assert OTHER not in sizes, f"an option of {command} has no panel: add it to helpfmt.PANELS"
    assert max(sizes.values()) <= 20, sizes
    for param in click_command.params:
        assert getattr(param, "help", None), f"{command} {param.name} has no help"


def test_computed_defaults_are_shown() -> None:
    convert = " ".join(_help("convert").split())
    for words in ("[default: (the number of cores)]", "[default: (600000000)]", "[default: (0.8)]"):
        assert words in convert, words
    assert "[default: (0.8)]" in " ".join(_help("classify").split())
    review = " ".join(_help("review").split())
    assert "[default: (a free one)]" in review and "[default: 0]" not in review


def test_the_reference_in_docs_is_the_help_of_today() -> None:
    from pathlib import Path

    from orthovision_cli.cli import reference

    doc = Path(__file__).resolve().parents[1] / "docs" / "cli-reference.md"
    assert doc.read_text() == reference(), (
        "docs/cli-reference.md is out of date: python -m orthovision_cli.cli reference > docs/cli-reference.md"
    )
