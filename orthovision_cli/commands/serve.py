"""`orthovision serve`: host the classifiers as an Orthovision AI IG service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ExitCode
from .remote_options import read_token


def load_classifier(models: Path | None, rules: bool) -> Any:
    """The model pack's classifier, or the built-in colour rules (`--rules`, or when this
    installation has no local classifier)."""
    from ..server.rules import ColourRuleClassifier

    if rules:
        return ColourRuleClassifier()
    try:
        from ..labels.local import load_pack  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        if models is not None:
            raise typer.BadParameter(
                "this installation has no local classifier", param_hint="--models"
            ) from None
        typer.echo("warning: no local classifier; serving the built-in colour rules", err=True)
        return ColourRuleClassifier()
    return load_pack(models)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        models: Annotated[
            Path | None, typer.Option(help="Model pack directory (default: the bundled pack).")
        ] = None,
        rules: Annotated[
            bool, typer.Option(help="Serve the built-in colour rules instead of a model pack.")
        ] = False,
        host: Annotated[
            str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
        allow_host: Annotated[
            list[str] | None,
            typer.Option(
                help="A host name clients use to reach the service (repeatable; IP addresses and "
                "localhost always work; '*': any name). Other names are refused (DNS rebinding).",
            ),
        ] = None,
        base_path: Annotated[str, typer.Option(help="Serve under this path, e.g. /fhir.")] = "",
        workers: Annotated[int, typer.Option(min=1, help="Classifier threads.")] = 2,
        queue_size: Annotated[
            int, typer.Option(min=0, help="Tasks waiting beyond the running ones; more get 429.")
        ] = 32,
        max_upload_mb: Annotated[
            float, typer.Option(min=0.01, help="Largest request body accepted (MiB).")
        ] = 32.0,
        retention: Annotated[
            float, typer.Option(min=0.0, help="Seconds results are kept after a Task ends.")
        ] = 3600.0,
        tag: Annotated[list[str] | None, typer.Option(help="Advertise only these tags (repeatable).")] = None,
        token_env: Annotated[
            str | None, typer.Option(help="Require the bearer token held in this env variable.")
        ] = None,
        token_file: Annotated[
            Path | None, typer.Option(help="Require the bearer token stored in this file.")
        ] = None,
        max_connections: Annotated[
            int,
            typer.Option(min=1, help="Open connections at once; past it the longest idle close."),
        ] = 256,
    ) -> None:
        """Run a reference Orthovision AI FHIR IG service (install the 'server' extra)."""
        try:
            from ..server.app import create_app
            from ..server.runner import serve_forever
        except ModuleNotFoundError as exc:
            typer.echo(f"error: {exc.name} is missing: pip install 'orthovision-cli[server]'", err=True)
            raise typer.Exit(ExitCode.USAGE) from None
        from ..server.config import ServerConfig

        token = read_token(token_env, token_file)
        classifier = load_classifier(models, rules)
        cfg = ServerConfig(
            host=host,
            port=port,
            workers=workers,
            queue_size=queue_size,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            token=token,
            retention=retention,
            tags=tuple(tag or ()),
            max_connections=max_connections,
            allow_hosts=tuple(allow_host or ()),
        )
        try:
            asgi = create_app(classifier, cfg, base_path=base_path.rstrip("/"))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--tag") from None
        if host not in ("127.0.0.1", "localhost", "::1") and token is None:
            typer.echo("warning: serving beyond this machine without a bearer token", err=True)
        if host not in ("127.0.0.1", "localhost", "::1") and not allow_host:
            typer.echo(
                "note: clients must use an IP address or localhost; a host name needs --allow-host NAME",
                err=True,
            )
        name = getattr(classifier, "name", "model")
        typer.echo(
            f"orthovision serve: http://{host}:{port}{base_path} ({name}, {workers} workers)",
            err=True,
        )
        serve_forever(asgi, host, port, log_level="info")
