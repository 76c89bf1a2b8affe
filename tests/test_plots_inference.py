"""The figures of chapter 03 draw with labelled axes."""

import numpy as np



def test_chapter_figures_draw_with_labelled_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bnlib.plots import inference as plots

    rng = np.random.default_rng(0)
    trace = {key: rng.normal(size=(20, 3)).tolist() for key in
             ("batch_mean", "batch_var", "population_mean", "population_var")}
    figures = [
        plots.running_average_frame(trace, channel=1, momentum=None),
        plots.running_average_frame(trace, channel=1, momentum=0.1),
        plots.train_mode_accuracy_figure(
            [{"order": "shuffled", "batch_size": b, "accuracy": 0.9} for b in (1, 8)], 0.95),
        plots.batch_gap_figure([{"batch_size": b, "mean_error": 1 / b, "variance_ratio": 0.9} for b in (1, 4)]),
        plots.mode_gap_figure([{"batch_size": 4, "train_mode_accuracy": 0.8, "eval_mode_accuracy": 0.9}]),
        plots.recalibration_figure([{"samples": 10, "draw": 0, "test_accuracy": 0.9}], 0.95, 0.96, 100),
    ]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel()
        plt.close(fig)
