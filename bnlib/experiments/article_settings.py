"""The article's training settings, in a module of their own that imports nothing, so the
command line (:mod:`bnlib.experiment`) reads its defaults before it imports torch.
:mod:`bnlib.experiments.hindi_digits` holds the rest of the article's numbers and re-exports
:data:`ARTICLE`.
"""

__all__ = ["ARTICLE"]

#: The article's training settings (its notebook, cells 2-3 and ``ml_utils.train_model``).
#: The notebook sets the seed once, at its start, and builds and trains the network without
#: BN before it builds the one with BN; ``hindi_digits.article_config`` seeds every run itself.
ARTICLE = {"lr": 0.001, "batch_size": 32, "epochs": 30, "seed": 5842, "optimizer": "sgd"}
