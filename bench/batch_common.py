"""What bench_batch.py and bench_cluster.py share: the batch corpus (tests/corpus.py, generated
into bench/_corpus/batch-<files>-<side>/ if missing), their options, a fresh output folder per
timed command, the run report's check, the timings' row and the block they write into
docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT / "tests"))

from corpus import LABEL_ARGS, make_corpus  # noqa: E402


def options(doc: str | None) -> argparse.Namespace:
    """--files, --side, --repeat, --update-docs."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--side", type=int, default=640, help="image width in pixels")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return ap.parse_args()


def batch_corpus(files: int, side: int) -> tuple[Path, list[Path], float]:
    """(the corpus folder, its inputs, their megabytes), the inputs read once into the page cache."""
    src = BENCH / "_corpus" / f"batch-{files}-{side}"
    done = src.with_name(src.name + ".complete")  # outside the corpus: not an input
    if not done.exists():
        print(f"generating {files} inputs in {src} ...", file=sys.stderr)
        if src.exists():
            shutil.rmtree(src)
        make_corpus(src, files, side)
        done.write_text("")
    inputs = sorted(p for p in src.rglob("img*") if p.is_file())
    for p in inputs:
        p.read_bytes()
    return src, inputs, sum(p.stat().st_size for p in inputs) / 1e6


def convert_command(src: Path, dest: Path, *how: str) -> list[str]:
    """The installed `orthovision convert` of the corpus (its labels, no models), quiet."""
    exe = shutil.which("orthovision") or str(Path(sys.executable).with_name("orthovision"))
    return [exe, "convert", str(src), "-o", str(dest), *LABEL_ARGS, *how, "--quiet"]


def fresh(dest: Path) -> None:
    """No output folder yet, and the page cache's dirty data written (`sync`)."""
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["sync"])


def check_report(dest: Path, proc: subprocess.CompletedProcess[str], status: str, n: int) -> float:
    """The run's own seconds, from its report; stops the benchmark unless all `n` files are `status`."""
    report = json.loads((dest / "orthovision-report.json").read_text())
    if proc.returncode != 0 or report["counts"] != {status: n}:
        raise SystemExit(f"run failed (exit {proc.returncode}, {report['counts']}): {proc.stderr}")
    return float(report["seconds"])


@dataclass
class Row:
    name: str
    command: str
    files: int
    times: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)  # the run's own "seconds" (no start-up)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def update_docs(table: str, begin: str, end: str, heading: str, script: str) -> None:
    """Put `table` between the markers in docs/benchmarks.md (a new section when missing)."""
    block = f"{begin}\n{table}\n{end}"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n`{script}`.\n\n" + block + "\n"
    DOCS.write_text(text)
