"""Help that reads like DCMTK's: options grouped by concern, metavars that say what to type
(`PATH`, `N`, `SIZE`, nothing for a flag), help texts shown verbatim (no lost `[cluster]`), and
`--debug` taken after the sub-command too (`take_debug`, in `cli.main`).

Applied once to the Click commands Typer builds (`OrthovisionGroup`), so every command module
keeps declaring its options the plain Typer way and no option is forgotten: an option whose
name is not in `PANELS` lands in the last panel, and `tests/test_help.py` fails on it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from typer.core import TyperGroup

# Panels in the order they are shown; each option name (the Python parameter) in one of them.
PANELS: dict[str, tuple[str, ...]] = {
    "Input": (
        "config",
        "include",
        "exclude",
        "manifest",
        "manifest_strict",
        "path_template",
        "labelled",
        "unlabelled",
        "from_decisions",
        "url",
        "image",
        "zip_max_size",
        "zip_max_members",
        "zip_max_ratio",
    ),
    "Output": (
        "output",
        "name_template",
        "on_collision",
        "uid_secret",
        "force",
        "dry_run",
        "no_fsync",
        "to",
        "fileset_id",
        "fmt",
        "base",
    ),
    "Patient and study": (
        "patient_id",
        "patient_name",
        "birth_date",
        "sex",
        "study_date",
        "accession",
        "study_description",
        "referring_physician",
        "institution",
        "operator",
        "physician_of_record",
        "timezone",
        "timepoint",
        "treatment_start",
        "visit_gap",
        "records",
        "require_complete",
    ),
    "Labels (what you know)": (
        "modality",
        "radiographs",
        "protocol",
        "body_part",
        "laterality",
        "orientation",
        "orientation_for",
        "seed",
    ),
    "Classification": ("models", "no_models", "min_confidence", "on_uncertain", "confirm", "rules", "tag"),
    "Remote classification service": (
        "remote",
        "remote_tags",
        "token_env",
        "token_file",
        "header",
        "ca_bundle",
        "insecure",
        "timeout",
        "deadline",
        "concurrency",
        "post_to_base",
        "client_cert",
        "client_key",
        "basic_auth_env",
    ),
    "Delivery to a PACS": (
        "send",
        "calling_ae",
        "send_associations",
        "send_token_env",
        "send_token_file",
        "send_basic_auth_env",
        "associations",
        "batch",
        "batch_mb",
        "retries",
        "verify",
        "reject_superseded",
    ),
    "Review page and server": (
        "port",
        "host",
        "allow_host",
        "no_browser",
        "who",
        "apply",
        "base_path",
        "workers",
        "queue_size",
        "max_upload_mb",
        "retention",
        "max_connections",
    ),
    "Run control": (
        "jobs",
        "cluster",
        "max_pixels",
        "max_memory",
        "once",
        "interval",
        "settle",
        "quiet",
        "verbose",
        "as_json",
        "debug",
        "version",
        "help",
    ),
}
OTHER = "Other options"
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}

# What to type, by option name where the type alone would not say it.
_METAVARS = {
    "output": "DIR",
    "models": "DIR",
    "base": "DIR",
    "config": "FILE",
    "manifest": "FILE",
    "token_file": "FILE",
    "send_token_file": "FILE",
    "ca_bundle": "FILE",
    "client_cert": "FILE",
    "client_key": "FILE",
    "uid_secret": "FILE",
    "image": "FILE",
    "max_memory": "SIZE",
    "zip_max_size": "SIZE",
    "include": "GLOB",
    "exclude": "GLOB",
    "remote": "URL",
    "send": "URL",
    "to": "URL",
    "cluster": "ADDRESS",
    "radiographs": "film|digital",
    "header": "'NAME: VALUE'",
    "token_env": "VAR",
    "send_token_env": "VAR",
    "basic_auth_env": "VAR",
    "send_basic_auth_env": "VAR",
    "birth_date": "DATE",
    "study_date": "DATE",
    "treatment_start": "DATE",
    "visit_gap": "MINUTES",
    "records": "FILE",
    "patient_name": "FAMILY^GIVEN",
    "name_template": "TEMPLATE",
    "path_template": "TEMPLATE",
    "calling_ae": "AE",
    "allow_host": "NAME",
}
# Defaults computed at run time (the option's own default is None), said in words.
_DEFAULT_WORDS = {"max_pixels": "600000000", "min_confidence": "0.8"}
# "(default: X)" written inside a help text: shown as the default instead, once.
_DEFAULT_IN_HELP = re.compile(r"\s*\(default:? ([^)]*)\)")
_PANEL_ORDER = {panel: i for i, panel in enumerate(PANELS)}

_SECONDS = ("timeout", "deadline", "interval", "settle", "retention")


def _metavar(param: Any) -> str | None:
    name = param.name or ""
    if name in _METAVARS:
        return _METAVARS[name]
    if any(name.startswith(s) or name.endswith(s) for s in _SECONDS):
        return "SECONDS"
    desc = getattr(param, "type_descriptor", None)
    if desc is None or desc.is_choice:
        return None  # the choices say it
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    if desc.is_list:
        annotation = getattr(annotation, "__args__", (str,))[0]
    return {int: "N", float: "NUMBER"}.get(annotation, "TEXT")


def take_debug(argv: list[str]) -> list[str]:
    """`--debug` anywhere before `--` (after the sub-command too, as users type it)."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[:end]:
        return argv
    os.environ["ORTHOVISION_DEBUG"] = "1"  # inherited by worker processes
    return [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)]


def polish(command: Any) -> None:
    """Panels, metavars and verbatim help for one command's parameters."""
    from rich.markup import escape

    if command.help:
        # Paragraphs reflowed: a docstring's line breaks are not the terminal's.
        paragraphs = command.help.split("\n\n")
        command.help = escape("\n\n".join(" ".join(p.split()) for p in paragraphs))
    for param in command.params:
        if param.param_type_name == "option":
            name = param.name or ""
            param.rich_help_panel = _PANEL_OF.get(name, OTHER)
            help_text = getattr(param, "help", None) or ""
            said = _DEFAULT_IN_HELP.search(help_text)
            if said:
                param.help = _DEFAULT_IN_HELP.sub("", help_text, count=1)
                param.show_default = said.group(1)
            elif name in _DEFAULT_WORDS and getattr(param, "default", None) is None:
                param.show_default = _DEFAULT_WORDS[name]
    # Panels in the order of PANELS (a stable sort: arguments keep their order among themselves).
    command.params.sort(
        key=lambda p: (
            -1
            if p.param_type_name == "argument"
            else _PANEL_ORDER.get(getattr(p, "rich_help_panel", OTHER), len(_PANEL_ORDER))
        )
    )
    make_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""
            option.rich_help_panel = "Run control"
        return option

    command.get_help_option = help_option  # Typer makes --help when it renders
    for param in command.params:
        help_text = getattr(param, "help", None)
        if help_text:
            param.help = escape(help_text)  # "[cluster]" is text here
        name = param.name or ""
        if param.param_type_name == "argument":
            param.metavar = "PATH" if param.nargs != 1 else name.upper()
            param.display_type_rich = lambda ctx: None  # the metavar says it
        elif getattr(param, "is_flag", False):
            param.metavar = ""  # a flag takes no value: show none
        elif param.metavar is None:
            param.metavar = _metavar(param)


class OrthovisionGroup(TyperGroup):
    """The `orthovision` group: every sub-command polished once, when Typer builds it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        polish(self)  # the root's own options (--version, --debug)
        for command in self.commands.values():
            polish(command)


def panel_sizes(command: Any) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for param in command.params:
        if param.param_type_name == "option":
            panel = getattr(param, "rich_help_panel", None) or "Options"
            sizes[panel] = sizes.get(panel, 0) + 1
    return sizes


def _default_text(param: Any) -> str:
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):
        return shown
    default = getattr(param, "default", None)
    if getattr(param, "is_flag", False) or default in (None, (), [], False):
        return ""
    return str(default)


def reference_markdown(group: Any) -> str:
    """Every command's options as Markdown tables, panel by panel, from the same Click
    commands `--help` prints (docs/cli-reference.md is this text; a test keeps it so)."""
    lines = [
        "# Command-line reference",
        "",
        "Generated from the commands' own help (`python -m orthovision_cli.cli reference >"
        " docs/cli-reference.md`); [cli.md](cli.md) explains what the options do together.",
    ]
    for name, command in group.commands.items():
        lines += [
            "",
            f"## orthovision {name}",
            "",
            " ".join((command.help or "").split()).replace("\\[", "["),
            "",
        ]
        args = [p for p in command.params if p.param_type_name == "argument"]
        if args:
            lines.append("Arguments: " + ", ".join(f"`{p.metavar or p.name}`" for p in args) + ".")
        panels: dict[str, list[Any]] = {}
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(param)
        for panel, params in panels.items():
            lines += [
                "",
                f"**{panel}**",
                "",
                "| option | value | default | meaning |",
                "| --- | --- | --- | --- |",
            ]
            for p in params:
                opts = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
                value = "" if getattr(p, "is_flag", False) else (p.metavar or "")
                text = " ".join((getattr(p, "help", None) or "").split()).replace("\\[", "[")
                text = text.replace("|", "\\|").replace("*", "\\*")
                cells = (opts, value.replace("|", "\\|"), _default_text(p).replace("|", "\\|"), text)
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
