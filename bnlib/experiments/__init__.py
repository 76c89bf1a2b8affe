"""The book's experiments, one module per chapter's topic, apart from the reusable library.

Each module holds its chapter's configurations (full and short setting), the function that runs
them, and ``findings(results) -> dict``: the numbers and verdict words the chapter glues in one
call. Verdicts are decided here, in tested code, never in a chapter's cells.
"""
