"""The plain PyTorch loop a competent user writes for the Hindi-digits comparison.

The images preloaded as tensors, the default memory format and thread count, the article's
network (``bnlib.models.three_conv_net``, the same layers and initial weights as bnlib's runs),
``nn.CrossEntropyLoss``, ``zero_grad/backward/step`` with plain SGD (lr 0.001, batch 32), the
test accuracy after every epoch; both networks one after the other, seed by seed::

    python benchmarks/baselines/plain_loop.py --epochs 2 --seeds 1
    python benchmarks/baselines/plain_loop.py --epochs 1 --train-subset 2000

It is the baseline of ``benchmarks/command_line.py`` (whole processes, start-up included) and
of ``benchmarks/train_speed.py`` (:func:`plain_run`, in the benchmark's own process).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from bnlib.data import load_hindi_digits
from bnlib.models import three_conv_net

__all__ = ["load", "main", "plain_run"]

#: The article's seed, the first of ``python -m bnlib.experiment``'s seeds.
FIRST_SEED = 5842


def plain_run(data, batch_norm: bool, seed: int, epochs: int) -> float:
    """``epochs`` epochs of training, each followed by the test accuracy, on ``data`` =
    ``(x, y, x_test, y_test)``. Returns the seconds of the last epoch (training and test)."""
    x, y, x_test, y_test = data
    torch.manual_seed(seed)
    model = three_conv_net(batch_norm)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    criterion = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(seed + 2)
    last = 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=shuffle)
        for start in range(0, len(x), 32):
            batch = order[start : start + 32]
            loss = criterion(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            sum(int((model(x_test[s : s + 250]).argmax(1) == y_test[s : s + 250]).sum())
                for s in range(0, len(x_test), 250))
        last = time.perf_counter() - started
    return last


def load(train_images: int | None = None, test_images: int | None = None):
    """``(x, y, x_test, y_test)``: the first ``train_images`` and ``test_images`` of each split
    (``None``: all of it)."""
    x, y = load_hindi_digits("train")
    x_test, y_test = load_hindi_digits("test")
    return x[:train_images], y[:train_images], x_test[:test_images], y_test[:test_images]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    args = parser.parse_args(argv)
    data = load(args.train_subset, args.test_subset)
    for batch_norm in (True, False):
        for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
            plain_run(data, batch_norm, seed, args.epochs)


if __name__ == "__main__":
    main()
