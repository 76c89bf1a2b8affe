"""Variants of normalisation for chapter 04: ghost batch norm, the invariance measurements of Ba
et al. (2016, Table 1), and the batch-size experiment (after Wu & He 2018).

* :class:`GhostBatchNorm2d` computes batch-norm statistics over groups of ``ghost_batch_size``
  images inside each mini-batch, so one optimiser batch of 32 can be normalised as if it had been
  spread over 32 / k devices of k images each (Wu & He's "images per GPU", Hoffer et al.'s
  "ghost batches"). With ``ghost_batch_size`` equal to the batch it is ``torch.nn.BatchNorm2d``;
  with ``rmax``/``dmax`` it batch-renormalises each group (Ioffe 2017), as
  :class:`bnlib.nn.BatchRenorm2d` does for a whole batch.
* :func:`invariance_differences` measures, for BN, weight norm, LN and RMSNorm after a linear
  layer, how much the output changes when the weights or the data are re-scaled or re-centred
  (:data:`TRANSFORMATIONS`); :func:`invariance_table` turns that into the table of Ba et al.,
  and :data:`BA_2016_TABLE` holds the published verdicts to compare with.
* :func:`batch_size_configs`, :func:`batch_size_experiment` and :func:`summarise`: test error
  against the number of images the normalisation averages over, at a fixed optimiser batch.

The other layers the chapter uses (LayerNorm, GroupNorm, InstanceNorm2d, BatchRenorm2d,
RMSNorm) are in :mod:`bnlib.nn`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnlib import nn as bnlib_nn

if TYPE_CHECKING:
    from bnlib.training import RunConfig

__all__ = [
    "BATCH_SIZE_FULL",
    "BATCH_SIZE_QUICK",
    "BA_2016_TABLE",
    "BN_GHOST",
    "BN_SMALL",
    "BRN_GHOST",
    "GN",
    "METHODS",
    "TRANSFORMATIONS",
    "batch_size_configs",
    "batch_size_experiment",
    "GhostBatchNorm2d",
    "invariance_differences",
    "invariance_markdown",
    "invariance_table",
    "normalised_linear",
    "summarise",
]


def _per_channel(t: Tensor) -> Tensor:
    """(C,) -> (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return t.view(1, -1, 1, 1)


# --------------------------------------------------------------------------- ghost batches


class GhostBatchNorm2d(nn.Module):
    """Batch norm (optionally batch renorm) whose statistics run over groups of ``ghost_batch_size``
    images of the batch, for (N, C, H, W) inputs.

    Each consecutive group of k = ``ghost_batch_size`` images (the last may be smaller) is
    normalised with its own per-channel mean ``mu_B`` and biased variance ``var_B``, exactly as
    ``torch.nn.BatchNorm2d`` would normalise it alone; the gradient flows only within a group.
    With ``rmax > 1`` or ``dmax > 0`` each group is batch-renormalised instead (Ioffe 2017, as
    :class:`bnlib.nn.BatchRenorm2d`): with ``sigma_B = sqrt(var_B + eps)`` and the running
    ``sigma = sqrt(running_var + eps)``::

        r = clip(sigma_B / sigma, 1 / rmax, rmax)             (no gradient)
        d = clip((mu_B - running_mean) / sigma, -dmax, dmax)  (no gradient)
        y = weight * ((x - mu_B) / sigma_B * r + d) + bias

    The paper starts from ``rmax = 1, dmax = 0`` (batch norm) and relaxes them: ``warmup_steps``
    does that linearly over the first training steps (counted by ``num_batches_tracked``);
    ``rmax`` and ``dmax`` stay plain attributes a schedule of one's own may set.

    Running statistics (PyTorch's convention: unbiased variance, ``running = (1 - momentum) *
    running + momentum * batch``) move once per forward pass, towards the average of the groups'
    means and unbiased variances; eval mode uses them. ``ghost_batch_size >= N`` with the default
    ``rmax = 1, dmax = 0`` is ``torch.nn.BatchNorm2d``. Parameters and buffers as in BatchNorm2d.

    Args:
        num_features: channels C.
        ghost_batch_size: images per normalisation group (k).
        eps, momentum, affine: as in ``torch.nn.BatchNorm2d`` (momentum a number).
        rmax: largest allowed ``sigma_B / sigma`` (>= 1; 1: no renormalisation of the scale).
        dmax: largest allowed ``|mu_B - mu| / sigma`` (>= 0; 0: no renormalisation of the shift).
        warmup_steps: steps over which the limits grow from (1, 0) to (rmax, dmax); 0: none.

    Each group goes through torch's batch-norm kernel (``F.batch_norm``) for speed; chapter 02
    and :mod:`bnlib.nn` write that kernel out.
    """

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        *,
        rmax: float = 1.0,
        dmax: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(ghost_batch_size, numbers.Integral) or ghost_batch_size < 1:
            raise ValueError(f"ghost_batch_size must be a positive integer, got {ghost_batch_size!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {warmup_steps}")
        self.num_features = num_features
        self.ghost_batch_size = int(ghost_batch_size)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.rmax = rmax
        self.dmax = dmax
        self.warmup_steps = warmup_steps
        self._check_limits()
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _check_limits(self) -> None:
        if not self.rmax >= 1:
            raise ValueError(f"rmax must be at least 1 (r is clipped to [1/rmax, rmax]), got {self.rmax}")
        if not self.dmax >= 0:
            raise ValueError(f"dmax must be at least 0 (d is clipped to [-dmax, dmax]), got {self.dmax}")

    def extra_repr(self) -> str:
        text = (f"{self.num_features}, ghost_batch_size={self.ghost_batch_size}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}")
        if self.rmax != 1 or self.dmax != 0:
            text += f", rmax={self.rmax}, dmax={self.dmax}, warmup_steps={self.warmup_steps}"
        return text

    def current_limits(self) -> tuple[float, float]:
        """``(rmax, dmax)`` in force now: relaxed linearly from (1, 0) over ``warmup_steps``."""
        self._check_limits()
        if self.warmup_steps == 0:
            return float(self.rmax), float(self.dmax)
        progress = min(1.0, int(self.num_batches_tracked) / self.warmup_steps)
        return 1.0 + (self.rmax - 1.0) * progress, self.dmax * progress

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels "
                f"(shape {tuple(x.shape)}); build it with num_features={x.shape[1]}"
            )
        if self.training:
            return self._train_forward(x)
        scale = torch.rsqrt(self.running_var + self.eps)
        y = (x - _per_channel(self.running_mean)) * _per_channel(scale)
        if self.affine:
            y = y * _per_channel(self.weight) + _per_channel(self.bias)
        return y

    def _train_forward(self, x: Tensor) -> Tensor:
        rmax, dmax = self.current_limits()
        renorm = rmax != 1.0 or dmax != 0.0
        sigma = torch.sqrt(self.running_var + self.eps)
        outputs, means, unbiased_vars = [], [], []
        for ghost in torch.split(x, self.ghost_batch_size, dim=0):
            m = ghost.numel() // ghost.shape[1]  # values per channel in this ghost batch
            if m < 2:
                raise ValueError(
                    f"a ghost batch of shape {tuple(ghost.shape)} has one value per channel: its "
                    "variance is undefined; use larger batches or a larger ghost_batch_size"
                )
            # with momentum 1, F.batch_norm overwrites `mean` and `unbiased` with this ghost
            # batch's mean and unbiased variance
            mean = torch.zeros(self.num_features, dtype=x.dtype, device=x.device)
            unbiased = torch.ones(self.num_features, dtype=x.dtype, device=x.device)
            if renorm:
                x_hat = F.batch_norm(ghost, mean, unbiased, None, None, True, 1.0, self.eps)
                with torch.no_grad():  # r and d are constants for the gradient (stop-gradient)
                    sigma_b = torch.sqrt(unbiased * ((m - 1) / m) + self.eps)  # biased variance
                    r = (sigma_b / sigma).clamp(1.0 / rmax, rmax)
                    d = ((mean - self.running_mean) / sigma).clamp(-dmax, dmax)
                y = x_hat * _per_channel(r) + _per_channel(d)
                if self.affine:
                    y = y * _per_channel(self.weight) + _per_channel(self.bias)
            else:  # r = 1, d = 0: plain batch norm of this ghost batch, affine step included
                y = F.batch_norm(ghost, mean, unbiased, self.weight, self.bias, True, 1.0, self.eps)
            outputs.append(y)
            means.append(mean)
            unbiased_vars.append(unbiased)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(torch.stack(means).mean(0), self.momentum)
            self.running_var.lerp_(torch.stack(unbiased_vars).mean(0), self.momentum)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


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
                raise ValueError(f"unknown transformation {name!r}: use one of {list(TRANSFORMATIONS)}")
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
    when the relative difference measured by :func:`invariance_differences` is below ``tolerance``."""
    differences = invariance_differences() if differences is None else differences
    methods = list(dict.fromkeys(m for m, _ in differences))
    names = list(dict.fromkeys(t for _, t in differences))
    return {m: tuple(differences[(m, t)] < tolerance for t in names) for m in methods}


def invariance_markdown(differences: dict[tuple[str, str], float], tolerance: float = 1e-8) -> str:
    """A Markdown table: one row per method, one column per transformation, each cell
    "invariant" or "no" with the measured relative difference in brackets."""
    methods = list(dict.fromkeys(m for m, _ in differences))
    names = list(dict.fromkeys(t for _, t in differences))
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m in methods:
        cells = []
        for t in names:
            value = differences[(m, t)]
            verdict = "**invariant**" if value < tolerance else "no"
            cells.append(f"{verdict} ({value:.0e})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the batch-size experiment

#: Methods of the batch-size experiment, as they appear in its rows.
BN_GHOST, GN, BRN_GHOST, BN_SMALL = "batch norm", "group norm", "batch renorm", "batch norm, real batch of k"


#: The chapter's full setting (the published numbers) and short setting (``BNBOOK_QUICK=1``) of
#: :func:`batch_size_configs`; k = 1 goes one step beyond Wu & He's smallest size, 2.
BATCH_SIZE_FULL = {"sizes": (32, 16, 8, 4, 2, 1), "renorm_sizes": (2, 1), "real_sizes": (4,),
                   "seeds": (0, 1), "train_subset": 3000, "epochs": 3}
BATCH_SIZE_QUICK = {"sizes": (32, 4, 1), "renorm_sizes": (1,), "real_sizes": (),
                    "seeds": (0,), "train_subset": 1000, "epochs": 2}


def batch_size_configs(
    sizes: Sequence[int] = (32, 16, 8, 4, 2),
    renorm_sizes: Sequence[int] = (4, 2),
    real_sizes: Sequence[int] = (),
    seeds: Sequence[int] = (0,),
    train_subset: int | None = 4000,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 0.01,
    momentum: float = 0.9,
    groups: int = 4,
) -> list[tuple[str, int, RunConfig]]:
    """The runs of chapter 04's batch-size experiment, as ``(method, k, config)`` triples.

    Every run trains the article's three-conv net with the same optimiser (SGD with momentum,
    ``lr``), the same mini-batch of ``batch_size`` images, the same steps and data; only the set of
    images each normalisation layer averages over changes:

    * :data:`BN_GHOST`: batch norm with statistics over ghost batches of k images, k in ``sizes``;
    * :data:`GN`: group norm (``groups`` groups; independent of k, run once, drawn as a flat line);
    * :data:`BRN_GHOST`: batch renorm (rmax 3, dmax 5, relaxed from (1, 0) over the first epoch)
      over ghost batches of k, k in ``renorm_sizes`` (``norm="ghost_batch"`` with ``rmax``, ``dmax``);
    * :data:`BN_SMALL`: plain batch norm trained with real mini-batches of k images, k in
      ``real_sizes``, with the learning rate scaled by k / batch_size (so the same epochs cost
      batch_size / k times more steps): a check that ghost batches behave as small batches do.
    """
    from bnlib.training import RunConfig

    base = RunConfig(model="three_conv_net", optimizer="momentum", lr=lr, momentum=momentum,
                     batch_size=batch_size, epochs=epochs, train_subset=train_subset)
    steps_per_epoch = -(-(train_subset or 17000) // batch_size)
    out = []
    for seed in seeds:
        for k in sizes:
            if k > batch_size or k < 1:
                raise ValueError(f"ghost batch size {k} must be in 1..{batch_size} (the mini-batch)")
            kwargs = {"norm": "ghost_batch", "norm_options": {"ghost_batch_size": k}}
            out.append((BN_GHOST, k, base.replace(model_kwargs=kwargs, seed=seed)))
        out.append((GN, 0, base.replace(model_kwargs={"norm": "group", "groups": groups}, seed=seed)))
        for k in renorm_sizes:
            options = {"ghost_batch_size": k, "rmax": 3.0, "dmax": 5.0, "warmup_steps": steps_per_epoch}
            kwargs = {"norm": "ghost_batch", "norm_options": options}
            out.append((BRN_GHOST, k, base.replace(model_kwargs=kwargs, seed=seed)))
        for k in real_sizes:
            out.append((BN_SMALL, k, base.replace(model_kwargs={"norm": "batch"}, seed=seed,
                                                  batch_size=k, lr=lr * k / batch_size)))
    return out


def batch_size_experiment(
    configs: Sequence[tuple[str, int, RunConfig]], workers: int | None = None
) -> list[dict]:
    """Run (or read from the cache) every configuration of :func:`batch_size_configs`, in parallel.

    Returns one row per run: ``method``, ``k`` (0 for group norm), ``seed``, ``test_error``
    (fraction misclassified on the 3,000 test images, eval mode, after the last epoch),
    ``train_loss`` (last epoch, nats), ``seconds``, ``cached``.
    """
    from bnlib.training import run_many

    histories = run_many([config for _, _, config in configs], workers=workers)
    return [
        {"method": method, "k": k, "seed": config.seed, "test_error": 1.0 - h.final.test_accuracy,
         "train_loss": h.final.train_loss, "seconds": h.total_seconds, "cached": h.cached}
        for (method, k, config), h in zip(configs, histories)
    ]


def summarise(rows: Sequence[dict], key: str = "test_error") -> dict[tuple[str, int], dict]:
    """``{(method, k): {"mean", "std", "min", "max", "n"}}`` of ``key`` over seeds (std: sample
    standard deviation, 0 for one seed)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["k"]), []).append(float(row[key]))
    out = {}
    for group, values in groups.items():
        t = torch.tensor(values, dtype=torch.float64)
        std = float(t.std()) if len(values) > 1 else 0.0
        out[group] = {"mean": float(t.mean()), "std": std, "min": float(t.min()),
                      "max": float(t.max()), "n": len(values)}
    return out
