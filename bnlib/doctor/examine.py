"""``examine(model, batch=None, loader=None)``: every check of the doctor on a model, once."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bnlib.doctor.buffers import check_buffers
from bnlib.doctor.frozen import check_frozen
from bnlib.doctor.layout import check_layout
from bnlib.doctor.modes import check_modes
from bnlib.doctor.momentum import check_momentum
from bnlib.doctor.report import Report
from bnlib.doctor.shapes import check_shapes
from bnlib.doctor.shift import check_shift
from bnlib.doctor.trace import trace_inputs

__all__ = ["MAX_BATCHES", "MAX_SAMPLES", "examine"]

#: Batches read from a loader (the statistics of a few hundred samples are enough to compare
#: with the running ones, and a loader can be long).
MAX_BATCHES = 8
#: Samples of those batches compared with the running statistics (one eval-mode pass; 512
#: digits through the book's network take about 70 MB).
MAX_SAMPLES = 512


def _inputs(batch) -> Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _generators(loader) -> list[torch.Generator]:
    found = [getattr(loader, "generator", None),
             getattr(getattr(loader, "sampler", None), "generator", None)]
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    found.append(getattr(inner, "generator", None))
    return [g for g in found if isinstance(g, torch.Generator)]


def _read(loader) -> list[Tensor]:
    """At most ``MAX_BATCHES`` input batches of ``loader``, restoring every random state
    that iterating it draws from (torch's global one and the loader's own generators)."""
    generators = _generators(loader)
    states = [g.get_state() for g in generators]
    with torch.random.fork_rng(devices=[]):
        batches = []
        for batch in loader:
            batches.append(_inputs(batch))
            if len(batches) == MAX_BATCHES:
                break
    for g, state in zip(generators, states):
        g.set_state(state)
    return batches


def _last_batch(loader) -> int | None:
    """Samples in ``loader``'s last batch when it is smaller than the others, else None."""
    size, dataset = getattr(loader, "batch_size", None), getattr(loader, "dataset", None)
    if loader is None or size is None or getattr(loader, "drop_last", True):
        return None
    try:
        rest = len(dataset) % size
    except TypeError:  # an iterable dataset has no length
        return None
    return rest or None


def examine(model: nn.Module, batch=None, loader=None) -> Report:
    """Look for the batch norm bugs of ``model`` as it stands, and return a ``Report``.

    Without data: layers whose train/eval mode differs from the model's, non-finite or initial
    running statistics, a Keras-like momentum, frozen layers whose statistics still move.
    With ``batch`` (inputs, or an ``(inputs, targets)`` pair) or ``loader`` (an iterable of
    those; a ``DataLoader``'s last batch is worked out from its length, without reading it):
    also batches with fewer than two values per channel, or one sample, in train mode; a
    BatchNorm1d normalising a sequence's length axis; running variances far from those of
    the data (``MAX_BATCHES`` batches of the loader at most, ``MAX_SAMPLES`` samples).
    Give the data the model is trained on, or the data it will serve.

    ``model`` is not changed: parameters, buffers and modes stay as they are (the forward
    passes run on a copy, in eval mode, without gradients) and so does every random state.
    """
    with torch.random.fork_rng(devices=[]):
        found = check_modes(model) + check_buffers(model) + check_momentum(model)
        found += check_frozen(model)
        batches = [_inputs(batch)] if batch is not None else []
        if loader is not None:
            batches += _read(loader)
        if batches:
            seen = trace_inputs(model, batches[0])
            found += check_shapes(model, seen, _last_batch(loader))
            found += check_layout(model, seen)
            reported = {f.layer for f in found if f.code in ("non-finite-statistics",
                                                             "initial-statistics")}
            images = torch.cat([b for b in batches if b.shape[1:] == batches[0].shape[1:]])
            found += check_shift(model, images[:MAX_SAMPLES], reported)
    return Report(found)
