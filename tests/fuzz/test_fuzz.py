"""The bounded fuzz run of CI (issue 16): 300 seeded mutations of real images, converted as one
batch with two workers and classified, in well under three minutes. Whatever the mutation, the
batch ends, with one documented reason per bad file, no traceback, nothing half-written, and a
bounded memory. The long run (2000+ files) is bench/fuzz.py; its figures are in
docs/robustness.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import containers
import harness
import mutators

FILES = 300
PEAK_RSS = 2 << 30  # the process tree, main process and workers together


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "in"
    mutators.make_corpus(folder, FILES, seed=16)
    return folder


def test_the_corpus_is_seeded_and_covers_every_mutation(tmp_path: Path) -> None:
    a = mutators.make_corpus(tmp_path / "a", 60, seed=3)
    b = mutators.make_corpus(tmp_path / "b", 60, seed=3)
    assert a == b
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in a)
    used = {m for names in a.values() for m in names}
    assert used == set(mutators.MUTATIONS)


@pytest.mark.slow
def test_fuzzed_batch_never_hangs_crashes_or_leaks(corpus: Path, tmp_path: Path) -> None:
    run = harness.convert(corpus, tmp_path / "out", jobs=2, timeout=150)
    assert run.problems == [], "\n".join(run.problems[:20])
    assert run.exit_code == 4  # some converted (mutations that left the image valid), most failed
    assert sum(run.counts.values()) == FILES
    assert run.peak_rss < PEAK_RSS, f"peak RSS {run.peak_rss / 2**20:.0f} MiB"


@pytest.mark.slow
def test_fuzzed_classify_reports_every_file(corpus: Path) -> None:
    run = harness.classify(corpus, timeout=150)
    assert run.problems == [], "\n".join(run.problems[:20])
    assert sum(run.counts.values()) == FILES
    assert run.peak_rss < PEAK_RSS


# ---------------------------------------------------------------- containers, names, manifests


def test_the_container_corpus_is_seeded_and_covers_every_kind(tmp_path: Path) -> None:
    a = containers.make_containers(tmp_path / "a", 12, seed=5)
    b = containers.make_containers(tmp_path / "b", 12, seed=5)
    assert a == b
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in a)
    assert {k for k in a.values() if k.startswith("zip:")} == {f"zip:{k}" for k in containers.ZIPS}
    assert {"name", "exif", "mpf"} <= set(a.values())


@pytest.mark.slow
def test_fuzzed_containers_names_and_segments_lose_nothing(tmp_path: Path) -> None:
    """24 seeded inputs (every zip mutation twice, hostile names, lying EXIF and MPF), one batch:
    every input in the report exactly once, nothing extracted left, every output dciodvfy-clean."""
    made = containers.make_containers(tmp_path / "in", 24, seed=23)
    run = harness.convert(
        tmp_path / "in", tmp_path / "out", jobs=2, timeout=150, extra=containers.ZIP_OPTIONS
    )
    run.problems.extend(harness.dciodvfy_errors(tmp_path / "out"))
    assert run.problems == [], "\n".join(run.problems[:20])
    assert run.exit_code == 4
    assert run.counts["failed:archive-refused"] >= 2  # the bombs and the crowds
    assert sum(1 for k in made.values() if k in ("exif", "mpf")) == 4


@pytest.mark.slow
def test_fuzzed_manifests_are_refused_in_one_line_or_converted_clean(tmp_path: Path) -> None:
    exits = []
    for src, manifest in containers.make_manifests(tmp_path, 4, seed=23):
        run = harness.convert_manifest(src, manifest, src.parent / "out", timeout=60)
        assert run.problems == [], (manifest.read_text(), run.problems)
        exits.append(run.exit_code)
    assert set(exits) <= {0, 2, 4}
