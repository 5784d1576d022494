"""A decision holds exactly the tags a person set or confirmed (issue 21): the decisions file,
merging a later answer about one tag, old files without the column, and the server's reading of
a POST (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import pytest

from orthovision_cli.decisions import ALL_TAGS, Decision, DecisionBook, clean, load
from orthovision_cli.errors import UsageError
from orthovision_cli.review.items import ReviewItem
from orthovision_cli.review.server import ReviewApp, make_server

SHA = "a" * 64


def test_partial_decision_keeps_only_its_tags(tmp_path: Path) -> None:
    d = clean(Decision("/x.jpg", SHA, modality="dx", protocol="EV01", decided_tags="modality"))
    assert d.tags == ("modality",) and d.modality == "DX" and d.protocol == ""
    assert [lab.tag for lab in d.labels()] == ["modality"] and not d.complete
    with pytest.raises(UsageError, match="no such tag"):
        clean(Decision("/x.jpg", SHA, decided_tags="colour"))
    # An unknown a person chose is a decision: unknown, certain, the person's.
    unknown = clean(Decision("/x.jpg", SHA, decided_tags="orientation"))
    (lab,) = list(unknown.labels())
    assert lab.tag == "orientation" and lab.value is None and lab.source == "person"


def test_later_answers_merge_for_the_same_content(tmp_path: Path) -> None:
    book = DecisionBook(tmp_path)
    book.save([clean(Decision("/x.jpg", SHA, modality="CR", decided_tags="modality"))])
    (saved,) = book.save([clean(Decision("/x.jpg", SHA, body_part="HAND", decided_tags="body_part"))])
    assert saved.tags == ("modality", "body_part") and saved.modality == "CR" and saved.body_part == "HAND"
    row = load(tmp_path)["/x.jpg"]
    assert row.decided_tags == "modality body_part" and row.orientation == ""
    # A decision about other content (the file changed) starts afresh.
    (fresh,) = book.save([clean(Decision("/x.jpg", "b" * 64, protocol="EV01", decided_tags="protocol"))])
    assert fresh.tags == ("protocol",) and fresh.modality == ""


def test_a_file_without_the_column_decided_all_four(tmp_path: Path) -> None:
    (tmp_path / "orthovision-decisions.csv").write_text(
        f"input,sha256,modality,protocol,body_part,orientation,decided_by,decided_at\n"
        f"/x.jpg,{SHA},XC,EV01,HEAD,,anna,2026-11-30T05:23:57Z\n",
        encoding="utf-8",
    )
    d = load(tmp_path)["/x.jpg"]
    assert d.decided_tags == ALL_TAGS and d.complete and d.orientation == ""


def test_server_records_only_the_tags_posted(tmp_path: Path) -> None:
    app = ReviewApp(tmp_path, who="tester")
    app.items = [ReviewItem(0, "/in/x.jpg", "x.jpg", "needs-review", "not sure enough: modality=DX", SHA)]
    httpd = make_server(app, 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = httpd.server_address[1]

    def post(body: object) -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            "/api/decide",
            json.dumps(body),
            {
                "Host": f"127.0.0.1:{port}",
                "X-Orthovision-Token": app.token,
                "Content-Type": "application/json",
            },
        )
        resp = conn.getresponse()
        data = json.loads(resp.read())
        conn.close()
        return resp.status, data

    try:
        app.reload = lambda: app.items  # type: ignore[method-assign]  # no state on disk here
        status, data = post({"decisions": [{"input": "/in/x.jpg", "modality": "cr"}]})
        assert status == 200, data
        assert data["saved"][0]["decided_tags"] == ["modality"]  # type: ignore[index]
        status, data = post({"decisions": [{"input": "/in/x.jpg"}]})
        assert status == 400 and "at least one tag" in str(data["error"])
        status, _ = post({"decisions": [{"input": "/in/x.jpg", "orientation": ""}]})
        assert status == 200
        d = load(tmp_path)["/in/x.jpg"]
        assert d.tags == ("modality", "orientation") and d.modality == "CR" and d.orientation == ""
    finally:
        httpd.shutdown()
        httpd.server_close()
