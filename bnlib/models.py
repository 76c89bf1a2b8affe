"""The networks the book trains: the article's three-convolution nets and a small sigmoid MLP.

* :func:`three_conv_net` is the network of the Hindi-digits article: three 3x3 convolutions of 16
  channels (each optionally followed by a normalisation layer) with ReLUs, a 2x2 max-pool and one
  linear layer, for 32x32 grayscale images and 10 classes.
* :func:`sigmoid_mlp` is the MLP of Ioffe & Szegedy's Figure 1: three hidden layers of 100
  sigmoid units, optionally with a normalisation between each linear layer and its sigmoid.

Both take a ``norm`` name from :data:`NORMS`; :data:`MODELS` maps a model name to its builder so a
run configuration (:class:`bnlib.training.RunConfig`) can name a model and its keyword arguments.

Where the tracked weights are: the article recorded ``weight[3, 4, 1, 0]`` and
``weight[3, 8, 1, 0]`` of the last convolution (filter 3, input channels 4 and 8, row 1,
column 0). The last convolution sits at index 4 of the ``nn.Sequential`` without normalisation
and at index 6 with one (:func:`last_conv_index`); :data:`ARTICLE_TRACKED_WEIGHTS` names the two
weights in the form :class:`bnlib.training.RunConfig` takes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = [
    "ARTICLE_TRACKED_WEIGHTS",
    "MODELS",
    "NORMS",
    "build_model",
    "count_parameters",
    "last_conv_index",
    "make_norm",
    "sigmoid_mlp",
    "three_conv_net",
]

#: Normalisation names understood by ``norm=`` (None: no normalisation layer).
NORMS = ("batch", "bnlib_batch", "group", "noisy_batch", "ghost_batch", "batch_renorm")

#: The article's two sample weights: (parameter, index) with ``last_conv`` standing for the last
#: ``nn.Conv2d`` of the model (see :func:`bnlib.training.resolve_parameter`).
ARTICLE_TRACKED_WEIGHTS = (("last_conv.weight", (3, 4, 1, 0)), ("last_conv.weight", (3, 8, 1, 0)))


def make_norm(norm: str, num_features: int, groups: int = 4) -> nn.Module:
    """A normalisation layer over ``num_features`` channels, for (N, C) or (N, C, H, W) inputs.

    Args:
        norm: ``"batch"`` (``torch.nn.BatchNorm2d``, or ``BatchNorm1d`` for (N, C) - chosen by
            the caller through :func:`three_conv_net` / :func:`sigmoid_mlp`), ``"bnlib_batch"``
            (``bnlib.nn`` from scratch), ``"group"`` (``torch.nn.GroupNorm`` with ``groups``
            groups), ``"noisy_batch"`` (``bnlib.nn.NoisyBatchNorm``).
        num_features: channels C.
        groups: number of groups for ``"group"``; must divide ``num_features``.
    """
    return _make_norm(norm, num_features, groups, spatial=True)


def _make_norm(norm: str, num_features: int, groups: int, spatial: bool, options=()) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(num_features) if spatial else nn.BatchNorm1d(num_features)
    if norm == "bnlib_batch":
        from bnlib import nn as bnlib_nn  # written separately; imported only when asked for

        return bnlib_nn.BatchNorm2d(num_features) if spatial else bnlib_nn.BatchNorm1d(num_features)
    if norm == "group":
        if groups < 1 or num_features % groups:
            raise ValueError(
                f"groups={groups} does not divide {num_features} channels: choose a divisor "
                f"of {num_features} (for example 1, 2, 4, 8 or 16 for 16 channels)."
            )
        return nn.GroupNorm(groups, num_features)
    if norm == "noisy_batch":
        from bnlib.nn import NoisyBatchNorm  # works on (N, C) and (N, C, H, W)

        return NoisyBatchNorm(num_features)
    if norm == "ghost_batch" and spatial:
        from bnlib.nn import GhostBatchNorm2d  # options: ghost_batch_size, rmax, dmax, ...

        return GhostBatchNorm2d(num_features, **dict(options))
    if norm == "batch_renorm" and spatial:
        from bnlib import nn as bnlib_nn  # options: rmax, dmax

        return bnlib_nn.BatchRenorm2d(num_features, **dict(options))
    raise ValueError(f"unknown norm {norm!r}: use one of {', '.join(map(repr, NORMS))} or None")


def three_conv_net(
    batch_norm: bool = False, *, norm: str | None = None, groups: int = 4, norm_options=()
) -> nn.Sequential:
    """The article's network for 32x32 grayscale digits, input (N, 1, 32, 32) -> logits (N, 10).

    ``Conv2d(1,16,3,padding=1) [norm] ReLU, Conv2d(16,16,3,p=1) [norm] ReLU,
    Conv2d(16,16,3,p=1) [norm] ReLU, MaxPool2d(2), Flatten, Linear(16*16*16=4096, 10)``.

    Args:
        batch_norm: the article's switch: ``True`` puts ``torch.nn.BatchNorm2d(16)`` after each
            convolution, before its ReLU (the same as ``norm="batch"``).
        norm: any normalisation of :data:`NORMS` in the same places instead (``None``: none).
        groups: groups for ``norm="group"``.
        norm_options: keyword arguments (dict or ``(name, value)`` pairs) for ``"ghost_batch"``
            (:class:`bnlib.nn.GhostBatchNorm2d`: ``ghost_batch_size``, ``rmax``, ``dmax``,
            ``warmup_steps``) and ``"batch_renorm"`` (:class:`bnlib.nn.BatchRenorm2d`: ``rmax``,
            ``dmax``).
    """
    if batch_norm and norm not in (None, "batch"):
        raise ValueError(f"batch_norm=True and norm={norm!r} disagree: pass only one of them")
    norm = "batch" if batch_norm else norm
    layers: list[nn.Module] = []
    in_channels = 1
    for _ in range(3):
        layers.append(nn.Conv2d(in_channels, 16, kernel_size=3, padding=1))
        if norm is not None:
            layers.append(_make_norm(norm, 16, groups, spatial=True, options=norm_options))
        layers.append(nn.ReLU())
        in_channels = 16
    layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16 * 16, 10)]
    return nn.Sequential(*layers)


def last_conv_index(model: nn.Sequential) -> int:
    """Index of the last ``nn.Conv2d`` in ``model`` (4 for the article's net without BN, 6 with)."""
    indices = [i for i, layer in enumerate(model) if isinstance(layer, nn.Conv2d)]
    if not indices:
        raise ValueError("the model has no nn.Conv2d layer")
    return indices[-1]


def sigmoid_mlp(
    norm: str | None = None,
    hidden: tuple[int, ...] = (100, 100, 100),
    in_features: int = 1024,
    classes: int = 10,
    groups: int = 4,
) -> nn.Sequential:
    """The MLP of Ioffe & Szegedy's Figure 1: input (N, 1, 32, 32) or (N, 1024) -> logits (N, 10).

    ``Flatten, [Linear(in, h) [norm] Sigmoid] for h in hidden, Linear(hidden[-1], classes)``.
    With ``norm`` set, the normalisation sits between each hidden Linear and its sigmoid, as in
    the paper (``"batch"`` gives ``torch.nn.BatchNorm1d``).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if norm is not None:
            layers.append(_make_norm(norm, h, groups, spatial=False))
        layers.append(nn.Sigmoid())
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


#: Model builders by name, for run configurations: ``MODELS[name](**kwargs)``.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "three_conv_net": three_conv_net,
    "sigmoid_mlp": sigmoid_mlp,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """``MODELS[name](**kwargs)``, with a clear error for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (BN's gamma and beta count; running statistics do not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- chapter 6: benefits
# Relatives of the article's network for testing BN's claimed benefits: deeper plain stacks,
# dropout before or after BN, and scaled initial weights. Registered in MODELS below.

#: Where :func:`dropout_conv_net` puts its dropout layers.
DROPOUT_PLACEMENTS = ("blocks", "head")


def plain_conv_stack(depth: int, batch_norm: bool = False, width: int = 16) -> nn.Sequential:
    """A plain (non-residual) stack of ``depth`` 3x3 convolutions, (N, 1, 32, 32) -> (N, 10).

    ``Conv2d(1, width) [BN] ReLU, MaxPool2d(2)``, then ``depth - 1`` times
    ``Conv2d(width, width) [BN] ReLU`` at 16x16, then ``MaxPool2d(2), Flatten,
    Linear(width*8*8, 10)``. The early pooling keeps a deep stack affordable on a CPU.
    """
    if depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth}")
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Conv2d(1 if i == 0 else width, width, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        if i == 0:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 8 * 8, 10)]
    return nn.Sequential(*layers)


def dropout_conv_net(batch_norm: bool = False, dropout: float = 0.0,
                     placement: str = "blocks") -> nn.Sequential:
    """The article's network with dropout (probability ``dropout`` of zeroing a unit).

    ``placement="blocks"``: ``nn.Dropout`` after the ReLU of the first and second convolution
    blocks, so its output feeds the next convolution and (with ``batch_norm``) that block's BN:
    dropout *before* BN. ``placement="head"``: one ``nn.Dropout`` after the flatten, before the
    linear layer: after every BN. ``dropout=0`` gives :func:`three_conv_net` exactly.
    """
    if placement not in DROPOUT_PLACEMENTS:
        raise ValueError(f"placement must be one of {DROPOUT_PLACEMENTS}, got {placement!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers = list(three_conv_net(batch_norm))
    if dropout == 0.0:
        return nn.Sequential(*layers)
    relus = [i for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]
    flatten = next(i for i, layer in enumerate(layers) if isinstance(layer, nn.Flatten))
    at = relus[:2] if placement == "blocks" else [flatten]
    for i in reversed(at):
        layers.insert(i + 1, nn.Dropout(dropout))
    return nn.Sequential(*layers)


def scaled_init_net(batch_norm: bool = False, init_scale: float = 1.0) -> nn.Sequential:
    """:func:`three_conv_net` with every convolution's and the linear layer's initial weights
    (PyTorch's default initialisation) multiplied by ``init_scale``; biases and BN untouched."""
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    net = three_conv_net(batch_norm)
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.weight.detach().mul_(init_scale)  # in place, outside autograd
    return net


MODELS.update({
    "plain_conv_stack": plain_conv_stack,
    "dropout_conv_net": dropout_conv_net,
    "scaled_init_net": scaled_init_net,
})
__all__ += ["DROPOUT_PLACEMENTS", "dropout_conv_net", "plain_conv_stack", "scaled_init_net"]


# --------------------------------------------------------------------------- chapter 8: bugs
# Two small networks cheap enough to train many times, once per bug and seed.


class SwapAxes(nn.Module):
    """Swaps axes ``first`` and ``second`` of its input (``x.transpose(first, second)``)."""

    def __init__(self, first: int = 1, second: int = 2) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return x.transpose(self.first, self.second)

    def extra_repr(self) -> str:
        return f"{self.first}, {self.second}"


def small_bn_net(width: int = 8, hidden: int = 32) -> nn.Sequential:
    """A small BN network for (N, 1, 32, 32) digits -> (N, 10) logits, with both kinds of BN:
    ``Conv2d(1, w, 3, p=1) BatchNorm2d ReLU MaxPool2d(2) Conv2d(w, 2w, 3, p=1) BatchNorm2d ReLU
    MaxPool2d(2) Flatten Linear(2w*8*8, hidden) BatchNorm1d ReLU Linear(hidden, 10)``; the
    convolutional part is ``net[:8]``. About a tenth of :func:`three_conv_net`'s arithmetic."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * 64, hidden),
        nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 10))


#: Where :func:`row_sequence_net` puts the sequence axis for its BatchNorm1d.
ROW_LAYOUTS = ("channels_first", "as_produced")


def row_sequence_net(layout: str = "channels_first", features: int = 32) -> nn.Sequential:
    """A digit read as a sequence of its 32 rows: ``Flatten(1, 2)`` gives (N, L=32, 32 pixels),
    ``Linear(32, features)`` embeds each row (N, L, C), then ``BatchNorm1d(32)``, ReLU,
    ``Flatten``, ``Linear(32 * features, 10)``.

    ``layout="channels_first"``: the BN is wrapped in :class:`SwapAxes`, so it sees (N, C, L)
    and normalises each feature over the batch and the rows, as BatchNorm1d means to;
    ``"as_produced"``: it gets (N, L, C) and normalises each row position over the batch and
    the features, silently because L == C == 32 (``features`` must then be 32)."""
    if layout not in ROW_LAYOUTS:
        raise ValueError(f"layout must be one of {ROW_LAYOUTS}, got {layout!r}")
    if layout == "as_produced":
        norm: list[nn.Module] = [nn.BatchNorm1d(32)]
    else:
        norm = [SwapAxes(1, 2), nn.BatchNorm1d(features), SwapAxes(1, 2)]
    return nn.Sequential(nn.Flatten(1, 2), nn.Linear(32, features), *norm, nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * features, 10))


MODELS.update({"small_bn_net": small_bn_net, "row_sequence_net": row_sequence_net})
__all__ += ["ROW_LAYOUTS", "SwapAxes", "row_sequence_net", "small_bn_net"]
