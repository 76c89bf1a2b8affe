"""The data shipped with bnlib: installed as the package ``bnlib._data`` (see setup.py).

Read it through :func:`bnlib.data.load_hindi_digits`; README.md beside this file gives the
source, licence (CC BY 4.0) and checksums.
"""

__all__: list[str] = []
