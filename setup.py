"""Ship the C++/CUDA sources inside the wheel as exodus_lightning/_extensions/exodus/*.

Everything else is in pyproject.toml. Nothing is compiled at install time: the extension builds
on first use (or by `python -m exodus_lightning.ops.build`).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["exodus_lightning", "exodus_lightning.*"])
    + ["exodus_lightning._extensions"],
    package_dir={"exodus_lightning._extensions": "extensions"},
    package_data={"exodus_lightning._extensions": [
        "exodus/*.h", "exodus/*.cuh", "exodus/*.cpp", "exodus/*.cu"]},
)
