"""Package list for setuptools; the rest of the metadata is in pyproject.toml.

`client/` (the JS client and the demo page) is the npm package's root and stays at the top of the
repository; it ships inside the wheel as `streaming/client/`, so every install serves it."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["avatar*", "models*", "streaming*"]) + ["streaming.client"],
    package_dir={"streaming.client": "client"},
)
