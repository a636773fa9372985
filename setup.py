"""Ship the C++/CUDA sources inside the wheel as exodus_lightning/_extensions/exodus/*, and the
default config that every subcommand reads (exodus_lightning/default_config.yaml).

Everything else is in pyproject.toml (a [tool.setuptools.package-data] table there would replace
the package_data below, not add to it). Nothing is compiled at install time: the extension builds
on first use (or by `python -m exodus_lightning.ops.build`).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["exodus_lightning", "exodus_lightning.*"])
    + ["exodus_lightning._extensions"],
    package_dir={"exodus_lightning._extensions": "extensions"},
    package_data={
        "exodus_lightning": ["default_config.yaml"],
        "exodus_lightning._extensions": [
            "exodus/*.h",
            "exodus/*.cuh",
            "exodus/*.cpp",
            "exodus/*.cu",
        ],
    },
)
