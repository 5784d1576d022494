"""Build glue that pyproject.toml cannot say: models/ (the default model pack, kept at the top
of the repository) is installed as the data-only package `orthovision_cli._models`, with each
of its folders but tools/ (build scripts, not part of the pack)."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

MODELS = Path(__file__).resolve().parent / "models"
sub_packages = {
    f"orthovision_cli._models.{d.name}": f"models/{d.name}"
    for d in sorted(MODELS.iterdir())
    if d.is_dir() and d.name not in ("tools", "__pycache__")
}
model_packages = {"orthovision_cli._models": "models", **sub_packages}

setup(
    # Namespace discovery also takes data-only folders such as review/static.
    packages=[
        *find_namespace_packages(include=["orthovision_cli", "orthovision_cli.*"], exclude=["*__pycache__*"]),
        *model_packages,
    ],
    package_dir=model_packages,
)
