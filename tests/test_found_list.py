"""The walk's compact list of inputs (batch/walk.py `FoundList`, issue 25): whatever goes in
comes out equal, in order, and its by-index readers agree with the inputs made from it."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orthovision_cli.batch.parts import split_parts
from orthovision_cli.batch.walk import FoundInput, FoundList, find_inputs

_name = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=8)


@st.composite
def found_inputs(draw: st.DrawFn) -> FoundInput:
    parts = draw(st.lists(_name, min_size=1, max_size=3))
    rel = "/".join(parts)
    kind = draw(st.sampled_from(["walked", "member", "relative", "problem"]))
    size, mtime = draw(st.integers(-1, 2**40)), draw(st.integers(-1, 2**62))
    if kind == "walked":  # its root, then rel
        return FoundInput("/root/" + rel, rel, size=size, mtime_ns=mtime)
    if kind == "member":  # a zip member: extracted elsewhere, rel below the archive
        return FoundInput("/cache/abc/" + parts[-1], "a.zip/" + rel, size=size, mtime_ns=mtime)
    if kind == "relative":  # a file given by a relative path: the path is its rel
        return FoundInput(rel, rel, size=size, mtime_ns=mtime)
    return FoundInput("/root/" + rel, rel, draw(st.sampled_from(["broken symbolic link", "loop"])))


@given(st.lists(found_inputs(), max_size=20), st.data())
def test_a_found_list_gives_back_what_it_was_given(items: list[FoundInput], data: st.DataObject) -> None:
    found = FoundList(items)
    assert len(found) == len(items)
    assert list(found) == items
    assert found.paths() == [f.path_str for f in items]
    for i, f in enumerate(items):
        assert found[i] == f and found[i - len(items)] == f
        assert found.rel_of(i) == f.rel
        assert found.stat_of(i) == (f.size, f.mtime_ns)
        assert found.usable(i) == (not f.problem)
    keep = data.draw(st.sets(st.sampled_from([f.path_str for f in items]))) if items else set()
    assert list(found.where(keep.__contains__)) == [f for f in items if f.path_str in keep]
    lo, hi = data.draw(st.integers(0, len(items))), data.draw(st.integers(0, len(items)))
    assert list(found[lo:hi]) == items[lo:hi]


@given(st.lists(found_inputs(), max_size=30), st.integers(1, 6))
def test_parts_hold_every_input_once_and_never_cut_a_folder(items: list[FoundInput], size: int) -> None:
    found = FoundList(items)
    parts = list(split_parts(found, size))
    flat = [f for p in parts for f in p]
    assert sorted(flat, key=lambda f: f.path_str) == sorted(items, key=lambda f: f.path_str)
    folder_part: dict[str, int] = {}
    for n, p in enumerate(parts):
        for f in p:
            folder = f.path_str.rsplit("/", 1)[0] if "/" in f.path_str else ""
            assert folder_part.setdefault(folder, n) == n  # a folder in one part only


def test_the_walk_fills_it_as_a_list_would_be(tmp_path: Path) -> None:
    for rel in ["b/2.jpg", "a.jpg", "b/c/3.jpg", "b/1.jpg", "ÿ/é.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * len(rel))
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere")
    found = find_inputs([tmp_path])
    assert isinstance(found, FoundList)
    assert [f.rel for f in found] == ["a.jpg", "b/1.jpg", "b/2.jpg", "b/c/3.jpg", "gone.jpg", "ÿ/é.jpg"]
    bad = found[4]
    assert bad.problem.startswith("broken symbolic link") and not found.usable(4)
    good = found[1]
    st_ = (tmp_path / "b/1.jpg").stat()
    assert (good.size, good.mtime_ns) == (st_.st_size, st_.st_mtime_ns)
    assert good.path == tmp_path / "b/1.jpg"
