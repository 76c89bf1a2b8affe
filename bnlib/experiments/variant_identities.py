"""Chapter 04's comparisons of the normalisation variants as operations, which need no
training: the identities between them, each :mod:`bnlib.nn` layer against its ``torch.nn``
namesake, and the invariances of Ba et al. (2016, Table 1).

* :func:`axes_identities` and :func:`namesake_differences`: the identities and the namesakes, as
  measured differences; :func:`~bnlib.exercises.module_differences` compares any two modules in training mode.
* :func:`invariance_differences` measures, for BN, weight norm (Salimans & Kingma 2016), LN and
  RMSNorm after a linear layer, how much the output changes when the weights or the data are
  re-scaled or re-centred (:data:`TRANSFORMATIONS`); :func:`invariance_table` turns that into
  the table of Ba et al., and :data:`BA_2016_TABLE` holds the published verdicts to compare with.

The batch-size experiment of chapter 04, and the findings of the whole chapter, are in
:mod:`bnlib.experiments.variants`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bnlib import nn as bnlib_nn
from bnlib.exercises import module_differences

__all__ = [
    "BA_2016_TABLE",
    "METHODS",
    "TRANSFORMATIONS",
    "axes_identities",
    "differences_markdown",
    "invariance_differences",
    "invariance_markdown",
    "invariance_table",
    "namesake_differences",
    "normalised_linear",
]


# --------------------------------------------------------------------------- identities


def axes_identities(
    shape: tuple[int, int, int, int] = (4, 6, 5, 5), seed: int = 0
) -> dict[str, float]:
    """Largest absolute differences of the identities between the variants, on one float64 input.

    ``"group norm, 1 group = layer norm over (C, H, W)"`` and ``"group norm, C groups = instance
    norm"`` compare :mod:`bnlib.reference`'s NumPy functions (unit ``gamma``, zero ``beta``);
    the ``torch.nn`` versions of the same two identities are compared too.
    """
    from bnlib import reference

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1
    n, c, h, w = shape
    xn = x.numpy()
    ones, zeros = torch.ones(c).numpy(), torch.zeros(c).numpy()
    gn1, _ = reference.group_norm_forward(xn, 1, ones, zeros)
    ones_chw, zeros_chw = torch.ones(c, h, w).numpy(), torch.zeros(c, h, w).numpy()
    ln, _ = reference.layer_norm_forward(xn, ones_chw, zeros_chw)
    gnc, _ = reference.group_norm_forward(xn, c, ones, zeros)
    inn, _ = reference.instance_norm_forward(xn, ones, zeros)
    with torch.no_grad():
        t_gn1 = nn.GroupNorm(1, c, affine=False).double()(x)
        t_ln = nn.LayerNorm((c, h, w), elementwise_affine=False).double()(x)
        t_gnc = nn.GroupNorm(c, c, affine=False).double()(x)
        t_in = nn.InstanceNorm2d(c).double()(x)
    return {
        "group norm, 1 group = layer norm over (C, H, W) (bnlib.reference)":
            float(abs(gn1 - ln).max()),
        "group norm, C groups = instance norm (bnlib.reference)": float(abs(gnc - inn).max()),
        "torch.nn.GroupNorm(1, C) = torch.nn.LayerNorm((C, H, W))":
            float((t_gn1 - t_ln).abs().max()),
        "torch.nn.GroupNorm(C, C) = torch.nn.InstanceNorm2d(C)": float((t_gnc - t_in).abs().max()),
    }


def namesake_differences(seed: int = 0) -> dict[str, float]:
    """``bnlib.nn`` layer against its ``torch.nn`` namesake, float64, after random parameters:
    :func:`module_differences` for each (name -> largest absolute difference)."""
    g = torch.Generator().manual_seed(seed)
    x4 = torch.randn(4, 6, 5, 5, generator=g, dtype=torch.float64) * 3 + 1
    x2 = torch.randn(8, 6, generator=g, dtype=torch.float64) * 3 + 1
    pairs = {
        "BatchNorm1d": (bnlib_nn.BatchNorm1d(6), nn.BatchNorm1d(6), x2),
        "BatchNorm2d": (bnlib_nn.BatchNorm2d(6), nn.BatchNorm2d(6), x4),
        "LayerNorm": (bnlib_nn.LayerNorm((6, 5, 5)), nn.LayerNorm((6, 5, 5)), x4),
        "GroupNorm": (bnlib_nn.GroupNorm(3, 6), nn.GroupNorm(3, 6), x4),
        "InstanceNorm2d": (bnlib_nn.InstanceNorm2d(6, affine=True),
                           nn.InstanceNorm2d(6, affine=True), x4),
        "RMSNorm": (bnlib_nn.RMSNorm((6, 5, 5)), nn.RMSNorm((6, 5, 5)), x4),
    }
    out = {}
    for name, (ours, theirs, x) in pairs.items():
        ours, theirs = ours.double(), theirs.double()
        with torch.no_grad():
            for p in theirs.parameters():
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5)
        out[name] = module_differences(ours, theirs, x, seed)
    return out


# --------------------------------------------------------------------------- invariance (Ba et al.)

#: The normalisations compared, each applied to the pre-activations ``a = x @ W.T`` of a linear
#: layer (no bias): one row of ``x`` per training case, one row of ``W`` per hidden unit.
METHODS = ("batch norm", "weight norm", "layer norm", "RMSNorm")

_EPS = 1e-12  # small enough that the invariances hold to ~1e-10 in float64


def normalised_linear(method: str, weight: Tensor, x: Tensor) -> Tensor:
    """The normalised pre-activations of a linear layer, (N, H), without gain or bias.

    Args:
        method: one of :data:`METHODS`: ``"batch norm"`` (per unit over the N cases,
            ``bnlib.nn.BatchNorm1d`` in training mode), ``"layer norm"`` (per case over the H
            units, ``bnlib.nn.LayerNorm``), ``"RMSNorm"`` (per case, ``bnlib.nn.RMSNorm``),
            ``"weight norm"`` (each unit's weight vector divided by its length, Salimans & Kingma).
        weight: (H, D) weights; x: (N, D) inputs.
    """
    a = x @ weight.T
    hidden = weight.shape[0]
    if method == "batch norm":
        layer = bnlib_nn.BatchNorm1d(hidden, eps=_EPS, affine=False, track_running_stats=False)
        return layer.to(a.dtype)(a)
    if method == "layer norm":
        return bnlib_nn.LayerNorm(hidden, eps=_EPS, elementwise_affine=False)(a)
    if method == "RMSNorm":
        return bnlib_nn.RMSNorm(hidden, eps=_EPS, elementwise_affine=False)(a)
    if method == "weight norm":
        return a / torch.linalg.vector_norm(weight, dim=1)
    raise ValueError(f"unknown method {method!r}: use one of {', '.join(map(repr, METHODS))}")


def _rescale_matrix(w: Tensor, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    return w * (0.5 + 3 * torch.rand((), generator=g, dtype=w.dtype)), x


def _recenter_matrix(w: Tensor, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    # the same vector added to every unit's weight vector: W -> W + 1 gamma^T
    return w + torch.randn(w.shape[1], generator=g, dtype=w.dtype), x


def _rescale_vector(w: Tensor, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    w = w.clone()
    w[0] *= 0.5 + 3 * torch.rand((), generator=g, dtype=w.dtype)  # one unit's weights only
    return w, x


def _rescale_dataset(w: Tensor, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    return w, x * (0.5 + 3 * torch.rand((), generator=g, dtype=x.dtype))


def _recenter_dataset(w: Tensor, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    # the same vector added to every training case: x_n -> x_n + delta
    return w, x + torch.randn(x.shape[1], generator=g, dtype=x.dtype)


def _rescale_case(w: Tensor, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    x = x.clone()
    x[0] *= 0.5 + 3 * torch.rand((), generator=g, dtype=x.dtype)  # one training case only
    return w, x


#: Ba et al.'s six transformations: name -> ``f(W, x, generator) -> (W', x')``. Scale factors are
#: positive (a negative one would flip signs), drawn from [0.5, 3.5).
TRANSFORMATIONS: dict[str, Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]] = {
    "weight matrix re-scaling": _rescale_matrix,
    "weight matrix re-centering": _recenter_matrix,
    "weight vector re-scaling": _rescale_vector,
    "dataset re-scaling": _rescale_dataset,
    "dataset re-centering": _recenter_dataset,
    "single training case re-scaling": _rescale_case,
}

#: The published verdicts (True: invariant): Ba et al. 2016, Table 1, for batch, weight and layer
#: norm; Zhang & Sennrich 2019, Table 1, for RMSNorm. Rows :data:`METHODS`, columns
#: :data:`TRANSFORMATIONS` in order. Kept to compare the measured table with, not to fill it.
BA_2016_TABLE: dict[str, tuple[bool, ...]] = {
    "batch norm": (True, False, True, True, True, False),
    "weight norm": (True, False, True, False, False, False),
    "layer norm": (True, True, False, True, False, True),
    "RMSNorm": (True, False, False, True, False, True),
}


def invariance_differences(
    methods: Sequence[str] = METHODS,
    transformations: Sequence[str] = tuple(TRANSFORMATIONS),
    cases: int = 16,
    inputs: int = 10,
    hidden: int = 8,
    seed: int = 0,
) -> dict[tuple[str, str], float]:
    """Largest change of the normalised output under each transformation, relative to its scale.

    For each method and transformation: draw ``W`` (``hidden`` x ``inputs``) and ``x`` (``cases``
    x ``inputs``) in float64 (inputs with a non-zero mean, as real data have), apply the
    transformation, and return ``max|h(W', x') - h(W, x)| / max|h(W, x)|``: about 1e-12 where the
    method is invariant, of order 0.1-1 where it is not.

    Returns:
        ``{(method, transformation): relative difference}``.
    """
    out = {}
    for method in methods:
        for t, name in enumerate(transformations):
            if name not in TRANSFORMATIONS:
                raise ValueError(
                    f"unknown transformation {name!r}: use one of {list(TRANSFORMATIONS)}"
                )
            g = torch.Generator().manual_seed(seed * 1000 + t)
            w = torch.randn(hidden, inputs, generator=g, dtype=torch.float64)
            x = torch.randn(cases, inputs, generator=g, dtype=torch.float64) + 1.0
            w2, x2 = TRANSFORMATIONS[name](w, x, g)
            with torch.no_grad():
                before = normalised_linear(method, w, x)
                after = normalised_linear(method, w2, x2)
            out[(method, name)] = float((after - before).abs().max() / before.abs().max())
    return out


def invariance_table(
    differences: dict[tuple[str, str], float] | None = None, tolerance: float = 1e-8
) -> dict[str, tuple[bool, ...]]:
    """``{method: (invariant?, ...)}`` in the layout of :data:`BA_2016_TABLE`: a cell is invariant
    when the relative difference measured by :func:`invariance_differences` is below
    ``tolerance``."""
    differences = invariance_differences() if differences is None else differences
    methods = list(dict.fromkeys(m for m, _ in differences))
    names = list(dict.fromkeys(t for _, t in differences))
    return {m: tuple(differences[(m, t)] < tolerance for t in names) for m in methods}


def invariance_markdown(differences: dict[tuple[str, str], float], tolerance: float = 1e-8) -> str:
    """A Markdown table: one row per method, one column per transformation, each cell
    "invariant" or "no" with the measured relative difference in brackets."""
    methods = list(dict.fromkeys(m for m, _ in differences))
    names = list(dict.fromkeys(t for _, t in differences))
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m in methods:
        cells = []
        for t in names:
            value = differences[(m, t)]
            verdict = "**invariant**" if value < tolerance else "no"
            cells.append(f"{verdict} ({value:.0e})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences_markdown(differences: dict[str, float], heading: str, code: bool = False) -> str:
    """A two-column Markdown table: ``heading`` | "largest absolute difference", one row per
    entry (names in backticks when ``code``)."""
    quote = "`" if code else ""
    rows = [f"| {quote}{name}{quote} | {value:.1e} |" for name, value in differences.items()]
    return "\n".join([f"| {heading} | largest absolute difference |", "|---|---|", *rows])
