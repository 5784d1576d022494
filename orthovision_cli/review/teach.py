"""`train --from-decisions OUT`: the review page's decisions as training data.

Each decided image whose content is still the one the person saw is linked into a temporary
`<tag>/<value>/` folder (the layout `train` reads), next to the images of a labelled folder if
one is given too, and `labels.local.train.train_pack` fits the heads as usual. A changed or
vanished file is left out (and said so). Only the tags the person set or confirmed are used.
The answers given once per source folder (film or digital) become the pack's batch fact when
they agree (`answered_radiographs`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..answers import load as load_answers
from ..decisions import load
from ..errors import InputError
from ..inputs.source import content_hash


def _link(src: Path, folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{n:06d}-{src.name}"
    try:
        os.symlink(src, dest)
    except OSError:  # a file system without symbolic links
        shutil.copy2(src, dest)


def _folder_value(tag: str, value: str) -> str:
    return value.replace("+", "_") if tag == "orientation" else value


def build_layout(dest: Path, outputs: list[Path], labelled: Path | None = None) -> tuple[int, list[str]]:
    """Fill `dest` with `<tag>/<value>/` links; returns (decided images used, notes)."""
    notes: list[str] = []
    n = 0
    if labelled is not None:
        from ..labels.local.train import scan_labelled

        for tag, items in scan_labelled(labelled).items():
            for path, value in items:
                n += 1
                _link(path.absolute(), dest / tag / _folder_value(tag, value), n)
    used = 0
    for out in outputs:
        decisions = load(out)
        if not decisions:
            notes.append(f"{out}: no decisions (orthovision-decisions.csv)")
        for d in decisions.values():
            src = Path(d.input)
            try:
                same = content_hash(src) == d.sha256
            except InputError:
                notes.append(f"{src}: cannot be read; left out")
                continue
            if not same:
                notes.append(f"{src}: changed since it was decided; left out")
                continue
            used += 1
            # Only the tags the person set or confirmed: the others hold the tool's own proposal.
            for tag in d.tags:
                if value := d.value(tag):
                    n += 1
                    _link(src, dest / tag / _folder_value(tag, value), n)
    return used, notes


def answered_radiographs(outputs: list[Path]) -> str | None:
    """Film or digital, when every answer a person gave once for a source folder of these
    output folders (`orthovision-settings.toml`) says the same; None otherwise. The taught pack
    keeps it as its batch fact, as it would learn it from agreeing decisions."""
    said = {a.acquisition for out in outputs for a in load_answers(out).values()}
    return next(iter(said)) if len(said) == 1 else None
