"""detect.compare.plots: the accuracy-against-time axis and the figure file."""

import math

import cv2

from detect.compare.plots import plot_accuracy_vs_time, time_axis_scale


def test_times_within_a_decade_get_a_linear_axis_and_wider_spreads_a_log_one():
    assert time_axis_scale([1.7, 2.3, 2.2]) == "linear"  # a benchmark's three small CPU models
    assert time_axis_scale([1.5, 15.0]) == "log"
    assert time_axis_scale([1.5, 14.9]) == "linear"
    assert time_axis_scale([math.nan, 0.0, 3.0, 90.0]) == "log"  # unreadable or zero times are left out
    assert time_axis_scale([math.nan]) == "linear"


def test_the_plot_is_written_and_skips_a_model_without_a_time(tmp_path):
    path = tmp_path / "accuracy_vs_time.png"
    plot_accuracy_vs_time(
        [("a", 1.7, 0.65, 0.57, 0.73), ("b", 2.3, 0.9, 0.84, 0.95), ("c", math.nan, 0.5, 0.4, 0.6)], path
    )
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100


def test_a_log_axis_labels_2_and_5_of_each_decade_between_the_powers_of_ten():
    from detect.compare.plots import _minor_log_label

    assert [_minor_log_label(ms, 0) for ms in (2.0, 3.0, 5.0, 20.0, 50.0, 70.0, 0.2)] == [
        "2",
        "",
        "5",
        "20",
        "50",
        "",
        "0.2",
    ]
