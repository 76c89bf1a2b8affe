"""Batch norm at inference time: folding it into the layer before, and exact population statistics.

In eval mode a batch norm layer is a fixed affine map per channel,
``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, so it can be folded into a
preceding convolution or linear layer (:func:`fold_batch_norm`, :func:`fold_all`).

Its running statistics are exponential averages collected while the weights were still moving.
:func:`recalibrate` ("precise BN") replaces them by the exact statistics of a data set, computed
with the trained weights. Those are the pooled mean and unbiased variance of all the values a
channel takes over the data set, not Ioffe & Szegedy's Algorithm 2 estimate m/(m-1)
E_B[sigma_B^2] (an average of per-batch variances, each around its own batch's mean).

Two more things a deployed or fine-tuned network needs: :func:`predict_in_train_mode` runs a
network in train mode batch by batch, as the classic bug (a forgotten ``model.eval()``) does;
:func:`freeze_batch_norm` replaces every batch norm layer by the fixed map it computes in eval
mode, which ``model.train()`` cannot switch back (for fine-tuning).

All accept ``torch.nn`` and ``bnlib.nn`` batch norm layers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from bnlib import nn as bnn
from bnlib.settings import torch_threads

__all__ = [
    "batch_norm_layers",
    "fold_all",
    "fold_batch_norm",
    "freeze_batch_norm",
    "is_batch_norm",
    "predict_in_train_mode",
    "recalibrate",
]

_FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, bnn._BatchNorm)


def is_batch_norm(module: nn.Module) -> bool:
    """True for a batch norm layer of torch (BatchNorm1d/2d/3d, SyncBatchNorm) or of bnlib."""
    return isinstance(module, _BATCH_NORMS)


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    """Every batch norm layer in ``model`` that keeps running statistics, in registration order."""
    return [m for m in model.modules() if is_batch_norm(m) and m.running_mean is not None]


def _bn_scale_shift(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """The eval-mode map of ``bn`` as ``y = scale * x + shift`` per channel, in float64."""
    if not is_batch_norm(bn):
        raise TypeError(
            f"expected a batch norm layer (torch.nn.BatchNorm1d/2d/3d or bnlib.nn.BatchNorm1d/2d), "
            f"got {type(bn).__name__}"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{bn} has no running statistics (track_running_stats=False): in eval mode it "
            "normalises with each batch's own statistics, which no fixed layer can reproduce"
        )
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def fold_batch_norm(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A new layer equal, in eval mode, to ``layer`` followed by ``bn``; both are left untouched.

    ``layer``: ``nn.Linear`` or ``nn.Conv1d/2d/3d`` (any stride, padding, groups); ``bn``: a batch
    norm layer with running statistics over ``layer``'s output channels. With ``s = gamma /
    sqrt(running_var + eps)`` per output channel, the folded layer has weight ``W * s`` (scaled
    along the output-channel axis) and bias ``(b - running_mean) * s + beta``; a layer built with
    ``bias=False`` gets a bias. The arithmetic is done in float64, then cast to ``layer``'s dtype.
    """
    if not isinstance(layer, _FOLDABLE):
        raise TypeError(
            f"cannot fold batch norm into a {type(layer).__name__}: only nn.Linear and "
            "nn.Conv1d/2d/3d are supported (their output channels are axis 0 of the weight)"
        )
    scale, shift = _bn_scale_shift(bn)
    out_channels = layer.weight.shape[0]
    if out_channels != scale.numel():
        raise ValueError(
            f"{type(layer).__name__} has {out_channels} output channels but the batch norm layer "
            f"normalises {scale.numel()}: they are not a layer and its batch norm"
        )
    folded = copy.deepcopy(layer)
    weight = layer.weight.detach().double()
    bias = (
        layer.bias.detach().double()
        if layer.bias is not None
        else torch.zeros(out_channels, dtype=torch.float64, device=weight.device)
    )
    new_weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    new_bias = bias * scale + shift
    folded.weight = nn.Parameter(new_weight.to(layer.weight.dtype))
    folded.bias = nn.Parameter(new_bias.to(layer.weight.dtype))
    return folded


def fold_all(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every batch norm folded into the layer right before it.

    Inside every ``nn.Sequential`` (nested ones too), a Linear/Conv followed directly by a batch
    norm layer with running statistics becomes the folded layer followed by ``nn.Identity()``, so
    the positions (and state dict keys) of the other layers stay as they were. The copy equals
    ``model`` in eval mode; ``model`` itself is untouched. Batch norms without running statistics,
    or not directly after a foldable layer, are kept.
    """
    folded = copy.deepcopy(model)
    for container in folded.modules():
        if not isinstance(container, nn.Sequential):
            continue
        names = list(container._modules)
        for first, second in zip(names, names[1:]):
            layer, bn = container._modules[first], container._modules[second]
            if (
                isinstance(layer, _FOLDABLE)
                and is_batch_norm(bn)
                and bn.running_mean is not None
                and layer.weight.shape[0] == bn.running_mean.numel()
            ):
                container._modules[first] = fold_batch_norm(layer, bn)
                container._modules[second] = nn.Identity()
    return folded


# --- exact population statistics ("precise BN") --------------------------------------------------


class _ChannelMoments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch in float64
    (Chan et al.'s pairwise update, so no large sums of squares cancel)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def add(self, x: Tensor) -> None:
        dims = (0, *range(2, x.dim()))
        x = x.detach().double()
        n = x.numel() // x.shape[1]
        if n == 0:
            return
        mean = x.mean(dims)
        m2 = ((x - mean.view(1, -1, *([1] * (x.dim() - 2)))) ** 2).sum(dims)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def unbiased_var(self) -> Tensor:
        return self.m2 / (self.count - 1)


class _StopForward(Exception):
    """Raised by a hook once the layer being recalibrated has seen its input."""


def _inputs(batch) -> Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _called_batch_norms(model: nn.Module, first_input: Tensor) -> list[nn.Module]:
    """The batch norm layers with running statistics in the order the forward pass calls them."""
    order: list[nn.Module] = []
    candidates = batch_norm_layers(model)
    handles = [m.register_forward_pre_hook(lambda m, _: order.append(m)) for m in candidates]
    try:
        model(first_input)
    finally:
        for h in handles:
            h.remove()
    if len(set(map(id, order))) != len(order):
        raise ValueError(
            "a batch norm layer is called more than once in one forward pass; its input has no "
            "single population to recalibrate to"
        )
    return order


@torch.no_grad()
def recalibrate(model: nn.Module, batches: Iterable) -> nn.Module:
    """Replace every batch norm layer's running statistics by exact population statistics.

    ``batches``: input tensors, or ``(inputs, targets)`` pairs (targets are ignored); a one-shot
    iterator is read into a list first, since the data is passed once per batch norm layer.

    For each batch norm layer, ``running_mean`` becomes the mean of its input over every sample
    (and spatial position) of every batch, and ``running_var`` the unbiased variance
    (``sum((x - mean)^2) / (M - 1)`` over all ``M`` values per channel).

    The statistics are those the layer's input has when the model runs in **eval mode**, with the
    layers before it already recalibrated: that is the input the layer will normalise at
    inference. So the layers are recalibrated one at a time, in the order the forward pass calls
    them, each with a pass over the data that stops right after that layer's input is seen.
    (Collecting all layers in one train-mode pass, as some implementations do, measures inputs
    shaped by earlier layers' *batch* statistics instead.) Costs up to one forward pass over the
    data per batch norm layer.

    Runs without gradients, leaves every module's train/eval mode as it was and does not change
    ``num_batches_tracked`` (it counts training batches). Returns ``model``, changed in place.
    """
    if iter(batches) is batches:  # a generator or iterator can only be read once
        batches = list(batches)
    first = next(iter(batches), None)
    if first is None:
        raise ValueError("recalibrate needs at least one batch of inputs")

    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for bn in _called_batch_norms(model, _inputs(first)):
            moments = _ChannelMoments()

            def collect(module, args, moments=moments):
                moments.add(args[0])
                raise _StopForward

            handle = bn.register_forward_pre_hook(collect)
            try:
                for batch in batches:
                    try:
                        model(_inputs(batch))
                    except _StopForward:
                        pass
            finally:
                handle.remove()
            if moments.count < 2:
                raise ValueError(
                    f"{bn} saw {moments.count} value(s) per channel: an unbiased variance needs "
                    "at least 2"
                )
            bn.running_mean.copy_(moments.mean)
            bn.running_var.copy_(moments.unbiased_var())
    finally:
        for module, training in modes.items():
            module.training = training
    return model


# --- train mode at inference, and frozen batch norm ---------------------------------------------


def predict_in_train_mode(
    model: nn.Module, images: Tensor, batch_size: int, order_seed: int | None = None
) -> tuple[Tensor, nn.Module]:
    """Run a copy of ``model`` in train mode over ``images`` in mini-batches, as the bug does.

    Every BN layer normalises each batch with that batch's own statistics, and updates its
    running averages from it. ``model`` itself is not touched.

    Args:
        model: the trained network.
        images: (N, ...) inputs.
        batch_size: images per forward pass (the last batch may be smaller).
        order_seed: ``None`` keeps the given order (the DHCD test set is sorted by class);
            a seed shuffles the images before batching.

    Returns:
        ``(logits, copy)``: logits (N, classes) in the order of ``images``, and the copy of the
        model (in train mode) whose running statistics the pass has updated.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    copy_ = copy.deepcopy(model).train()
    # Many tiny forward passes: a second torch thread costs more to wake than it saves (measured
    # 0.5 s on one thread against 18 s on two for 300 single images on a busy 2-core machine).
    with torch_threads(1):
        return _forward_in_batches(copy_, images, batch_size, order_seed), copy_


def _forward_in_batches(
    model: nn.Module, images: Tensor, batch_size: int, order_seed: int | None
) -> Tensor:
    """Logits of ``model`` over ``images`` in mini-batches (optionally shuffled), in input order."""
    order = torch.arange(len(images))
    if order_seed is not None:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(order_seed))
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outputs.append(model(images[order[start : start + batch_size]]))
    logits = torch.empty_like(torch.cat(outputs))
    logits[order] = torch.cat(outputs)
    return logits


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BN layer replaced by a :class:`bnlib.nn.FrozenBatchNorm2d` of it.

    Fine-tuning the copy in train mode leaves the normalisation exactly as in eval mode: batch
    statistics are never used and the population statistics are never updated.
    """
    frozen = copy.deepcopy(model)
    targets = {id(m) for m in batch_norm_layers(frozen)}

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if id(child) in targets:
                setattr(parent, name, bnn.FrozenBatchNorm2d.from_batch_norm(child))
            else:
                replace(child)

    replace(frozen)
    return frozen
