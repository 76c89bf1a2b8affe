"""The book's figures, as functions of a history or a measurement (matplotlib).

One submodule per topic; each function takes data and returns a ``matplotlib.figure.Figure``
(or draws on an ``Axes`` passed in), with labelled axes and units.

Importing the package applies the book's style (:mod:`bnlib.plots.style`: text sizes for the
column width, an opaque white background) to every figure drawn afterwards.
"""

from bnlib.plots.data import digit_grid
from bnlib.plots.training import accuracy_per_epoch, descent_path, train_loss_per_epoch
from bnlib.plots.equations import affine_frame, batch_size_frame, computational_graph, normalised_axes
from bnlib.plots.shift import figure1, ics_over_steps, landscape_over_steps, percentile_bands
from bnlib.plots.variants import batch_size_curve, normalisation_blocks
from bnlib.plots.distributed import replica_sweep
from bnlib.plots.inference import batch_gap_figure, mode_gap_figure, recalibration_figure, running_average_frame, train_mode_accuracy_figure
from bnlib.plots.style import apply_style, show_figures_with_style

apply_style()
show_figures_with_style()

__all__ = [
    "accuracy_per_epoch", "affine_frame", "batch_gap_figure", "batch_size_curve",
    "batch_size_frame", "computational_graph", "descent_path", "digit_grid", "figure1",
    "ics_over_steps", "landscape_over_steps", "mode_gap_figure", "normalisation_blocks",
    "normalised_axes", "percentile_bands", "recalibration_figure", "replica_sweep", "running_average_frame",
    "train_loss_per_epoch", "train_mode_accuracy_figure",
]
