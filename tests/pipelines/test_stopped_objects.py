"""The robust plate takes the ground back where an object stood longer than the ground was seen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.count_kernels import BINS
from pipelines.stopped_objects import (
    DECISION_MARGIN,
    GROWTH_MARGIN,
    GROWTH_SHARE,
    alternatives,
    ground_grown_inward,
    growth_opening,
    swapped_pixels,
    values_in_window,
)
from pipelines.synthetic import SceneSpec, render_background, write_scene
from storage.errors import InvalidParameterError
from storage.factors import open_factors
from tests.helpers import run_cli

GROUND, OBJECT = 100.0, 200.0


def _coarse(values_per_pixel: list[list[float]]) -> np.ndarray:
    """(16, P) coarse counts of each pixel's values."""
    counts = np.zeros((BINS, len(values_per_pixel)), dtype=np.uint32)
    for pixel, values in enumerate(values_per_pixel):
        for value in values:
            counts[int(value) >> 4, pixel] += 1
    return counts


def test_the_alternative_is_the_densest_value_away_from_the_plate() -> None:
    stood = [GROUND] * 6 + [OBJECT] * 4  # the plate is the ground; an object stood 40 %
    passers = [GROUND] * 6 + [20.0, 130.0, 180.0, 240.0]  # passers-by of every grey
    found = alternatives(_coarse([stood, passers]), [GROUND, GROUND], 25.0)
    assert found.cluster.tolist() == [4, 1]
    assert found.away.tolist() == [4, 4]
    assert found.first_bin[0] <= int(OBJECT) >> 4 <= found.first_bin[0] + 2
    assert abs(found.value[0] - (int(OBJECT) >> 4) * BINS - BINS / 2) < 1e-3
    # the bins within the threshold of the plate never count, however full
    near = alternatives(_coarse([[GROUND] * 6 + [GROUND + 20] * 4]), [GROUND], 25.0)
    assert near.cluster.tolist() == [0]
    with pytest.raises(InvalidParameterError, match=r"\(16, P\)"):
        alternatives(np.zeros((8, 2), np.uint32), [GROUND, GROUND], 25.0)


def _stop_scene(*, plate_holds_object: bool) -> tuple[np.ndarray, object]:
    """A 40x60 plate of textured ground with a 10x10 place where an object stood."""
    rng = np.random.default_rng(0)
    ground = GROUND + rng.normal(0, 2, (40, 60)).astype(np.float32)
    plate = ground.copy()
    if plate_holds_object:
        plate[15:25, 25:35] = OBJECT
    n_counted = 100
    per_pixel = []
    for y in range(40):
        for x in range(60):
            inside = 15 <= y < 25 and 25 <= x < 35
            seen = [ground[y, x]] * (n_counted - 40) + [OBJECT] * 40 if inside else [ground[y, x]] * n_counted
            if inside and plate_holds_object:  # the object 60 %, the ground 40 %
                seen = [OBJECT] * 60 + [ground[y, x]] * 40
            per_pixel.append(seen)
    found = alternatives(_coarse(per_pixel), plate.reshape(-1), 20.0)
    return plate, found


def test_a_stop_in_the_plate_gives_way_to_the_ground_around_it() -> None:
    plate, found = _stop_scene(plate_holds_object=True)
    swapped = swapped_pixels(plate, found, n_counted=100, threshold=20.0)
    assert swapped[16:24, 26:34].all()  # the stop's place, but for its rim's 5x5 vote
    assert not swapped[:14].any() and not swapped[26:].any()


def test_a_plate_that_shows_the_ground_keeps_it() -> None:
    plate, found = _stop_scene(plate_holds_object=False)  # the object stood 40 %: the median is right
    swapped = swapped_pixels(plate, found, n_counted=100, threshold=20.0)
    assert not swapped.any()
    with pytest.raises(InvalidParameterError, match="a \\(y, x\\) plate"):
        swapped_pixels(plate[:10], found, n_counted=100, threshold=20.0)


def _place(
    *, shape: tuple[int, int], rows: slice, cols: slice, plate_value: float, plate_share: float, ground: float
) -> tuple[np.ndarray, object, int]:
    """A flat plate of ``ground`` holding a place of ``plate_value`` seen ``plate_share`` of
    the frames there; the rest of the place's frames show ``ground``."""
    n_counted = 100
    plate = np.full(shape, ground, dtype=np.float32)
    plate[rows, cols] = plate_value
    place = np.zeros(shape, dtype=bool)
    place[rows, cols] = True
    seen = round(plate_share * n_counted)
    per_pixel = [
        [plate_value] * seen + [ground] * (n_counted - seen) if inside else [ground] * n_counted
        for inside in place.reshape(-1)
    ]
    return plate, alternatives(_coarse(per_pixel), plate.reshape(-1), THRESHOLD), n_counted


THRESHOLD = 15.0
# a place whose plate differs from the ground by more than the growth's margin, less than the
# inpainting's: 2.7 thresholds, so only the ground grown inward can give it back
NEAR_GREY = GROUND + 2.7 * THRESHOLD


def _wide_place(plate_share: float) -> tuple[np.ndarray, object, int]:
    """A 40x40 place in a 60x80 plate, its plate ``NEAR_GREY`` seen ``plate_share`` there."""
    return _place(
        shape=(60, 80),
        rows=slice(10, 50),
        cols=slice(20, 60),
        plate_value=NEAR_GREY,
        plate_share=plate_share,
        ground=GROUND,
    )


def test_a_wide_place_gives_way_to_the_ground_grown_inward() -> None:
    assert GROWTH_MARGIN < 2.7 < DECISION_MARGIN
    plate, found, n_counted = _wide_place(0.6)
    swapped = swapped_pixels(plate, found, n_counted=n_counted, threshold=THRESHOLD)
    assert swapped[12:48, 22:58].all()
    assert not swapped[:8].any() and not swapped[52:].any() and not swapped[:, :18].any()


def test_a_thin_line_of_the_plate_stays_though_the_ground_around_it_is_another_grey() -> None:
    width = 3  # a painted line; the opening's disc is wider
    assert growth_opening((60, 80)) >= width + 2
    plate, found, n_counted = _place(
        shape=(60, 80),
        rows=slice(5, 55),
        cols=slice(38, 38 + width),
        plate_value=NEAR_GREY,
        plate_share=0.6,
        ground=GROUND,
    )
    assert not swapped_pixels(plate, found, n_counted=n_counted, threshold=THRESHOLD).any()


def test_a_plate_seen_far_more_often_than_its_alternative_stays() -> None:
    """The plate's band holds 80 % of the frames, the alternative 20 %: it is the ground."""
    assert GROWTH_SHARE * 0.8 > 0.2
    plate, found, n_counted = _wide_place(0.8)
    assert not swapped_pixels(plate, found, n_counted=n_counted, threshold=THRESHOLD).any()


def test_the_ground_grown_inward_carries_each_pixels_own_values_to_the_middle() -> None:
    """Across a wide hole the pixels' own alternatives carry the ground, where an inpainting fades."""
    plate = np.full((40, 40), GROUND, dtype=np.float32)
    plate[5:35, 5:35] = OBJECT
    holes = np.zeros((40, 40), dtype=bool)
    holes[3:37, 3:37] = True
    value = np.full((40, 40), GROUND + 4, dtype=np.float32)  # the ground as each pixel saw it
    candidate = holes.copy()
    grown = ground_grown_inward(plate, value, candidate=candidate, holes=holes)
    assert np.abs(grown[holes] - GROUND).max() <= 4.0  # the middle too, 15 pixels from the border
    np.testing.assert_array_equal(grown[~holes], plate[~holes])
    # a pixel that may not take its alternative carries its plate on
    kept = ground_grown_inward(plate, value, candidate=np.zeros_like(holes), holes=holes)
    assert kept[20, 20] == OBJECT
    untouched = ground_grown_inward(plate, value, candidate=candidate, holes=np.zeros_like(holes))
    np.testing.assert_array_equal(untouched, plate)
    everywhere = ground_grown_inward(plate, value, candidate=candidate, holes=np.ones_like(holes))
    np.testing.assert_array_equal(everywhere, plate)  # no border to grow from


def test_the_new_value_is_the_exact_median_inside_the_window_away_from_the_plate() -> None:
    counts = np.zeros((256, 2), dtype=np.uint32)
    counts[200, 0], counts[204, 0], counts[230, 0] = 3, 4, 5  # the window 192-239
    counts[100, 0] = 50  # the plate's own frames: away from the window
    counts[250, 0] = 9  # outside the window
    counts[100, 1] = 10  # nothing in the window
    medians = values_in_window(counts, first_bin=np.array([12, 12]), plate=[100.0, 100.0], threshold=20.0)
    assert medians[0] == 204 and np.isnan(medians[1])


def test_run_gives_back_the_ground_where_walkers_stood_most_of_the_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Walkers standing for 60 % of the clip: the median keeps them, the robust plate does not.

    Measured on seeds 1-3: F 0.96-0.99 against the median's 0.79-0.86 (svd 0.87-0.93);
    the plate 0.5-1.0 grey levels from the clean ground on average, the median's 2.3-3.8.
    """
    spec = SceneSpec(
        width=96, height=72, n_frames=100, n_objects=3, pause_fraction=0.6, noise_sigma=2.0, seed=1
    )
    video, truth, out = tmp_path / "stops.mp4", tmp_path / "truth", tmp_path / "out"
    write_scene(spec, video, truth_dir=truth, truth_every=1)
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    assert "robust: the ground back on" in stderr
    store = out / "store.zarr"
    assert open_factors(store, "robust").passes == 4  # the counts, then the columns taken back
    status, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "--store",
        str(store),
        "--truth",
        str(truth),
        "--models",
        "median",
        "--json",
        "--quiet",
    )
    assert status == 0, stderr
    scores = json.loads(stdout)
    assert scores["vidsvd"]["f_measure"] > 0.95
    assert scores["vidsvd"]["f_measure"] > scores["vidsvd-median"]["f_measure"] + 0.08
    ground = render_background(spec).astype(np.float32)

    def plate_error(model: str) -> float:
        factors = open_factors(store, model)
        u, s, vt = (np.asarray(a, dtype=np.float64) for a in (factors.U[:, 0], factors.s[0], factors.Vt[0]))
        return float(np.mean(np.abs((u * s * vt.mean()).reshape(ground.shape) - ground)))

    assert plate_error("robust") < 1.5 < 2.0 < plate_error("median")


def test_run_gives_back_the_ground_of_a_wide_stop_under_drifting_light(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A walker standing for 55 % of the clip while the light drifts: its place is wide, and
    the ground grown inward gives it back where the inpainted ground's margin did not.

    Measured: F 0.988 (0.934 by the inpainted ground alone); seeds 1 and 3 of the same
    scene, 0.988 and 0.987, were right before.
    """
    spec = SceneSpec(
        width=96,
        height=72,
        n_frames=100,
        n_objects=4,
        pause_fraction=0.55,
        illumination_drift=0.2,
        noise_sigma=2.0,
        seed=2,
    )
    video, truth, out = tmp_path / "stop.mp4", tmp_path / "truth", tmp_path / "out"
    write_scene(spec, video, truth_dir=truth, truth_every=1)
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    status, stdout, stderr = run_cli(
        capsys, "evaluate", "--store", str(out / "store.zarr"), "--truth", str(truth), "--json", "--quiet"
    )
    assert status == 0, stderr
    assert json.loads(stdout)["vidsvd"]["f_measure"] > 0.97
