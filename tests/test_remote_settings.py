"""The `--remote` options end to end: CLI flags and a TOML `[remote_options]` table become one
checked `RemoteSettings` in `ConvertSettings`, which the remote client and the pool use as they
are. A bad value is a usage error (exit 2, one line) before any work starts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE
from typer.testing import CliRunner, Result

from orthovision_cli.batch import pool
from orthovision_cli.cli import app
from orthovision_cli.config import ConvertSettings, RemoteSettings, load_toml
from orthovision_cli.errors import ExitCode, UsageError
from orthovision_cli.manifest import UserInput
from orthovision_cli.review.apply import recall

PHOTO = SAMPLE / "photos" / "005_03.jpg"
NOWHERE = "http://127.0.0.1:9/fhir"  # never reached: every case here stops before the network


def _run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _one_usage_line(result: Result, *words: str) -> None:
    assert result.exit_code == ExitCode.USAGE, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTO, folder / PHOTO.name)
    return folder


BAD_FLAGS = [
    (["--timeout", "-1"], "--timeout"),
    (["--timeout", "0"], "--timeout"),
    (["--deadline", "-5"], "--deadline"),
    (["--concurrency", "0"], "--concurrency"),
    (["--remote-tag", "colour"], "--remote-tag"),
    (["--header", "Bad Name: x"], "--header"),
    (["--header", "no colon"], "--header"),
    (["--token-env", " "], "--token-env"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS)
def test_bad_remote_flags_stop_convert_before_any_work(
    photos: Path, tmp_path: Path, flags: list[str], named: str
) -> None:
    out = tmp_path / "out"
    result = _run("convert", str(photos), "-o", str(out), "--no-models", "--remote", NOWHERE, *flags)
    _one_usage_line(result, named)
    assert not out.exists()


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS[:5])
def test_bad_remote_flags_stop_classify(flags: list[str], named: str) -> None:
    _one_usage_line(_run("classify", str(PHOTO), "--remote", NOWHERE, *flags), named)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("timeot = 3", ["unknown key 'timeot'", "[remote_options]"]),
        ("timeout = -1", ["[remote_options] timeout", "above 0"]),
        ("timeout = inf", ["[remote_options] timeout"]),
        ('timeout = "fast"', ["[remote_options] timeout must be a number"]),
        ("deadline = 0", ["[remote_options] deadline"]),
        ("concurrency = 2.5", ["[remote_options] concurrency must be an integer"]),
        ("concurrency = 0", ["[remote_options] concurrency"]),
        ('tags = ["colour"]', ["[remote_options] tags", "colour"]),
        ("headers = { X-Key = 3 }", ["[remote_options] headers must be a table of strings"]),
        ('headers = { "X Key" = "v" }', ["[remote_options] headers", "X Key"]),
        ("verify = 1", ["[remote_options] verify must be true or false"]),
    ],
)
def test_bad_remote_options_table_is_a_usage_error(
    photos: Path, tmp_path: Path, table: str, words: list[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'inputs = ["photos"]\noutput = "out"\nno-models = true\n\n[remote_options]\n{table}\n')
    _one_usage_line(_run("convert", "--config", str(config), "--remote", NOWHERE), "c.toml", *words)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError):
        load_toml(config)


def test_remote_options_not_a_table(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("remote_options = 3\n")
    with pytest.raises(UsageError, match="remote_options must be a table"):
        load_toml(config)


def test_toml_table_is_typed_and_its_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    config = conf / "c.toml"
    config.write_text(
        "[remote_options]\n"
        'token-file = "token.txt"\n'
        'ca_bundle = "ca.pem"\n'
        'tags = "modality"\n'
        "insecure = true\n"
        "timeout = 7\n"
        "concurrency = 3\n"
        "post-to-base = true\n"
        'headers = { "X-Api-Key" = "k" }\n'
    )
    assert load_toml(config)["remote_options"] == RemoteSettings(
        tags=("modality",),
        token_file=conf / "token.txt",
        ca_bundle=conf / "ca.pem",
        verify=False,
        timeout=7,
        concurrency=3,
        post_to_base=True,
        headers={"X-Api-Key": "k"},
    )


def test_the_pool_and_the_client_take_the_settings_as_they_are(tmp_path: Path) -> None:
    from orthovision_cli.remote.classifier import RemoteClassifier
    from orthovision_cli.remote.transport import RemoteOptions

    settings = ConvertSettings(
        inputs=[tmp_path],
        output=tmp_path / "out",
        use_models=False,
        remote=NOWHERE,
        remote_options=RemoteSettings(timeout=7, deadline=9, concurrency=3, tags=("body-part",)),
    )
    executor = pool.make_executor(settings, UserInput(), 10, io_bound=True)
    assert executor is not None
    try:
        assert getattr(executor, "_max_workers", None) == 3  # --concurrency threads analyse
        (source,) = pool.context().sources
        assert isinstance(source, RemoteClassifier)
        assert source.service.options == RemoteOptions(base_url=NOWHERE, timeout=7, deadline=9, concurrency=3)
        assert source.requested == ["body_part"]
        source.close()
    finally:
        executor.shutdown()
    # Without --deadline: max(120 s, 4 x timeout), as before.
    assert RemoteSettings(timeout=40).image_deadline == 160 and RemoteSettings().image_deadline == 120


@pytest.fixture(scope="module")
def service_with_token() -> Iterator[str]:
    pytest.importorskip("starlette")
    from orthovision_cli.labels.local import load_pack
    from orthovision_cli.server.app import create_app
    from orthovision_cli.server.config import ServerConfig
    from orthovision_cli.server.runner import serve_in_thread

    with serve_in_thread(create_app(load_pack(None), ServerConfig(workers=1, token="tok-7f3a"))) as url:
        yield url


def test_toml_and_flags_reach_a_real_service_and_are_remembered(
    service_with_token: str, photos: Path, tmp_path: Path
) -> None:
    """The token file (relative to the TOML file), the tags and the timeouts come from the table,
    the deadline and concurrency from flags; the service refuses requests without the token."""
    (tmp_path / "token.txt").write_text("tok-7f3a\n")
    config = tmp_path / "c.toml"
    config.write_text(
        'inputs = ["photos"]\noutput = "out"\nno-models = true\n\n'
        '[remote_options]\ntoken-file = "token.txt"\ntags = ["modality"]\ntimeout = 20\nconcurrency = 8\n'
    )
    args = ["convert", "--config", str(config), "--remote", service_with_token, "--json"]
    result = _run(*args, "--deadline", "90", "--concurrency", "2")
    assert result.exit_code == ExitCode.OK, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)["files"]
    assert row["status"] == "converted"
    assert row["labels"]["modality"]["source"] == "remote"  # asked, with the token
    assert (row["labels"].get("body_part") or {}).get("source") != "remote"  # only modality asked
    expected = RemoteSettings(
        tags=("modality",), token_file=tmp_path / "token.txt", timeout=20, deadline=90, concurrency=2
    )
    assert recall(tmp_path / "out").remote_options == expected  # for `review --apply`
    # Without the token the same run fails each file at the service, in one line.
    (tmp_path / "token.txt").write_text("wrong\n")
    again = _run(*args, "--force", "-o", str(tmp_path / "out2"))
    assert again.exit_code == ExitCode.FATAL
    (row,) = json.loads(again.stdout)["files"]
    assert row["status"] == "failed" and row["reason"].startswith("remote"), row
