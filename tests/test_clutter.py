"""What the walk leaves out as clutter (issue 25 made the check cheaper): exactly the names the
plain rule names, whatever their case or script."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orthovision_cli.batch.walk import CLUTTER_NAMES, is_clutter


def plain_rule(name: str) -> bool:
    return name.lower() in CLUTTER_NAMES or name.startswith("._") or name.startswith(".orthovision-tmp-")


def variants(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda up: "".join(c.upper() if u else c for c, u in zip(name, up, strict=True))
    )


names = st.one_of(
    st.text(min_size=1, max_size=20),
    st.sampled_from(sorted(CLUTTER_NAMES)).flatmap(variants),
    st.sampled_from(sorted(CLUTTER_NAMES)).map(lambda n: "x" + n),
    st.text(max_size=8).map(lambda t: "._" + t),
    st.text(max_size=8).map(lambda t: ".orthovision-tmp-" + t),
    st.sampled_from(["IMG_0001.JPG", "scan.tif", "thumbs.db.jpg", "Thumbs.db", "DESKTOP.INI", "\u212a.db"]),
)


@given(names)
def test_clutter_is_the_plain_rule(name: str) -> None:
    assert is_clutter(name) == plain_rule(name)


def test_examples() -> None:
    assert is_clutter("Thumbs.db") and is_clutter(".DS_Store") and is_clutter("._IMG_1.JPG")
    assert not is_clutter("IMG_0001.JPG") and not is_clutter("thumbs.db.jpg")
