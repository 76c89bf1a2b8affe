"""The result store: a run's cache key, its JSON file, atomic writes, and a ledger of outcomes.

A run's key (:func:`cache_key`) hashes its configuration, its probes' keys, the torch thread
count, the engine that runs the step (compiled or eager: they round differently), the code of
the bnlib modules it executes (:mod:`bnlib.training.code`), the data checksums and torch's
version. Entries are JSON files under ``bnlib.settings.cache_dir() / "runs"``, written
atomically. :func:`run` computes the key once and serialises a history once.

Every run through :func:`run` (or :func:`bnlib.training.run_many`) appends one line to the
ledger ``cache_dir() / "outcomes.log"`` saying whether it was trained or found cached;
:func:`outcome_counts` counts them (the book build prints the counts).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bnlib import data as bnlib_data
from bnlib import settings
from bnlib.probes import StepProbe
from bnlib.training import code
from bnlib.training.config import EpochRecord, History, RunConfig
from bnlib.training.engine import choose_engine
from bnlib.training.files import atomic_write_text
from bnlib.training.loop import train

__all__ = ["LEDGER", "cache_key", "cache_path", "lookup",
           "outcome_counts", "read_cached", "run", "train_and_store"]

#: The ledger's file name inside the cache folder.
LEDGER = "outcomes.log"


def cache_key(config: RunConfig, probes: Sequence[StepProbe] = (), threads: int | None = 1) -> str:
    """Hex digest of everything that fixes the history: equal keys mean the run would compute
    the same history (see the module docstring)."""
    payload = {
        "config": config.to_dict(),
        "probes": [{"name": p.name, "key": p.key()} for p in probes],
        "threads": threads if threads is not None else torch.get_num_threads(),
        "engine": choose_engine(config, probes),
        "code": code.code_version(code.run_modules(config, probes)),
        "data": bnlib_data.ARRAY_SHA256,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(config: RunConfig, probes: Sequence[StepProbe] = (), threads: int | None = 1) -> Path:
    """Where :func:`run` keeps this run's history."""
    return settings.cache_dir() / "runs" / f"{cache_key(config, probes, threads)}.json"


def read_cached(path: Path) -> History | None:
    """The history stored at ``path`` (marked ``cached``), or None if absent or unreadable."""
    try:
        history = History.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or unreadable: recompute (and overwrite)
    history.cached = True
    return history


def lookup(path: Path) -> History | None:
    """:func:`read_cached`, noting a hit in the ledger."""
    history = read_cached(path)
    if history is not None:
        _note("cached", path)
    return history


def _note(outcome: str, path: Path | None) -> None:
    """Append ``outcome`` (``trained``/``cached``) and the run's key to the ledger."""
    ledger = settings.cache_dir() / LEDGER
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a") as handle:  # one short line per write: appends do not interleave
        handle.write(f"{outcome} {path.stem if path is not None else '-'}\n")


def outcome_counts(folder: Path | None = None, since: int = 0) -> Counter:
    """How many runs the ledger in ``folder`` (default the cache folder) records as ``trained``
    and as ``cached``, from byte offset ``since`` on (a build notes the ledger's size first)."""
    ledger = (folder or settings.cache_dir()) / LEDGER
    if not ledger.is_file():
        return Counter()
    with open(ledger, "rb") as handle:
        handle.seek(since)
        return Counter(line.split()[0].decode() for line in handle if line.strip())


def train_and_store(
    config: RunConfig,
    probes: Sequence[StepProbe],
    path: Path | None,
    progress: bool | None = None,
    threads: int | None = 1,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[History, str]:
    """Train, write the history to ``path`` (None: nowhere) and note it in the ledger; returns
    the history and its JSON text (serialised once, for the file and for a parent process)."""
    history = train(config, probes, progress=progress, threads=threads, on_epoch=on_epoch)
    text = history.to_json()
    if path is not None:
        atomic_write_text(path, text)
    _note("trained", path)
    return history, text


def run(
    config: RunConfig,
    probes: Sequence[StepProbe] = (),
    cache: bool = True,
    progress: bool | None = None,
    threads: int | None = 1,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> History:
    """:func:`bnlib.training.train` through the result store: a run already computed with the
    same configuration, probe keys, engine, bnlib code and data is read back instead of trained
    again. ``cache=False`` trains and neither reads nor writes the store."""
    path = cache_path(config, probes, threads) if cache else None
    history = lookup(path) if path is not None else None
    if history is not None:
        return history
    return train_and_store(config, probes, path, progress, threads, on_epoch)[0]
