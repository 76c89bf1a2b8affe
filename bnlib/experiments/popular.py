"""The popular implementations put to the test: each departure of
:mod:`bnlib.exercises.popular`, measured with the check that exposes it.

* :func:`normalisation_factor` and :func:`running_variance_ratio`: the unbiased variance in
  the normalisation, and the biased one in the running variance, in a fully connected layer at
  batch 4 and in the article's first convolution at batch 32 (no training needed);
* :func:`grad_mode_evaluation`: a trained network evaluated in ``eval()`` with and without
  ``torch.no_grad()``, one image at a time;
* :func:`round_trip`: a trained network saved and reloaded through its ``state_dict``;
* :func:`momentum_replay`: the last training batches replayed with momentum 0.1 and 0.99,
  the running statistics compared with the population's;
* :func:`detached_training`: the article's network trained with torch's BN and with the
  statistics under ``no_grad``, the growth of the convolution biases measured (Ioffe &
  Szegedy's section 2).

:func:`findings` turns the results into the numbers and verdicts the chapter glues, and
:func:`table_rows` into the chapter's table.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnlib.exercises import popular
from bnlib.inference import batch_norm_layers, recalibrate
from bnlib.models import three_conv_net
from bnlib.settings import full_or_quick, show_progress, torch_threads

__all__ = [
    "FULL",
    "QUICK",
    "THRESHOLDS",
    "Setting",
    "checker_verdicts",
    "convert",
    "detached_training",
    "findings",
    "grad_mode_evaluation",
    "measure",
    "momentum_replay",
    "normalisation_factor",
    "round_trip",
    "running_variance_ratio",
    "setting",
    "table_rows",
]


@dataclass(frozen=True)
class Setting:
    """How much each measurement does.

    ``steps``: training steps of each short run (batches of 32, the article's plain SGD with
    learning rate ``lr``); ``test_images``: test images each accuracy uses; ``replay``:
    training batches replayed through the running averages; ``fc_batches``: batches of 4 the
    fully connected layer sees; ``population_images``: the seeded random training images the
    population statistics, the replayed batches and the convolution's batches come from.
    """

    steps: int
    test_images: int
    replay: int
    population_images: int
    fc_batches: int = 50
    lr: float = 0.001
    seed: int = 5842


FULL = Setting(steps=300, test_images=1000, replay=50, population_images=4000)
QUICK = Setting(steps=30, test_images=200, replay=20, population_images=1000)

#: The verdict rules, fixed before any measurement: a departure *shows* when it moves an
#: accuracy by more than ``accuracy`` (1 percentage point) or an output or statistic by more
#: than ``relative`` (1%); the conv network's normalisation factor is *invisible* below
#: ``invisible`` (0.1%).
THRESHOLDS = {"accuracy": 0.01, "relative": 0.01, "invisible": 1e-3}


def setting() -> Setting:
    """:data:`FULL`, or :data:`QUICK` under ``BNBOOK_QUICK=1``."""
    return full_or_quick(FULL, QUICK)


def convert(model: nn.Module, variant: Callable[[int], nn.Module]) -> nn.Module:
    """A copy of ``model`` with each ``nn.BatchNorm2d`` replaced by ``variant(C)`` holding the
    same weight, bias and running statistics (in the same train/eval mode)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                layer = variant(child.num_features).train(child.training)
                with torch.no_grad():
                    layer.weight.copy_(child.weight)
                    layer.bias.copy_(child.bias)
                layer.running_mean = child.running_mean.clone()
                layer.running_var = child.running_var.clone()
                setattr(parent, name, layer)
    return model


def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch: int) -> float:
    correct = 0
    for start in range(0, len(images), batch):
        logits = model(images[start:start + batch])
        correct += int((logits.argmax(1) == labels[start:start + batch]).sum())
    return correct / len(images)


def normalisation_factor(conv_output: Tensor, fc_batch: int = 4, seed: int = 0) -> dict:
    """How much :class:`~bnlib.exercises.popular.UnbiasedNormalisation` changes the training
    output: the ratio of torch's output variance to the variant's, per channel (its mean),
    for random (``fc_batch``, 64) inputs and for ``conv_output`` (N, C, H, W). Also the
    largest relative output difference, ``max|y - y_torch| / max|y_torch|``."""
    x = torch.randn(fc_batch, 64, generator=torch.Generator().manual_seed(seed))
    result = {}
    for where, batch in (("fc", x), ("conv", conv_output)):
        channels = batch.shape[1]
        ours = popular.UnbiasedNormalisation(channels).double()(batch.double()).detach()
        bn = nn.BatchNorm1d if batch.dim() == 2 else nn.BatchNorm2d
        theirs = bn(channels).double()(batch.double()).detach()
        axes = (0, *range(2, batch.dim()))
        ratio = theirs.var(dim=axes) / ours.var(dim=axes)
        result[f"{where}_variance_factor"] = float(ratio.mean())
        result[f"{where}_output_error"] = float((ours - theirs).abs().max() / theirs.abs().max())
    result["conv_values_per_channel"] = conv_output.numel() // conv_output.shape[1]
    return result


def running_variance_ratio(conv_batches: Sequence[Tensor], fc_batches: int = 50,
                           fc_batch: int = 4, seed: int = 0) -> dict:
    """The running variance of :class:`~bnlib.exercises.popular.BiasedRunningVariance`
    divided by torch's (mean over channels) after ``fc_batches`` random batches of
    ``fc_batch`` x 64 values, and after ``conv_batches`` (each (N, C, H, W)); and the
    fully connected layer's largest relative eval-output difference."""
    gen = torch.Generator().manual_seed(seed)
    fc = [torch.randn(fc_batch, 64, generator=gen) for _ in range(fc_batches)]
    result = {}
    for where, batches in (("fc", fc), ("conv", list(conv_batches))):
        channels = batches[0].shape[1]
        ours = popular.BiasedRunningVariance(channels).double()
        theirs = (nn.BatchNorm1d if batches[0].dim() == 2 else nn.BatchNorm2d)(channels).double()
        with torch.no_grad():
            for batch in batches:
                ours(batch.double()), theirs(batch.double())
        result[f"{where}_ratio"] = float((ours.running_var / theirs.running_var).mean())
        if where == "fc":
            probe = batches[-1].double()
            y_ours, y_theirs = ours.eval()(probe).detach(), theirs.eval()(probe).detach()
            result["fc_eval_error"] = float((y_ours - y_theirs).abs().max()
                                            / y_theirs.abs().max())
    return result


def grad_mode_evaluation(model: nn.Module, images: Tensor, labels: Tensor) -> dict:
    """``model`` (trained, torch BN) against its :class:`~bnlib.exercises.popular.GradModeSwitch`
    copy, both in ``eval()``: test accuracy under ``no_grad`` (batches of 250) and with
    gradients enabled one image at a time, and how far that second evaluation moved the
    copy's running means (largest relative change over layers)."""
    model = copy.deepcopy(model).eval()
    variant = convert(model, popular.GradModeSwitch).eval()
    layers = [m for m in variant.modules() if isinstance(m, popular.TutorialBatchNorm)]
    before = [layer.running_mean.clone() for layer in layers]
    with torch.no_grad():
        torch_no_grad = _accuracy(model, images, labels, 250)
        variant_no_grad = _accuracy(variant, images, labels, 250)
    torch_grad = _accuracy(model, images, labels, 1)
    variant_grad = _accuracy(variant, images, labels, 1)
    drift = max(float((layer.running_mean - old).abs().max() / old.abs().max())
                for layer, old in zip(layers, before))
    return {"torch_no_grad": torch_no_grad, "variant_no_grad": variant_no_grad,
            "torch_grad": torch_grad, "variant_grad": variant_grad, "running_mean_drift": drift}


def round_trip(model: nn.Module, images: Tensor, labels: Tensor) -> dict:
    """Save the :class:`~bnlib.exercises.popular.PlainTensorStatistics` copy of ``model``
    through its ``state_dict``, load it into a fresh copy, and compare test accuracies in eval
    mode; also the number of running-statistics entries the ``state_dict`` lacks."""
    variant = convert(model, popular.PlainTensorStatistics).eval()
    buffer = io.BytesIO()
    torch.save(variant.state_dict(), buffer)
    buffer.seek(0)
    fresh = convert(three_conv_net(batch_norm=True), popular.PlainTensorStatistics).eval()
    fresh.load_state_dict(torch.load(buffer))
    torch_keys = [k for k in model.state_dict() if "running_" in k]
    with torch.no_grad():
        return {"before": _accuracy(variant, images, labels, 250),
                "reloaded": _accuracy(fresh, images, labels, 250),
                "missing_keys": len([k for k in torch_keys if k not in variant.state_dict()]),
                "torch_keys": len(torch_keys)}


def momentum_replay(model: nn.Module, train_images: Tensor, images: Tensor, labels: Tensor,
                    batches: int, seed: int = 0) -> dict:
    """Replay ``batches`` shuffled batches of 32 of ``train_images`` in train mode (no weight
    update) through copies of ``model`` with momentum 0.1 (torch's default) and 0.99 (Keras's,
    in PyTorch's convention), then compare each copy's running variances with the population's
    (:func:`bnlib.inference.recalibrate` over ``train_images``; mean relative error per
    channel, the largest over layers) and their test accuracies."""
    order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))
    replay = [train_images[order[i * 32:(i + 1) * 32]] for i in range(batches)]
    population = recalibrate(copy.deepcopy(model).eval(), list(train_images.split(500)))
    result = {}
    with torch.no_grad():
        for name, momentum in (("torch", 0.1), ("keras", 0.99)):
            copy_ = copy.deepcopy(model).train()
            for layer in batch_norm_layers(copy_):
                layer.momentum = momentum
            for batch in replay:
                copy_(batch)
            copy_.eval()
            result[f"{name}_accuracy"] = _accuracy(copy_, images, labels, 250)
            result[f"{name}_var_error"] = max(
                float(((ours.running_var - pop.running_var).abs() / pop.running_var).mean())
                for ours, pop in zip(batch_norm_layers(copy_), batch_norm_layers(population)))
        result["population_accuracy"] = _accuracy(population, images, labels, 250)
    return result


def detached_training(images: Tensor, labels: Tensor, test_images: Tensor, test_labels: Tensor,
                      chosen: Setting) -> dict:
    """Train the article's network ``chosen.steps`` steps (plain SGD, batches of 32, seeded)
    with torch's BN and with :class:`~bnlib.exercises.popular.DetachedStatistics`, from the
    same initial weights and batches. For each: the norm of the change of the three convolution
    biases relative to their initial norm (BN makes their gradient zero), the convolution
    weights' norm growth (ratio), the mean train loss of the last 10% of steps and the test
    accuracy in eval mode."""
    torch.manual_seed(chosen.seed)
    start = three_conv_net(batch_norm=True)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(chosen.seed))
    result = {}
    for name, model in (("torch", copy.deepcopy(start)),
                        ("detached", convert(start, popular.DetachedStatistics))):
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        biases = torch.cat([c.bias.detach().clone() for c in convs])
        weights = torch.cat([c.weight.detach().flatten() for c in convs]).norm()
        optimizer = torch.optim.SGD(model.parameters(), lr=chosen.lr)
        losses = []
        model.train()
        for step in _progress(range(chosen.steps), name):
            rows = order[(step * 32) % len(images):][:32]
            loss = F.cross_entropy(model(images[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        tail = losses[-max(1, len(losses) // 10):]
        new_biases = torch.cat([c.bias.detach() for c in convs])
        new_weights = torch.cat([c.weight.detach().flatten() for c in convs]).norm()
        with torch.no_grad():
            result[name] = {
                "bias_change": float((new_biases - biases).norm() / biases.norm()),
                "bias_norm": float(new_biases.norm()),
                "weight_growth": float(new_weights / weights),
                "train_loss": sum(tail) / len(tail),
                "accuracy": _accuracy(model.eval(), test_images, test_labels, 250),
            }
    return result


def _progress(steps: range, name: str):
    if not show_progress():
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=f"short run, {name}", leave=False)


def measure(model: nn.Module, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
            chosen: Setting | None = None, threads: int | None = 1) -> dict:
    """Every measurement of the module for the trained network ``model`` (torch BN), the
    training set ``train`` and the test set ``test`` (images, labels)."""
    chosen = chosen or setting()
    pick = torch.randperm(len(test[0]), generator=torch.Generator().manual_seed(chosen.seed))
    images, labels = test[0][pick[:chosen.test_images]], test[1][pick[:chosen.test_images]]
    order = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(chosen.seed))
    population = train[0][order[:chosen.population_images]]
    with torch_threads(threads), torch.no_grad():
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        conv_batches = [first_conv(b) for b in population[:32 * chosen.replay].split(32)]
    with torch_threads(threads):
        return {
            "normalisation": normalisation_factor(conv_batches[0]),
            "running_variance": running_variance_ratio(conv_batches, chosen.fc_batches),
            "grad_mode": grad_mode_evaluation(model, images, labels),
            "round_trip": round_trip(model, images, labels),
            "momentum": momentum_replay(model, population, images, labels, chosen.replay),
            "detached": detached_training(*train, images, labels, chosen),
            "checker": checker_verdicts(),
            "steps": chosen.steps, "test_images": len(images), "replay": chosen.replay,
            "population_images": len(population),
        }


def checker_verdicts() -> dict:
    """Each variant through :func:`bnlib.exercises.popular.check_batch_norm_module`: whether
    the verdict names it, and which compared quantities are off (case labels dropped)."""
    result = {}
    for name, cls in popular.VARIANTS.items():
        verdict = popular.check_batch_norm_module(cls)
        off = {key.rsplit(" ", 1)[0] for key, error in verdict.errors.items()
               if error > verdict.tolerance}
        result[name] = {"passed": verdict.passed,
                        "named": verdict.mistake == popular.DESCRIPTIONS[name],
                        "off": [o for o in popular.MODULE_OUTPUTS if o in off]}
    return result


def _shows(change: float, kind: str) -> bool:
    return abs(change) > THRESHOLDS[kind]


def findings(results: Mapping[str, Any]) -> dict:
    """Numbers and verdict words for the chapter, and ``shows_<variant>`` (bools) under
    :data:`THRESHOLDS`: whether the check exposes each departure."""
    norm, var = results["normalisation"], results["running_variance"]
    grad, trip = results["grad_mode"], results["round_trip"]
    mom, det = results["momentum"], results["detached"]
    out = {
        "unbiased_fc_factor": norm["fc_variance_factor"],
        "unbiased_fc_error": norm["fc_output_error"],
        "unbiased_conv_factor": norm["conv_variance_factor"],
        "unbiased_conv_values": norm["conv_values_per_channel"],
        "biased_fc_ratio": var["fc_ratio"], "biased_fc_eval_error": var["fc_eval_error"],
        "biased_conv_ratio": var["conv_ratio"],
        "grad_torch": grad["torch_grad"], "grad_variant": grad["variant_grad"],
        "grad_no_grad": grad["variant_no_grad"], "grad_torch_no_grad": grad["torch_no_grad"],
        "grad_drift": grad["running_mean_drift"],
        "trip_before": trip["before"], "trip_reloaded": trip["reloaded"],
        "trip_missing": trip["missing_keys"], "trip_keys": trip["torch_keys"],
        "keras_accuracy": mom["keras_accuracy"], "momentum_accuracy": mom["torch_accuracy"],
        "population_accuracy": mom["population_accuracy"],
        "keras_var_error": mom["keras_var_error"], "momentum_var_error": mom["torch_var_error"],
        "detached_bias_change": det["detached"]["bias_change"],
        "torch_bias_change": det["torch"]["bias_change"],
        "detached_weight_growth": det["detached"]["weight_growth"],
        "torch_weight_growth": det["torch"]["weight_growth"],
        "detached_loss": det["detached"]["train_loss"], "torch_loss": det["torch"]["train_loss"],
        "detached_accuracy": det["detached"]["accuracy"],
        "torch_accuracy": det["torch"]["accuracy"],
        "short_steps": results["steps"], "test_images": results["test_images"],
        "population_images": results["population_images"], "replay_batches": results["replay"],
    }
    shows = {
        "UnbiasedNormalisation": _shows(out["unbiased_fc_factor"] - 1, "relative"),
        "BiasedRunningVariance": _shows(out["biased_fc_ratio"] - 1, "relative"),
        "GradModeSwitch": _shows(out["grad_variant"] - out["grad_torch"], "accuracy"),
        "PlainTensorStatistics": _shows(out["trip_reloaded"] - out["trip_before"], "accuracy"),
        "KerasMomentum": _shows(out["keras_var_error"] - out["momentum_var_error"], "relative"),
        "DetachedStatistics": _shows(
            out["detached_bias_change"] - out["torch_bias_change"], "relative"),
    }
    out.update({f"shows_{name}": value for name, value in shows.items()})
    out["unbiased_conv_visible"] = not abs(out["unbiased_conv_factor"] - 1) < THRESHOLDS[
        "invisible"]
    out["unbiased_conv_word"] = "visible" if out["unbiased_conv_visible"] else "invisible"
    out["shown_count"] = sum(shows.values())
    checker = results["checker"]
    out["checker_named_count"] = sum(v["named"] and not v["passed"] for v in checker.values())
    out.update({f"checker_off_{name}": ", ".join(v["off"]) for name, v in checker.items()})
    return out


def table_rows(found: Mapping[str, Any]) -> list[dict]:
    """One row per variant for :func:`bnlib.tables.table`: the departure, where it is found,
    what the module checker finds off, the check that exposes it, what that check measured,
    and whether it shows."""
    def row(name: str, check: str, effect: str) -> dict:
        key, _ = popular.SOURCES[name]
        return {"departure": popular.DESCRIPTIONS[name], "found in": SHORT_SOURCES[key],
                "module checker: off": found[f"checker_off_{name}"],
                "exposing check": check, "measured": effect,
                "shows": "yes" if found[f"shows_{name}"] else "no"}

    return [
        row("GradModeSwitch", "eval(), gradients on, one image at a time",
            f"accuracy {found['grad_variant']:.1%} (torch {found['grad_torch']:.1%})"),
        row("BiasedRunningVariance", "running variance, FC layer, batch 4",
            f"{found['biased_fc_ratio']:.3f} x torch's (conv: "
            f"{found['biased_conv_ratio']:.6f})"),
        row("UnbiasedNormalisation", "training output variance, FC layer, batch 4",
            f"torch's / variant's {found['unbiased_fc_factor']:.3f} (conv: "
            f"{found['unbiased_conv_factor']:.6f})"),
        row("DetachedStatistics", f"{found['short_steps']} SGD steps, article's network",
            f"conv biases moved {found['detached_bias_change']:.1%} "
            f"(torch {found['torch_bias_change']:.0e})"),
        row("PlainTensorStatistics", "state_dict save and reload",
            f"accuracy {found['trip_reloaded']:.1%} after reload "
            f"(before {found['trip_before']:.1%})"),
        row("KerasMomentum", "running variance against the population's",
            f"error {found['keras_var_error']:.1%} (momentum 0.1: "
            f"{found['momentum_var_error']:.1%})"),
    ]


#: Short names of the sources for the table (the prose cites each in full).
SHORT_SOURCES = {
    "zhang2023dive": "Dive into Deep Learning, 8.5.3",
    "karpathy_makemore3": "Karpathy, makemore part 3",
    "ioffe2015batch": "Ioffe & Szegedy, section 2",
    "deeplab2020momentum": "deeplab-pytorch issue 79",
}
