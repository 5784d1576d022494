"""`orthovision conformance URL`: check any Orthovision AI IG service end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .remote_options import read_token


def register(app: typer.Typer) -> None:
    @app.command()
    def conformance(
        url: Annotated[str, typer.Argument(help="The service's FHIR base URL.")],
        token_env: Annotated[
            str | None, typer.Option(help="Environment variable holding a bearer token.")
        ] = None,
        token_file: Annotated[Path | None, typer.Option(help="File holding a bearer token.")] = None,
        image: Annotated[
            Path | None,
            typer.Option(help="Submit this image (pixels only) instead of a synthetic one."),
        ] = None,
        deadline: Annotated[float, typer.Option(help="Seconds a Task may take.")] = 60.0,
        timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = 30.0,
        post_to_base: Annotated[
            bool, typer.Option(help="POST the Bundle to [base] instead of [base]/Bundle.")
        ] = False,
        ca_bundle: Annotated[Path | None, typer.Option(help="CA certificates to trust (PEM).")] = None,
        insecure: Annotated[bool, typer.Option(help="Do not verify TLS certificates.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Run the IG workflow against a service and print a pass/fail table of checks."""
        import ssl

        from rich.console import Console
        from rich.table import Table

        from ..fhir.conformance import run_conformance

        token = read_token(token_env, token_file)
        verify: bool | ssl.SSLContext = not insecure
        if ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(ca_bundle))
        sample = None
        if image is not None:
            from ..inputs.source import SourceImage
            from ..remote.sanitize import pixels_only

            sample = pixels_only(SourceImage(path=image))
        report = run_conformance(
            url,
            token=token,
            deadline=deadline,
            timeout=timeout,
            image=sample,
            post_path="" if post_to_base else "Bundle",
            verify=verify,
        )
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2))
        else:
            table = Table(title=f"Orthovision AI IG conformance: {report.base_url}")
            table.add_column("result")
            table.add_column("check")
            table.add_column("evidence", overflow="fold")
            style = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}
            for c in report.checks:
                table.add_row(f"[{style[c.verdict]}]{c.verdict}[/]", c.name, c.evidence)
            console = Console()
            console.print(table)
            failed = sum(1 for c in report.checks if c.ok is False)
            console.print(f"{len(report.checks)} checks, {failed} failed")
        if not report.passed:
            raise typer.Exit(1)
