"""What the user says about the inputs (options, a manifest, a path template), checked once in
the main process before any work, then handed to every worker."""

from __future__ import annotations

from ..answers import radiographs_by_folder
from ..config import ConvertSettings
from ..errors import UsageError
from ..manifest import Manifest, PathTemplate, UserInput, clean_patient, user_label
from ..vocab.tags import TAGS, normalise_tag


def build_user_input(settings: ConvertSettings) -> UserInput:
    labels = {}
    for name, value in settings.labels.items():
        tag = normalise_tag(name) or name
        if tag not in TAGS:
            raise UsageError(f"unknown label {name!r}")
        if value:
            labels[tag] = value
    user = UserInput(dict(settings.patient), labels)
    clean_patient(user.options_patient)  # fail fast on a bad option
    for tag, value in labels.items():
        user_label(tag, value, "option")
    if settings.manifest is not None:
        user.manifest = Manifest(settings.manifest)
    if settings.path_template:
        user.template = PathTemplate(settings.path_template)
    user.options_radiographs = settings.radiographs or ""
    user.answered_radiographs = radiographs_by_folder(settings.output)
    return user
