"""The figures of chapter 01 label their axes, from results shaped like the probes'."""

import matplotlib.pyplot as plt

from bnlib.plots import shift as plots


class FakeHistory:
    """Just what the figures read from a bnlib.training.History."""

    def __init__(self, band):
        self.initial = {"test_accuracy": 0.1}
        self.step_evals = [{"step": 5, "test_accuracy": 0.5}, {"step": 10, "test_accuracy": 0.8}]
        self.probes = {"percentiles": band}


def test_figures_have_labelled_axes():
    band = {"step": [0.0, 5.0, 10.0], "p15": [-1.0, -2.0, -1.5], "p50": [0.0, 0.1, 0.2],
            "p85": [1.0, 2.0, 1.5]}
    ics = {"step": [0.0, 5.0], "relative": [0.1, 0.2], "cosine": [0.9, 0.8]}
    land = {"step": [0.0, 5.0], "loss_min": [1.0, 0.5], "loss_max": [2.0, 1.0],
            "grad_change_min": [0.1, 0.2], "grad_change_max": [0.3, 0.4],
            "beta_smoothness": [2.0, 3.0]}
    histories = {"standard": FakeHistory(band), "BN": FakeHistory(band)}
    figures = [
        plots.figure1(histories, "percentiles", "input to sigmoid"),
        plots.percentile_bands({"noisy BN": band}, "input to sigmoid"),
        plots.ics_over_steps({"standard": ics, "BN": ics}, "layer 2"),
        plots.landscape_over_steps({"standard": land}),
        plots.accuracy_over_steps(histories),
    ]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() == "training step"
        assert fig.axes[0].get_ylabel()
        plt.close(fig)
