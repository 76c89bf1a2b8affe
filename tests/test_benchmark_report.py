"""bnlib.benchmark_report: rows and sentences from recorded benchmark results, whole or with
keys missing (a renamed key must not break a page)."""

import pytest

from bnlib import benchmark_report as report
from bnlib.timing import benchmark_result

SPEED = {
    "cpus": 2,
    "matmul_gflops_one_thread": 110.0,
    "one_run": {"with_bn": {"plain_images_per_s": 600.0, "bnlib_images_per_s": 900.0,
                            "speedup": 1.5, "plain_fraction_of_peak": 0.31,
                            "bnlib_fraction_of_peak": 0.46}},
    "comparison": {"runs": 4, "speedup": 0.8, "plain_threads": 2},
}


def test_lookup_walks_keys_and_indices_and_gives_none_when_missing():
    data = {"a": [{"b": 1}]}
    assert report.lookup(data, "a", 0, "b") == 1
    assert report.lookup(data, "a", 1, "b") is None
    assert report.lookup(data, "x", "b") is None
    assert report.lookup(None, "a") is None
    assert report.lookup({"a": 3}, "a", "b") is None


def test_training_sentence_with_every_number():
    text = report.training_sentence(SPEED)
    assert "on a machine with 2 cores" in text
    assert "900 images per second on one core" in text
    assert "1.50 times the rate of a plain PyTorch training loop" in text
    assert "46% of the speed of a large matrix product" in text and "110 GFLOP/s" in text


def test_training_sentence_leaves_out_what_is_missing():
    partial = {"one_run": {"with_bn": {"bnlib_images_per_s": 900.0}}}
    text = report.training_sentence(partial)
    assert "900 images per second" in text and "times the rate" not in text
    assert "benchmark's machine" in text and "matrix product" not in text
    peak_only = report.training_sentence({"one_run": {"with_bn": {
        "bnlib_fraction_of_peak": 0.5}}})
    assert peak_only.startswith("Its arithmetic ran at 50%") and "GFLOP/s" not in peak_only
    for nothing in (None, {}, {"one_run": {}}):
        assert "has not been measured" in report.training_sentence(nothing)


def test_rows_leave_missing_cells_out():
    rows = report.training_rows(SPEED)
    assert rows == [{"model": "with_bn", "plain img/s": 600.0, "bnlib img/s": 900.0,
                     "speed-up": 1.5, "plain of peak": 0.31, "bnlib of peak": 0.46}]
    text = str(report.training_table(SPEED))
    assert "110 GFLOP/s" in text and "4 runs over worker processes: 0.80x as fast" in text
    assert report.training_rows({"one_run": {"with_bn": {}}}) == [{"model": "with_bn"}]
    assert report.layer_rows({"results": [{"threads": 1, "shape": [32, 16, 8, 8]}]}) == [
        {"threads": 1, "shape": "32x16x8x8"}]
    assert report.fold_rows({"results": [{"batch_size": 1, "speedup": 1.2}]}) == [
        {"batch": 1, "speed-up": 1.2}]
    assert report.command_line_rows({"settings": {"start_up": {"speedup": 0.9}}}) == [
        {"setting": "1 epoch of 2,000", "ratio": 0.9}]
    for rows in (report.layer_rows, report.fold_rows, report.training_rows,
                 report.command_line_rows):
        assert rows(None) == []
    for render in (report.layer_table, report.fold_table, report.training_table,
                   report.command_line_table):
        empty = render(None)
        assert empty.cells == [] and empty.caption
        assert empty.notes == ["not measured yet (make bench measures it)."]


def test_tables_say_the_machine_below_the_rows():
    layers = {"torch": "2.13", "results": [{"threads": 1, "shape": [32, 16, 8, 8],
                                            "torch_ms": 1.0, "bnlib_over_torch": 1.25}]}
    t = report.layer_table(layers)
    assert t.caption.startswith("BatchNorm2d forward and backward")
    assert t.header == ["threads", "shape", "torch ms", "bnlib/torch", "NumPy/torch"]
    assert t.cells == [["1", "32x16x8x8", "1.00", "1.25", ""]]
    assert t.notes == ["Measured on torch 2.13."]


def test_the_command_line_table_gives_medians_and_the_spread_per_setting():
    result = {"settings": {"two_epochs": {
        "pairs": 5, "plain_median_seconds": 22.31, "command_median_seconds": 16.84,
        "speedup": 1.3834, "speedup_spread": [1.296, 1.566]}}}
    t = report.command_line_table(result)
    assert t.header == ["setting", "pairs", "plain s", "command s", "ratio", "low", "high"]
    assert t.cells == [["2 epochs of 17,000", "5", "22.3", "16.8", "1.38", "1.30", "1.57"]]


def test_machine():
    assert report.machine({"torch": "2.13", "cpus": 2, "load_before": [1.3],
                           "load_after": [1.5]}) == (
        "torch 2.13, 2 CPUs, load 1.3 before and 1.5 after")
    chip = {"processor": {"model_name": "AMD EPYC", "family": "26", "model": "2",
                          "stepping": "1", "torch_cpu_capability": "AVX512"}}
    assert report.machine(chip) == (
        "AMD EPYC (family 26, model 2, stepping 1), torch kernels AVX512")
    assert report.processor({"processor": {"family": "6"}}) == "processor (family 6)"
    assert report.processor({"processor": {}}) is None
    assert report.machine({"load_average_before": [2.0, 1.0], "load_average_after": [3.0]}) == (
        "load 2.0 before and 3.0 after")
    assert report.machine(None) == "machine not recorded"


@pytest.mark.parametrize("name", ["layers", "train_speed", "fold_speed", "command_line"])
def test_the_recorded_results_render(name):
    result = benchmark_result(name)
    for render in (report.layer_table, report.fold_table, report.training_table,
                   report.command_line_table, report.training_sentence):
        text = str(render(result))
        assert max(len(line) for line in text.splitlines()) <= 79 or render is (
            report.training_sentence)
    for render in (report.layer_table, report.fold_table, report.training_table,
                   report.command_line_table):
        page = render(result)._repr_html_()  # what the API page shows
        assert page.startswith('<table class="bnlib-table"><caption>')
