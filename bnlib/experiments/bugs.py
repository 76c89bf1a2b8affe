"""Chapter 08's experiment: batch norm bugs reproduced on the digits, measured and fixed.

Every measurement trains ``bnlib.models.small_bn_net`` (or ``bnlib.models.
row_sequence_net``) on a fixed subset of the DHCD digits with the small loop ``train``,
whose ``forward``, ``prepare`` and ``after_step`` arguments reproduce each bug: class-sorted
batches, a low momentum, sanity passes, fine-tuning with "frozen" BN, gradient checkpointing,
mixed precision, averaged weights, a BatchNorm1d on the wrong axis. Each ``*_runs`` function
returns plain dicts (accuracies as fractions); ``bnlib.experiments.bugs_verdicts`` turns
them into the chapter's numbers and words.

``SETTINGS`` holds the full and the short setting (``BNBOOK_QUICK=1``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.checkpoint import checkpoint

from bnlib import doctor
from bnlib import nn as bnn
from bnlib.data import load_hindi_digits
from bnlib.evaluation import accuracy
from bnlib.experiments.inference import train_mode_accuracy
from bnlib.inference import batch_norm_layers, freeze_batch_norm, recalibrate
from bnlib.models import row_sequence_net, small_bn_net
from bnlib.probes import variance_shift
from bnlib.seeds import summarize
from bnlib.settings import full_or_quick, show_progress, torch_threads
from bnlib.updates import (checkpoint_without_updates, scale_momentum, snapshot_statistics,
                           step_unless_skipped)

__all__ = [
    "SETTINGS", "averaged_runs", "batch_order", "checkpoint_runs", "digits", "diagnose",
    "eval_worse_runs", "finetune_runs", "layout_runs", "mixed_precision_runs", "mode_truth_table",
    "averaged_outcome", "setting", "sgd", "statistics_distance", "train", "warmup_runs",
]

#: Full setting (the published numbers) and short setting (``BNBOOK_QUICK=1``).
SETTINGS = {
    "full": {"train_images": 3000, "test_images": 1000, "epochs": 2, "seeds": (0, 1, 2),
             "checkpoint_images": 1000, "finetune_images": 200, "finetune_epochs": 3,
             "amp_steps": 16},
    "short": {"train_images": 1000, "test_images": 500, "epochs": 2, "seeds": (0, 1),
              "checkpoint_images": 500, "finetune_images": 100, "finetune_epochs": 2,
              "amp_steps": 8},
}
#: SGD with heavy-ball momentum 0.9 on batches of 32, as the book's other BN networks.
LR, SGD_MOMENTUM, BATCH_SIZE = 0.05, 0.9, 32
#: A momentum far too low for a few hundred updates: 0.999 ** 250 = 78% of the initial values
#: survive two epochs of 2,000 images.
LOW_MOMENTUM = 0.001
#: Sanity passes: a shape check ``model(torch.randn(4, 1, 32, 32))`` run three times in train mode.
SANITY_PASSES, SANITY_BATCH = 3, 4
#: Fine-tuning: pretrain on digits 0-4, fine-tune on a few images of 5-9 in batches of 8.
OLD_CLASSES, NEW_CLASSES, FINETUNE_BATCH, FINETUNE_LR = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9), 8, 0.01
#: Ways of "freezing" BN for fine-tuning, in the chapter's order.
FREEZINGS = ("none", "requires_grad", "eval_then_train", "track_flag", "freeze_batch_norm",
             "recalibrate_then_freeze")
#: Mixed precision: one image of the batch at ``CORRUPT_STEP`` is a 16-bit image not divided by
#: 65,535 (pixel values up to 65,535 instead of 1): float16 activations overflow (max 65,504).
CORRUPT_SCALE, CORRUPT_STEP = 65535.0, 3
#: A GradScaler scale large enough for the scaled backward to overflow float16 at first.
LARGE_SCALE = 2.0 ** 32
#: Averaged weights: EMA decay per step; SWA averages every step of the last epoch.
EMA_DECAY = 0.99
#: Samples of the training set the doctor examines, and that recalibration uses (chapter 03:
#: a thousand images recalibrate this kind of network as well as the whole set).
EXAMINED, RECALIBRATION_IMAGES = 256, 1000


def setting() -> dict:
    """The full setting, or the short one under ``BNBOOK_QUICK=1``, with its ``name``."""
    name = full_or_quick("full", "short")
    return {"name": name, **SETTINGS[name]}


def digits(chosen: Mapping[str, Any]) -> dict[str, Tensor]:
    """Fixed random subsets (seed 0) of the DHCD train and test sets: ``x_train``,
    ``y_train``, ``x_test``, ``y_test``."""
    out = {}
    for split, size in (("train", chosen["train_images"]), ("test", chosen["test_images"])):
        images, labels = load_hindi_digits(split)
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:size]
        out[f"x_{split}"], out[f"y_{split}"] = images[pick], labels[pick]
    return out


# --------------------------------------------------------------------------- the loop


def batch_order(labels: Tensor, batch_size: int, generator: torch.Generator,
                order: str = "shuffled") -> list[Tensor]:
    """Index batches of one epoch: ``"shuffled"`` (a random permutation) or ``"sorted"``
    (by class, as many data sets are stored); the incomplete last batch is dropped."""
    if order == "shuffled":
        index = torch.randperm(len(labels), generator=generator)
    elif order == "sorted":
        index = torch.argsort(labels, stable=True)
    else:
        raise ValueError(f"order must be 'shuffled' or 'sorted', got {order!r}")
    full = len(index) // batch_size * batch_size
    return list(index[:full].split(batch_size))


def train(model: nn.Module, images: Tensor, labels: Tensor, *, epochs: int, seed: int,
          order: str = "shuffled", lr: float = LR, batch_size: int = BATCH_SIZE,
          forward: Callable[[Tensor], Tensor] | None = None,
          step: Callable | None = None,
          after_step: Callable[[nn.Module], None] | None = None,
          optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Train ``model`` in place with SGD (momentum 0.9) on cross-entropy; returns it in eval mode.

    ``model.train()`` is called at the start of every epoch, as training loops do.
    ``forward(x)`` replaces ``model(x)`` (e.g. a checkpointed forward); ``step(model, optimizer,
    x, y)`` replaces the whole step (mixed precision); ``after_step(model)`` runs after each.
    ``optimizer``: default ``sgd`` of ``model`` and ``lr``. One torch thread.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = optimizer or sgd(model, lr)
    forward = forward or model
    with torch_threads(1):
        for _ in range(epochs):
            model.train()
            for index in batch_order(labels, batch_size, generator, order):
                x, y = images[index], labels[index]
                if step is not None:
                    step(model, optimizer, x, y)
                else:
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(forward(x), y).backward()
                    optimizer.step()
                if after_step is not None:
                    after_step(model)
    return model.eval()


def sgd(model: nn.Module, lr: float = LR) -> torch.optim.SGD:
    """SGD with momentum 0.9 over the parameters of ``model`` that have ``requires_grad``."""
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr,
                           momentum=SGD_MOMENTUM)


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build()


# --------------------------------------------------------------------------- measuring


def statistics_distance(model: nn.Module, other: nn.Module) -> float:
    """Largest absolute difference between the running means and variances of two models with
    the same BN layers."""
    return max(float(max((a.running_mean - b.running_mean).abs().max(),
                         (a.running_var - b.running_var).abs().max()))
               for a, b in zip(batch_norm_layers(model), batch_norm_layers(other)))


def diagnose(model: nn.Module, images: Tensor) -> list[str]:
    """The doctor's finding codes for ``model`` examined with ``images`` (its training data)."""
    return sorted({f.code for f in doctor.examine(model, images[:EXAMINED])})


def _recalibrated(model: nn.Module, data: Mapping[str, Tensor]) -> nn.Module:
    """A copy of ``model`` recalibrated on the first ``RECALIBRATION_IMAGES`` training
    digits (``bnlib.inference.recalibrate``)."""
    return recalibrate(copy.deepcopy(model), data["x_train"][:RECALIBRATION_IMAGES].split(500))


def _shifts(model: nn.Module, images: Tensor) -> list[float]:
    return [row["shift"] for row in variance_shift(copy.deepcopy(model), images[:EXAMINED])]


def _outcome(model: nn.Module, data: Mapping[str, Tensor]) -> dict:
    """Eval-mode and train-mode accuracy (shuffled test batches of 32), the per-layer shift on
    the training data, the accuracy after recalibration on it, and the doctor's codes."""
    fixed = _recalibrated(model, data)
    return {"eval": accuracy(model, data["x_test"], data["y_test"]),
            "train_mode": train_mode_accuracy(model, data["x_test"], data["y_test"], 32, 0),
            "shift": _shifts(model, data["x_train"]),
            "recalibrated": accuracy(fixed, data["x_test"], data["y_test"]),
            "codes": diagnose(model, data["x_train"])}


def _progress(items: Sequence, label: str):
    if not show_progress():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label)


# --------------------------------------------------------------------------- the truth table


def _truth_row(layer: nn.Module, training: bool, x: Tensor) -> dict:
    layer.train(training)
    before = [None if t is None else t.clone() for t in
              (layer.running_mean, layer.running_var, layer.num_batches_tracked)]
    with torch.no_grad():
        out = layer(x)
    batch = nn.functional.batch_norm(x, None, None, training=True)
    running = nn.functional.batch_norm(x, torch.full((3,), 0.5), torch.full((3,), 2.0))
    normalises = ("batch" if torch.allclose(out, batch, atol=1e-5) else
                  "running" if torch.allclose(out, running, atol=1e-5) else "neither")
    after = (layer.running_mean, layer.running_var, layer.num_batches_tracked)
    moved = any(b is not None and not torch.equal(b, a) for b, a in zip(before, after))
    return {"normalises": normalises, "updates": moved}


def mode_truth_table(seed: int = 0) -> list[dict]:
    """Which statistics normalise and which get updated, for ``torch.nn.BatchNorm2d`` and
    ``bnlib.nn.BatchNorm2d``: mode (train/eval) x ``track_running_stats`` x buffers present.

    A layer "with buffers" is built with ``track_running_stats=True`` (running mean 0.5 and
    variance 2 set, so they differ from any batch's), one "without" with ``False``; then the
    flag is set to the row's value. Rows: ``implementation``, ``mode``,
    ``track_running_stats``, ``buffers``, ``normalises`` ("batch", "running" or "neither") and
    ``updates`` (any buffer changed by one forward pass)."""
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 3 + 1
    rows = []
    for name, cls in (("torch", nn.BatchNorm2d), ("bnlib", bnn.BatchNorm2d)):
        for training in (True, False):
            for buffers in (True, False):
                for track in (True, False):
                    layer = cls(3, affine=False, track_running_stats=buffers)
                    if buffers:
                        layer.running_mean.fill_(0.5)
                        layer.running_var.fill_(2.0)
                    layer.track_running_stats = track
                    rows.append({"implementation": name, "mode": "train" if training else "eval",
                                 "track_running_stats": track, "buffers": buffers,
                                 **_truth_row(layer, training, x)})
    return rows


# --------------------------------------------------------------------------- eval worse than train


def sanity_passes(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` after ``SANITY_PASSES`` train-mode forwards of random inputs, back in
    eval mode (no optimiser step)."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(SANITY_PASSES):
            model(torch.randn(SANITY_BATCH, 1, 32, 32, generator=generator))
    return model.eval()


def _averagers(model: nn.Module) -> dict[str, AveragedModel]:
    return {"swa": AveragedModel(model),
            "ema": AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY),
                                 use_buffers=True)}


def eval_worse_runs(data: Mapping[str, Tensor], chosen: Mapping[str, Any]) -> dict:
    """Per seed, the reference network (shuffled batches, momentum 0.1) and three ways to make
    eval mode worse than train mode: ``sorted`` (class-sorted training batches), ``low_momentum``
    (``LOW_MOMENTUM``), ``sanity`` (the reference after ``SANITY_PASSES`` train-mode
    passes of random inputs). Each: ``_outcome``. The reference runs also average their
    weights (see ``averaged_runs``); their models are returned under ``models``."""
    out = {cause: [] for cause in ("reference", "sorted", "low_momentum", "sanity")}
    out["models"], out["averaged"] = [], []
    x, y, epochs = data["x_train"], data["y_train"], chosen["epochs"]
    steps = epochs * (len(y) // BATCH_SIZE)
    for seed in _progress(chosen["seeds"], "eval worse than train"):
        model = _seeded(small_bn_net, seed)
        averaged = _averagers(model)
        reference = train(model, x, y, epochs=epochs, seed=seed,
                          after_step=_averaging(averaged, steps - len(y) // BATCH_SIZE))
        out["models"].append(reference)
        out["averaged"].append(averaged_outcome(averaged, data))
        out["reference"].append(_outcome(reference, data))
        sorted_ = train(_seeded(small_bn_net, seed), x, y, epochs=epochs, seed=seed,
                        order="sorted")
        out["sorted"].append(_outcome(sorted_, data))
        slow = _seeded(small_bn_net, seed)
        for bn in batch_norm_layers(slow):
            bn.momentum = LOW_MOMENTUM
        out["low_momentum"].append(_outcome(train(slow, x, y, epochs=epochs, seed=seed), data))
        sanity = sanity_passes(copy.deepcopy(reference), seed)
        out["sanity"].append(_outcome(sanity, data))
    out["steps"] = steps
    return out


# --------------------------------------------------------------------------- averaged weights


def _averaging(averaged: Mapping[str, AveragedModel], swa_start: int) -> Callable:
    """An ``after_step`` that updates the EMA at every step and SWA after ``swa_start`` steps."""
    done = {"steps": 0}

    def update(net: nn.Module) -> None:
        done["steps"] += 1
        averaged["ema"].update_parameters(net)
        if done["steps"] > swa_start:
            averaged["swa"].update_parameters(net)
    return update


def averaged_outcome(averaged: Mapping[str, AveragedModel], data: Mapping[str, Tensor]) -> dict:
    """For each averaged model (``swa``: buffers copied from the latest model, ``ema``: buffers
    averaged too), the test accuracy with those buffers, after
    ``torch.optim.swa_utils.update_bn`` on the training data (batches of 32) and after
    ``bnlib.inference.recalibrate``; and the doctor's codes with the stored buffers."""
    out = {}
    batches = list(data["x_train"].split(BATCH_SIZE))
    for name, avg in averaged.items():
        net = avg.module
        updated = copy.deepcopy(net)
        with torch_threads(1):
            update_bn(batches, updated)
        fixed = _recalibrated(net, data)
        out[name] = {"stored": accuracy(net, data["x_test"], data["y_test"]),
                     "update_bn": accuracy(updated, data["x_test"], data["y_test"]),
                     "recalibrated": accuracy(fixed, data["x_test"], data["y_test"]),
                     "codes": diagnose(net.eval(), data["x_train"])}
    return out


def averaged_runs(worse: Mapping[str, Any]) -> list[dict]:
    """The averaged-weights outcomes recorded by ``eval_worse_runs``, one per seed."""
    return list(worse["averaged"])


# --------------------------------------------------------------------------- fine-tuning


def _classes(images: Tensor, labels: Tensor, classes: Sequence[int]) -> tuple[Tensor, Tensor]:
    keep = torch.isin(labels, torch.tensor(classes))
    return images[keep], labels[keep]


def _freeze(model: nn.Module, how: str, new_images: Tensor) -> nn.Module:
    """``model`` prepared for fine-tuning with BN "frozen" as ``how`` says (see
    ``FREEZINGS``; ``recalibrate_then_freeze`` recalibrates on ``new_images`` first)."""
    if how == "recalibrate_then_freeze":
        model = recalibrate(model, new_images.split(500))
    if how in ("freeze_batch_norm", "recalibrate_then_freeze"):
        return freeze_batch_norm(model)
    for bn in batch_norm_layers(model):
        if how != "none":
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)
        if how == "eval_then_train":
            bn.eval()  # the loop's model.train() at each epoch undoes it
        if how == "track_flag":
            bn.track_running_stats = False
    return model


def _moved(before: nn.Module, after: nn.Module) -> float:
    """Largest relative change of a ``running_var`` buffer between two models, matched by
    state-dict key (a frozen copy keeps BN's buffer names)."""
    old, new = before.state_dict(), after.state_dict()
    return max(float(((new[k] - old[k]).abs() / old[k]).max())
               for k in old if k.endswith("running_var"))


def finetune_runs(data: Mapping[str, Tensor], chosen: Mapping[str, Any]) -> dict:
    """Pretrain (seed 0) on the training digits of ``OLD_CLASSES``, then per seed fine-tune
    a copy on ``finetune_images`` random training digits of ``NEW_CLASSES`` (batches of 8,
    learning rate 0.01), once per way of ``FREEZINGS``. Per way and seed: ``moved`` (largest
    relative change of a running variance), ``new`` and ``old`` (test accuracy on the new and
    the old classes), ``codes`` (the doctor's findings on the prepared model in train mode)
    and, for the first seed, ``watched`` (the codes ``bnlib.doctor.watch`` reports)."""
    old_x, old_y = _classes(data["x_train"], data["y_train"], OLD_CLASSES)
    pretrained = train(_seeded(small_bn_net, 0), old_x, old_y, epochs=chosen["epochs"], seed=0)
    new_x, new_y = _classes(load_hindi_digits("train")[0], load_hindi_digits("train")[1],
                            NEW_CLASSES)
    test_new = _classes(data["x_test"], data["y_test"], NEW_CLASSES)
    test_old = _classes(data["x_test"], data["y_test"], OLD_CLASSES)
    out: dict[str, list] = {how: [] for how in FREEZINGS}
    for seed in _progress(chosen["seeds"], "fine-tuning"):
        pick = torch.randperm(len(new_y), generator=torch.Generator().manual_seed(100 + seed))
        x, y = new_x[pick[: chosen["finetune_images"]]], new_y[pick[: chosen["finetune_images"]]]
        for how in FREEZINGS:
            model = _freeze(copy.deepcopy(pretrained), how, x).train()
            codes = sorted({f.code for f in doctor.examine(model, x)})
            optimizer = sgd(model, FINETUNE_LR)
            with doctor.watch(model, optimizer) as seen:
                train(model, x, y, epochs=chosen["finetune_epochs"], seed=seed,
                      batch_size=FINETUNE_BATCH, optimizer=optimizer)
            row = {"moved": _moved(pretrained, model), "codes": codes,
                   "new": accuracy(model, *test_new), "old": accuracy(model, *test_old),
                   "watched": sorted({f.code for f in seen.report})}
            out[how].append(row)
    out["pretrained_old"] = accuracy(pretrained, *test_old)
    out["pretrained_new"] = accuracy(pretrained, *test_new)
    return out


# --------------------------------------------------------------------------- checkpointing


def checkpoint_runs(data: Mapping[str, Tensor], chosen: Mapping[str, Any]) -> dict:
    """Per seed, the same training (``checkpoint_images`` digits, one epoch) four ways: plain;
    with ``torch.utils.checkpoint`` (``use_reentrant=False``) around the convolutional part
    ``net[:8]``; the same with that part's momentum set by
    ``bnlib.updates.scale_momentum`` (k = 2); and with
    ``bnlib.updates.checkpoint_without_updates``. Per way: ``weights`` (largest parameter
    difference from the plain run), ``stats`` (largest running-statistic difference from it),
    ``tracked`` (``num_batches_tracked`` of the first BN layer), ``eval`` (test accuracy); for
    the plain checkpointed run also ``watched`` (the codes of ``bnlib.doctor.watch``)."""
    n = chosen["checkpoint_images"]
    x, y = data["x_train"][:n], data["y_train"][:n]
    out: dict[str, list] = {way: [] for way in ("plain", "checkpoint", "momentum", "no_update")}
    for seed in _progress(chosen["seeds"], "checkpointing"):
        models = {way: _seeded(small_bn_net, seed) for way in out}
        scale_momentum(models["momentum"][:8], 2)
        forwards = {
            "plain": None,
            "checkpoint": lambda v, m=models["checkpoint"]: m[8:](
                checkpoint(m[:8], v, use_reentrant=False)),
            "momentum": lambda v, m=models["momentum"]: m[8:](
                checkpoint(m[:8], v, use_reentrant=False)),
            "no_update": lambda v, m=models["no_update"]: m[8:](
                checkpoint_without_updates(m[:8], v)),
        }
        for way, model in models.items():
            optimizer = sgd(model)
            with doctor.watch(model, optimizer) as seen:
                train(model, x, y, epochs=1, seed=seed, forward=forwards[way],
                      optimizer=optimizer)
            plain = models["plain"]
            out[way].append({
                "weights": max(float((p - q).detach().abs().max()) for p, q in
                               zip(model.parameters(), plain.parameters())),
                "stats": statistics_distance(model, plain),
                "tracked": int(batch_norm_layers(model)[0].num_batches_tracked),
                "eval": accuracy(model, data["x_test"], data["y_test"]),
                "watched": sorted({f.code for f in seen.report})})
    return out


# --------------------------------------------------------------------------- mixed precision


def _amp_step(dtype: torch.dtype, scaler, guard: bool, counter: dict):
    """A training step under ``torch.autocast("cpu", dtype)`` whose batch number
    ``CORRUPT_STEP`` has one image multiplied by ``counter["corrupt"]`` (1: no corruption);
    with ``scaler`` a ``torch.amp.GradScaler`` step (``guard``: restore the BN statistics when it
    skips), else a plain step with the gradient norm clipped to 1."""
    def step(model, optimizer, x, y):
        counter["step"] += 1
        if counter["step"] == CORRUPT_STEP:
            x = x.clone()
            x[0] = x[0] * counter["corrupt"]
        snapshot = snapshot_statistics(model)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        if scaler is None:
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if guard:
            counter["skipped"] += not step_unless_skipped(scaler, optimizer, model, snapshot)
        else:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            counter["skipped"] += scaler.get_scale() < scale
    return step


def mixed_precision_runs(model: nn.Module, data: Mapping[str, Tensor],
                         chosen: Mapping[str, Any]) -> dict:
    """Continue training copies of a trained ``model`` for ``amp_steps`` steps in mixed
    precision, five ways: ``forward_overflow`` (float16, one 16-bit image at step
    ``CORRUPT_STEP``, ``GradScaler("cpu")``), ``guarded`` (the same with the statistics
    restored when the scaler skips), ``backward_overflow`` (float16, clean data, a scaler starting
    at ``LARGE_SCALE``), ``bfloat16`` (the corrupt image under bfloat16, no scaler).
    Per way: ``skipped`` steps, ``finite`` (all running statistics finite), ``largest`` (largest
    running variance), ``eval`` and ``recalibrated`` test accuracy, ``codes`` (doctor). Also
    ``before`` (the model's accuracy) and ``float16_max``."""
    ways = {"forward_overflow": (torch.float16, 2.0 ** 16, False, CORRUPT_SCALE),
            "guarded": (torch.float16, 2.0 ** 16, True, CORRUPT_SCALE),
            "backward_overflow": (torch.float16, LARGE_SCALE, False, 1.0),
            "bfloat16": (torch.bfloat16, None, False, CORRUPT_SCALE)}
    steps = chosen["amp_steps"]
    x, y = data["x_train"][: steps * BATCH_SIZE], data["y_train"][: steps * BATCH_SIZE]
    out: dict[str, Any] = {"before": accuracy(model, data["x_test"], data["y_test"]),
                           "float16_max": float(torch.finfo(torch.float16).max)}
    for way, (dtype, scale, guard, corrupt) in ways.items():
        net = copy.deepcopy(model)
        counter = {"step": 0, "skipped": 0, "corrupt": corrupt}
        scaler = None if scale is None else torch.amp.GradScaler("cpu", init_scale=scale)
        train(net, x, y, epochs=1, seed=0, lr=0.01, step=_amp_step(dtype, scaler, guard, counter))
        variances = torch.cat([bn.running_var for bn in batch_norm_layers(net)])
        fixed = _recalibrated(net, data)
        out[way] = {"skipped": counter["skipped"], "finite": all(
            bool(torch.isfinite(t).all()) for bn in batch_norm_layers(net)
            for t in (bn.running_mean, bn.running_var)),
            "largest": float(variances.nan_to_num(nan=float("inf")).max()),
            "eval": accuracy(net, data["x_test"], data["y_test"]),
            "recalibrated": accuracy(fixed, data["x_test"], data["y_test"]),
            "codes": diagnose(net, data["x_train"])}
    return out


# --------------------------------------------------------------------------- warm-up passes


def warmup_runs(data: Mapping[str, Tensor], chosen: Mapping[str, Any], reference: nn.Module,
                seed: int = 0) -> dict:
    """The reference training of ``seed`` again, with ``SANITY_PASSES`` train-mode passes
    of random inputs before the first step, watched by ``bnlib.doctor.watch``: ``watched``
    (its codes), ``shift_after_warmup`` (largest per-layer shift right after the passes, on the
    training data), ``stats`` (largest running-statistic difference from ``reference`` at the
    end), ``eval`` and ``reference_eval`` (test accuracy), ``survives`` (0.9 ** steps, the
    weight the warm-up keeps at the end)."""
    model = _seeded(small_bn_net, seed)
    sanity_passes(model, seed)
    shift = max(_shifts(model, data["x_train"]))
    fresh = _seeded(small_bn_net, seed)
    optimizer = sgd(fresh)
    with doctor.watch(fresh, optimizer) as seen:
        sanity_passes(fresh, seed)
        train(fresh, data["x_train"], data["y_train"], epochs=chosen["epochs"], seed=seed,
              optimizer=optimizer)
    steps = chosen["epochs"] * (len(data["y_train"]) // BATCH_SIZE)
    return {"watched": sorted({f.code for f in seen.report}), "shift_after_warmup": shift,
            "stats": statistics_distance(fresh, reference),
            "eval": accuracy(fresh, data["x_test"], data["y_test"]),
            "reference_eval": accuracy(reference, data["x_test"], data["y_test"]),
            "survives": 0.9 ** steps, "steps": steps}


# --------------------------------------------------------------------------- layouts


def layout_runs(data: Mapping[str, Tensor], chosen: Mapping[str, Any]) -> dict:
    """Per seed, ``bnlib.models.row_sequence_net`` trained with each layout: test accuracy
    (``accuracy``) and the doctor's codes (``codes``), per layout name."""
    out: dict[str, list] = {"channels_first": [], "as_produced": []}
    for seed in _progress(chosen["seeds"], "layouts"):
        for layout in out:
            model = train(_seeded(lambda: row_sequence_net(layout), seed), data["x_train"],
                          data["y_train"], epochs=chosen["epochs"], seed=seed)
            out[layout].append({"accuracy": accuracy(model, data["x_test"], data["y_test"]),
                                "codes": diagnose(model, data["x_train"])})
    return out



# --------------------------------------------------------------------------- the whole chapter


def run(chosen: Mapping[str, Any]) -> dict:
    """Every measurement of the chapter in ``chosen`` (``setting``): the ``results`` that
    ``bnlib.experiments.bugs_verdicts.findings`` reads, plus ``data``."""
    data = digits(chosen)
    worse = eval_worse_runs(data, chosen)
    reference = worse["models"][0]
    return {"setting": dict(chosen), "data": data, "truth": mode_truth_table(), "worse": worse,
            "finetune": finetune_runs(data, chosen), "checkpoint": checkpoint_runs(data, chosen),
            "amp": mixed_precision_runs(reference, data, chosen),
            "warmup": warmup_runs(data, chosen, reference), "layout": layout_runs(data, chosen)}


#: How the chapter names the runs in its tables.
LABELS = {"reference": "reference", "sorted": "class-sorted batches",
          "low_momentum": f"momentum {LOW_MOMENTUM}", "sanity": f"{SANITY_PASSES} sanity passes",
          "none": "nothing frozen", "requires_grad": "requires_grad=False",
          "eval_then_train": "eval(), then model.train()",
          "track_flag": "track_running_stats=False", "freeze_batch_norm": "freeze_batch_norm",
          "recalibrate_then_freeze": "recalibrate on 5-9, then freeze",
          "plain": "no checkpointing", "checkpoint": "checkpointed",
          "momentum": "checkpointed, momentum for k = 2",
          "no_update": "checkpointed, no update in recomputation",
          "forward_overflow": "float16, forward overflows", "guarded": "the same, guarded",
          "backward_overflow": "float16, scaled backward overflows",
          "bfloat16": "bfloat16, same outlier",
          "channels_first": "(N, C, L): transposed", "as_produced": "(N, L, C): as produced"}


def _mean(values) -> float:
    return summarize(values).mean


def rows(part: Mapping[str, Any], ways: Sequence[str], keys: Sequence[str]) -> list[dict]:
    """Table rows: one per way in ``ways`` (labelled by ``LABELS``), with the mean over
    seeds of each of ``keys`` and the union of the doctor's ``codes``/``watched`` found."""
    out = []
    for way in ways:
        runs = part[way] if isinstance(part[way], list) else [part[way]]
        row = {"run": LABELS[way]}
        for key in keys:  # one run: its value as it is (an infinite variance included)
            row[key] = runs[0][key] if len(runs) == 1 else _mean([r[key] for r in runs])
        for key in ("codes", "watched"):
            if key in runs[0]:
                row[key] = ", ".join(sorted({c for r in runs for c in r[key]})) or "-"
        out.append(row)
    return out


def averaged_rows(averaged: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Table rows for the averaged models (``swa``, ``ema``): mean over seeds of the accuracy
    with the ``stored`` buffers, after ``update_bn`` and after ``recalibrated``, and the
    doctor's codes on the stored buffers."""
    labels = {"swa": "SWA, buffers copied", "ema": "EMA, buffers averaged"}
    return [{"run": labels[name], **{k: _mean([a[name][k] for a in averaged])
                                     for k in ("stored", "update_bn", "recalibrated")},
             "codes": ", ".join(sorted({c for a in averaged for c in a[name]["codes"]})) or "-"}
            for name in labels]


__all__ += ["LABELS", "averaged_rows", "rows", "run", "sanity_passes"]
