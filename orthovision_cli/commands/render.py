"""Terminal output for batch commands: a live progress bar on a terminal, plain log lines for
cron (no terminal), and a final summary table."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..display import shown

if TYPE_CHECKING:
    from ..batch.runner import FileResult, RunSummary

STAGE_TEXT = {"analysed": "analysing", "written": "writing", "upgrading": "upgrading the state (once)"}


class Reporter:
    def __init__(self, *, quiet: bool = False, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = Console(highlight=False, soft_wrap=True)
        self.interactive = self.err.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.tasks: dict[str, Any] = {}
        self.stage = ""
        self.last_log = 0.0
        self.dry_run = False  # set by `convert --dry-run`: the summary then points to no file

    def event(self, kind: str, done: int, total: int, result: FileResult | None) -> None:
        if kind == "found":
            if not self.quiet:
                # Files, not images: a NOTICE.md is found too (and then ignored, said in the table).
                self.err.print(f"{total} file(s) found, {done} new or changed")
            return
        if kind == "warning" and result is not None:
            self._line(f"[yellow]warning[/]: {safe_line(result.rel)}: {safe_line(result.message)}")
            return
        # Failures print even with --quiet: a cron job then mails only when something is wrong.
        if result is not None and result.status in ("failed", "review"):
            self._line(
                f"[red]{result.status}[/]: {safe_line(result.rel)}: {result.reason}: {safe_line(result.message)}"
            )
        elif result is not None and self.verbose:
            self._line(f"{result.status}: {safe_line(result.rel)} -> {safe_line(', '.join(result.outputs))}")
        if self.quiet:
            return
        if self.interactive:
            if self.stage != kind:
                if self.progress is None:
                    self.progress = Progress(
                        TextColumn("{task.description}"),
                        BarColumn(),
                        MofNCompleteColumn(),
                        TimeRemainingColumn(),
                        console=self.err,
                        transient=True,
                    )
                    self.progress.start()
                # A bar per stage, kept: a big run alternates analysing and writing part by
                # part (issue 25), each bar counting the whole run's inputs.
                if kind not in self.tasks:
                    self.tasks[kind] = self.progress.add_task(STAGE_TEXT.get(kind, kind), total=total)
                self.task = self.tasks[kind]
                self.stage = kind
            assert self.progress is not None
            self.progress.update(self.task, completed=done)
        else:
            now = time.monotonic()
            if done == total or now - self.last_log > 10:
                self.last_log = now
                print(
                    f"orthovision: {STAGE_TEXT.get(kind, kind)} {done}/{total}", file=sys.stderr, flush=True
                )

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            self.err.print(text)

    def error(self, text: str) -> None:
        self.close()
        self.err.print(f"[bold red]error:[/] {safe_line(text)}")

    def close(self) -> None:
        # The task belongs to the bar being stopped: a later run (the hot folder's next batch)
        # starts a new bar with its own tasks, so forget both.
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.task = None
        self.tasks = {}
        self.stage = ""

    def summary(self, summary: RunSummary) -> None:
        self.close()
        if summary.fatal:
            self.err.print(f"[bold red]stopped:[/] {safe_line(summary.fatal)}")
            if summary.counts.get("converted", 0):
                self.err.print("Fix the cause and run the same command again: finished files are kept.")
            else:
                self.err.print("No file was finished. Fix the cause and run the same command again.")
        if self.quiet:
            if summary.exit_code != 0 and not summary.fatal:
                where = f"; report: {safe_line(str(summary.report_path))}" if summary.report_path else ""
                self.err.print(f"exit code {int(summary.exit_code)} ({_meaning(summary)}){where}")
            return
        table = Table(title=f"orthovision: {safe_line(str(summary.output))}", show_edge=False)
        table.add_column("status")
        table.add_column("files", justify="right")
        for status, n in sorted(summary.counts.items()):
            table.add_row(status, str(n))
        self.err.print(table)
        if summary.report_path is not None:
            self.err.print(f"report: {safe_line(str(summary.report_path))}")
        for line in summary.notices:
            self.err.print(f"[yellow]warning[/]: {escape(line)}")
        for visit in summary.visits:
            if visit["missing"]:
                from ..dicom.records import incomplete_line  # the core: only when it is said

                self.err.print(f"[yellow]incomplete[/]: {escape(incomplete_line(visit))}")
        if summary.superseded:
            self.err.print(
                f"{summary.superseded} earlier instance(s) superseded (their plan changed): moved to "
                f"{safe_line(str(summary.output))}/.orthovision/superseded/, listed in the report; "
                "`orthovision send` never sends them"
            )
        review = summary.counts.get("review", 0)
        if self.dry_run:  # nothing written: no report, no review list to point to
            self.err.print("dry run: nothing written (--json prints each file's plan)")
            if review:
                self.err.print(f"{review} file(s) would need a person's decision")
        elif review:
            out = safe_line(str(summary.output))
            self.err.print(
                f"{review} file(s) need a person's decision: {out}/orthovision-review.csv "
                f"(decide them with: orthovision review {out})"
            )
        self.err.print(f"exit code {int(summary.exit_code)} ({_meaning(summary)}) in {summary.seconds:.1f} s")


def safe_line(text: str) -> str:
    """A file name or message for one terminal line: its control characters and raw bytes
    escaped (`display.shown`), and its [...] never read as rich markup."""
    return escape(shown(text))


def _meaning(summary: RunSummary) -> str:
    review = summary.counts.get("review", 0)
    failed = summary.counts.get("failed", 0)
    if summary.exit_code == 4 and review:
        also = f", {failed} failed" if failed else ""
        return f"not all converted: {review} need review{also}"
    return summary.exit_code.name.lower().replace("_", " ")
