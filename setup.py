"""What goes into the wheel: every ``bnlib*`` package, and the repository's ``data/`` folder
installed as the package ``bnlib._data``.

The digits live once, in ``data/``; this mapping puts them inside the installed package (with
their README: source, licence, checksums), and editable installs map ``bnlib._data`` to the same
folder. pyproject.toml's ``[tool.setuptools.packages.find]`` cannot add a package from outside
``bnlib/``, hence these few lines. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["bnlib", "bnlib.*"]), "bnlib._data"],
    package_dir={"bnlib._data": "data"},
    package_data={
        "bnlib": ["py.typed"],
        "bnlib._data": ["*"],  # every file in data/: the digits, their README, other data
    },
)
