"""The state rows of files committed together are written in one transaction (issue 25): nested
use adds to the outer one, and a commit that fails is rolled back and raised, leaving the state
usable for the next rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthovision_cli.batch.state import StateStore
from orthovision_cli.errors import OutputError


def put(state: StateStore, name: str) -> None:
    state.put(
        path=f"/in/{name}", rel=name, size=1, mtime_ns=1, content_hash=name, settings="k", status="done"
    )


def test_rows_together_in_one_transaction_nested_or_not(tmp_path: Path) -> None:
    with StateStore(tmp_path) as state:
        state.start_run([])
        with state.together():
            put(state, "a")
            with state.together():  # inside another: no transaction of its own
                put(state, "b")
            assert state.db.in_transaction
        assert not state.db.in_transaction
    with StateStore(tmp_path) as state:  # committed: read back by a new connection
        assert state.get("/in/a") is not None and state.get("/in/b") is not None


def test_a_failed_commit_is_rolled_back_and_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with StateStore(tmp_path) as state:
        state.start_run([])
        real = state._write

        def write(sql: str, params: tuple) -> object:
            if sql == "COMMIT":
                raise OutputError("cannot update the state: database or disk is full")
            return real(sql, params)

        monkeypatch.setattr(state, "_write", write)
        with pytest.raises(OutputError, match="disk is full"), state.together():
            put(state, "lost")
        assert not state.db.in_transaction and state.get("/in/lost") is None
        monkeypatch.undo()
        with state.together():  # the next rows go in as before
            put(state, "next")
        assert state.get("/in/next") is not None
