"""Cast shadows out of the masks: the ratio, the candidates, the rule of the components and regions."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.factor_masks import factor_mask_block
from pipelines.mask_cleanup import clean_masks
from pipelines.shadow_edges import cleaned_without_shadows, without_edges
from pipelines.shadows import (
    MIN_BACKGROUND,
    MIN_SAMPLE_PIXELS,
    RATIO_BAND,
    RATIO_BINS,
    SLOPE_SHARE,
    clean_without_shadows,
    drop_shadows,
    frame_noise_sigma,
    mask_block_without_shadows,
    ratio_counts,
    shadow_candidates,
    shadow_ratio_of,
)
from storage.errors import InvalidParameterError

GROUND = 120.0


def _ground(height: int = 40, width: int = 60) -> np.ndarray:
    """(1, y, x) float32 ground with a pattern: stripes across and a slow change down, 85-155."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return (GROUND + 25 * np.sin(0.7 * xx) + 10 * np.cos(0.5 * yy))[np.newaxis]


def _walker_and_shadow(*, ratio: float = 0.6, flat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One 40x60 frame of ground, a bright textured object and its shadow beside it.

    The ground has a pattern, which the shadow keeps darkened, unless ``flat``.
    """
    background = np.full((1, 40, 60), GROUND, dtype=np.float32) if flat else _ground()
    frames = background.copy()
    frames[0, 10:30, 10:25] = 220 + 20 * np.sin(np.arange(15))  # the object: brighter
    frames[0, 10:30, 25:40] = np.rint(background[0, 10:30, 25:40] * ratio)  # its shadow, on its right
    return frames.astype(np.uint8), background


def test_the_shadow_ratio_is_the_commonest_darkening_of_the_masked_pixels() -> None:
    frames, background = (np.repeat(a, 2, axis=0) for a in _walker_and_shadow(ratio=0.6))
    above = np.abs(frames - background) > 20
    counts = ratio_counts(frames, background, above)
    assert counts.shape == (RATIO_BINS,)
    assert counts.sum() == 2 * 20 * 15  # only the darker pixels: the shadow
    assert shadow_ratio_of(counts) == pytest.approx(0.6, abs=0.01)


def test_a_mode_at_either_end_of_the_range_or_too_few_pixels_is_no_shadow_ratio() -> None:
    dark_objects = np.zeros(RATIO_BINS, dtype=np.int64)
    dark_objects[0] = 10 * MIN_SAMPLE_PIXELS  # ratios piled at 0.30: dark objects
    assert shadow_ratio_of(dark_objects) is None
    near_one = np.zeros(RATIO_BINS, dtype=np.int64)
    near_one[-1] = 10 * MIN_SAMPLE_PIXELS
    assert shadow_ratio_of(near_one) is None
    few = np.zeros(RATIO_BINS, dtype=np.int64)
    few[30] = MIN_SAMPLE_PIXELS - 1
    assert shadow_ratio_of(few) is None
    few[30] += 1
    assert shadow_ratio_of(few) == pytest.approx(0.605)
    few[30] = 50  # counted on a tenth of the rows: a tenth of the pixels is enough
    assert shadow_ratio_of(few) is None
    assert shadow_ratio_of(few, min_pixels=MIN_SAMPLE_PIXELS // 10) == pytest.approx(0.605)
    with pytest.raises(InvalidParameterError, match=f"need {RATIO_BINS} ratio counts"):
        shadow_ratio_of(np.ones(10))


def test_candidates_are_within_the_band_on_ground_bright_enough() -> None:
    background = np.array([100.0, 100.0, 100.0, MIN_BACKGROUND - 1], dtype=np.float32)
    frames = np.array([60, 64, 66, 9], dtype=np.uint8)  # 0.60, 0.64, 0.66 and a dark pixel at 0.6
    np.testing.assert_array_equal(
        shadow_candidates(frames, background, ratio=0.6), [True, True, False, False]
    )
    with pytest.raises(InvalidParameterError, match=r"in \(0, 1\)"):
        shadow_candidates(frames, background, ratio=1.2)


def _dropped(
    frames: np.ndarray, background: np.ndarray, *, ratio: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels over a threshold of 20, and those of them :func:`drop_shadows` keeps."""
    above = np.abs(frames.astype(np.float32) - background) > 20
    candidates = shadow_candidates(frames, background, ratio=ratio)
    return above, drop_shadows(above, candidates, frames=frames, background=background, ratio=ratio)


def test_a_shadow_leaves_the_mask_and_a_flat_dark_object_stays() -> None:
    frames, background = _walker_and_shadow(ratio=0.6)
    frames[0, 33:38, 45:55] = GROUND * 0.6  # a flat dark object, as dark as a shadow on average
    above, kept = _dropped(frames, background)
    assert kept[0, 10:30, 10:25].all()  # the object
    assert above[0, 10:30, 25:40].all() and not kept[0, 10:30, 25:40].any()  # its shadow
    lone = (slice(None), slice(33, 38), slice(45, 55))
    assert above[lone].mean() > 0.8  # the flat object, where it differs from the ground: no pattern
    np.testing.assert_array_equal(kept[lone], above[lone])
    with pytest.raises(InvalidParameterError, match="one shape"):
        drop_shadows(frames > 0, frames[:, :10] > 0, frames=frames, background=background, ratio=0.6)


def test_a_flat_dark_part_of_an_object_at_the_shadow_s_ratio_stays() -> None:
    """Darker than the ground by the ratio on average, but without the ground's pattern."""
    frames, background = _walker_and_shadow(ratio=0.6)
    legs = (slice(None), slice(32, 40), slice(8, 20))  # below the object, apart from its shadow
    rows = np.arange(8, dtype=np.float32)[:, np.newaxis]
    frames[legs] = np.rint(GROUND * 0.6 + 6 * np.cos(1.3 * rows) + np.zeros((8, 12)))  # their own folds
    candidates = shadow_candidates(frames, background, ratio=0.6)
    assert candidates[legs].sum() >= 20  # many of the legs' pixels match the ratio
    above, kept = _dropped(frames, background)
    assert above[legs].mean() > 0.8
    np.testing.assert_array_equal(kept[legs], above[legs])
    assert not kept[0, 10:30, 25:40].any()  # the shadow still goes


def test_a_shadow_whose_caster_is_out_of_the_mask_leaves_too() -> None:
    """A building's shade, or a caster outside the view: the ground's pattern darkened is a shadow."""
    frames, background = _walker_and_shadow(ratio=0.6)
    frames[0, 10:30, 10:25] = background[0, 10:30, 10:25].astype(np.uint8)  # no object, its shadow alone
    above, kept = _dropped(frames, background)
    assert above[0, 10:30, 25:40].all() and not kept[0, 10:30, 25:40].any()


def test_a_region_that_follows_the_ground_only_loosely_stays() -> None:
    """The slope of a shadow's, but the ground's pattern explains too little of it (R^2 about 0.2)."""
    frames, background = _walker_and_shadow(ratio=0.6)
    noise = np.random.default_rng(1).normal(0, 30, (20, 15))
    frames[0, 10:30, 25:40] = np.clip(np.rint(background[0, 10:30, 25:40] * 0.6 + noise), 0, 255)
    candidates = shadow_candidates(frames, background, ratio=0.6)
    assert candidates[0, 10:30, 25:40].sum() >= 40
    above, kept = _dropped(frames, background)
    np.testing.assert_array_equal(kept[0, 10:30, 25:40], above[0, 10:30, 25:40])
    frames[0, 10:30, 25:40] = np.clip(np.rint(background[0, 10:30, 25:40] * 0.6 + noise / 4), 0, 255)
    above, kept = _dropped(frames, background)  # the same region, a quarter of the noise: a shadow
    assert not (
        kept[0, 10:30, 25:40] & shadow_candidates(frames, background, ratio=0.6)[0, 10:30, 25:40]
    ).any()


def test_a_region_with_a_fainter_copy_of_the_ground_s_pattern_stays() -> None:
    """As dark as a shadow on average, but its pattern a third of the ground's: not the ground darkened."""
    frames, background = _walker_and_shadow(ratio=0.6)
    ground = background[0, 10:30, 25:40]
    frames[0, 10:30, 25:40] = np.rint(0.6 * ground.mean() + 0.2 * (ground - ground.mean()))
    assert shadow_candidates(frames, background, ratio=0.6)[0, 10:30, 25:40].sum() >= 20
    above, kept = _dropped(frames, background)
    np.testing.assert_array_equal(kept[0, 10:30, 25:40], above[0, 10:30, 25:40])


def test_on_flat_ground_a_shadow_cannot_be_told_from_an_object_and_stays() -> None:
    frames, background = _walker_and_shadow(ratio=0.6, flat=True)
    above, kept = _dropped(frames, background)
    assert above[0, 10:30, 10:40].all() and kept[0, 10:30, 10:40].all()


SHADOW = (slice(None), slice(10, 40), slice(30, 55))
"""Where :func:`_asphalt_with_noise` casts its shadow."""


def _asphalt_with_noise(*, pattern: float = 2.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 50x70 frame of ground with a weak pattern and noise (sd 2), an object and its shadow.

    As on a road: the shadow, ``SHADOW``, keeps the ground's pattern (of amplitude
    ``pattern``: sd 1.6 by default), but the noise hides most of it (R^2 about 0.2).
    """
    rng = np.random.default_rng(seed)
    xx = np.arange(70, dtype=np.float32)
    background = np.broadcast_to(GROUND + pattern * np.sin(0.9 * xx), (1, 50, 70)).astype(np.float32)
    clean = background.copy()
    clean[0, 10:40, 10:30] = 220 + 20 * np.sin(np.arange(20))  # the object: brighter
    clean[SHADOW] = background[SHADOW] * 0.6
    frames = np.clip(np.rint(clean + rng.normal(0, 2, clean.shape)), 0, 255).astype(np.uint8)
    return frames, background


def test_on_weakly_textured_ground_a_shadow_whose_residual_is_noise_leaves() -> None:
    frames, background = _asphalt_with_noise()
    ground, frame = background[SHADOW].ravel(), frames[SHADOW].ravel().astype(np.float64)
    assert np.corrcoef(ground, frame)[0, 1] ** 2 < 0.3  # the ground's pattern explains too little
    above, kept = _dropped(frames, background)
    assert above[SHADOW].all()
    leaving = above[SHADOW] & ~kept[SHADOW]
    assert leaving.mean() > 0.9  # the candidates: all but the noise's outliers
    assert kept[0, 10:40, 10:30].all()  # the object


def test_on_weakly_textured_ground_a_region_with_a_pattern_of_its_own_stays() -> None:
    """The shadow's slope and darkness, but folds of its own (sd 3.5) on top: more than the noise.

    The ground's pattern (sd 2.8) makes the slope's test pass, and explains too little
    of the folds (R^2 about 0.15): only the residual's size tells them from a shadow.
    """
    frames, background = _asphalt_with_noise(pattern=4.0)
    rows = np.arange(30, dtype=np.float32)[:, np.newaxis]
    part = frames[SHADOW][0].astype(np.float32) + 5 * np.cos(1.1 * rows) * np.ones((1, 25))
    frames[SHADOW] = np.clip(np.rint(part), 0, 255).astype(np.uint8)
    assert shadow_candidates(frames, background, ratio=0.6)[SHADOW].sum() >= 20
    above, kept = _dropped(frames, background)
    np.testing.assert_array_equal(kept[SHADOW], above[SHADOW])


def test_on_weakly_textured_ground_a_shadow_whose_slope_the_plate_s_errors_weaken_leaves() -> None:
    """The plate holds the ground's weak pattern (sd 2) plus errors of its own (sd 1.5), which the
    frame does not follow: the shadow's slope on it falls short of SLOPE_SHARE of the ratio, but
    the shadow is the ground times its ratio within the noise, and a flat object beside it is not."""
    rng = np.random.default_rng(3)
    xx = np.arange(70, dtype=np.float32)
    ground = np.broadcast_to(GROUND + 2.8 * np.sin(0.9 * xx), (1, 50, 70)).astype(np.float32)
    background = ground + rng.normal(0, 1.5, ground.shape).astype(np.float32)
    clean = ground.copy()
    clean[0, 10:40, 10:30] = 220 + 20 * np.sin(np.arange(20))  # the object: brighter
    clean[SHADOW] = ground[SHADOW] * 0.6
    clean[0, 43:49, 5:60] = GROUND * 0.6  # a flat object as dark as the shadow, apart from it
    frames = np.clip(np.rint(clean + rng.normal(0, 2, clean.shape)), 0, 255).astype(np.uint8)
    slope = np.polyfit(background[SHADOW].ravel(), frames[SHADOW].ravel().astype(np.float64), 1)[0]
    assert slope < SLOPE_SHARE * 0.6  # the pattern's test alone keeps it
    above, kept = _dropped(frames, background)
    assert (above[SHADOW] & ~kept[SHADOW]).mean() > 0.9
    assert kept[0, 10:40, 10:30].all()  # the object
    flat = (slice(None), slice(43, 49), slice(5, 60))
    assert above[flat].mean() > 0.9
    np.testing.assert_array_equal(kept[flat], above[flat])


def test_the_frame_s_noise_is_measured_outside_its_mask() -> None:
    frames, background = _asphalt_with_noise()
    mask = np.abs(frames.astype(np.float32) - background) > 20  # the object and its shadow
    sigma = frame_noise_sigma(frames[0], background[0], mask[0])
    assert sigma == pytest.approx(2.0, rel=0.15)
    assert frame_noise_sigma(frames[0], background[0], np.ones_like(mask[0])) == 0.0  # nothing unmasked
    assert frame_noise_sigma(frames[0], background[0], mask[0].view(np.uint8) * 255) == sigma  # 0/255
    big = np.tile(frames[0], (6, 6))  # 300 x 420: on every third row and column (every second: 31,500)
    big_ground, big_mask = np.tile(background[0], (6, 6)), np.tile(mask[0], (6, 6))
    sigma_big = frame_noise_sigma(big, big_ground, big_mask)
    assert sigma_big == pytest.approx(2.0, rel=0.15)
    off_grid = big.copy()
    off_grid[np.arange(300) % 3 != 0] = 0  # rows off the grid: not counted
    assert frame_noise_sigma(off_grid, big_ground, big_mask) == sigma_big
    on_grid = big.copy()
    on_grid[::3, ::3] = np.clip(big_ground[::3, ::3] + 20, 0, 255).astype(np.uint8)  # what is counted
    assert frame_noise_sigma(on_grid, big_ground, big_mask) != sigma_big
    dark = big_ground.copy()
    dark[:150] = MIN_BACKGROUND - 1  # pixels on too dark a ground: not counted
    scattered = big.copy()
    scattered[:150] = np.random.default_rng(1).integers(0, 255, scattered[:150].shape)
    assert frame_noise_sigma(scattered, dark, big_mask) == pytest.approx(2.0, rel=0.15)
    with pytest.raises(InvalidParameterError, match="one shape"):
        frame_noise_sigma(frames[0], background[0, :10], mask[0])


def test_a_shadow_of_too_few_pixels_stays() -> None:
    frames, background = _walker_and_shadow(ratio=0.6)
    frames[0, 10:30, 25:40] = background[0, 10:30, 25:40].astype(np.uint8)  # no shadow ...
    frames[0, 12:15, 25:30] = np.rint(background[0, 12:15, 25:30] * 0.6)  # ... but 15 pixels of one
    above, kept = _dropped(frames, background)
    assert above[0, 12:15, 25:30].all() and kept[0, 12:15, 25:30].all()


def _walker_and_soft_shadow() -> tuple[np.ndarray, np.ndarray]:
    """:func:`_walker_and_shadow`, its shadow's open sides edged by two pixels of half shade (0.8).

    The edge is no candidate (0.8 is outside the band around 0.6) but over a threshold
    of 15 (0.2 of ground of 85 or more), so it closes the shadow against its caster.
    """
    frames, background = _walker_and_shadow(ratio=0.6)
    edge = np.rint(background * 0.8).astype(np.uint8)
    for rows, cols in (
        (slice(8, 10), slice(25, 42)),
        (slice(30, 32), slice(25, 42)),
        (slice(8, 32), slice(40, 42)),
    ):
        frames[0, rows, cols] = edge[0, rows, cols]
    return frames, background


def test_a_shadow_s_soft_edge_leaves_with_it_so_the_clean_up_does_not_fill_it_back() -> None:
    frames, background = _walker_and_soft_shadow()
    u, s, vt = _plate_factors(background, n_frames=1)
    masks = factor_mask_block(frames, u, s, vt, threshold=15.0, cleanup=True, shadow_ratio=0.6) > 0
    assert masks[0, 11:29, 11:24].all()  # the object
    assert not masks[0, 10:30, 25:40].any()  # its shadow
    assert masks[0, 8:32, 25:42].sum() <= 2  # and its edge, but for two corners the 3x3 vote fills
    kept = factor_mask_block(frames, u, s, vt, threshold=15.0, cleanup=True) > 0
    assert kept[0, 9:31, 25:41].all()  # all of it, when shadows stay (the vote rounds its corners)
    # drop_shadows takes the core alone: its edge, kept, closes it against the object
    above = np.abs(frames.astype(np.float32) - background) > 15
    candidates = shadow_candidates(frames, background, ratio=0.6)
    core_out = drop_shadows(above, candidates, frames=frames, background=background, ratio=0.6)
    assert not core_out[0, 10:30, 25:40].any() and core_out[0, 8:10, 26:40].all()
    closed = clean_masks(core_out)
    assert closed[0, 10:30, 25:40].all()  # which the clean-up alone would fill back
    foreground = frames.astype(np.float32) - background
    from_foreground = mask_block_without_shadows(foreground, frames, threshold=15.0, ratio=0.6)
    np.testing.assert_array_equal(masks, from_foreground > 0)
    np.testing.assert_array_equal(
        masks,
        clean_without_shadows(above, candidates, frames=frames, background=background, ratio=0.6),
    )


def test_the_edge_is_the_partly_shadowed_pixels_next_to_those_that_left() -> None:
    frames, background = _walker_and_soft_shadow()
    above = np.abs(frames.astype(np.float32) - background) > 15
    candidates = shadow_candidates(frames, background, ratio=0.6)
    core_out = drop_shadows(above, candidates, frames=frames, background=background, ratio=0.6)
    kept, edges = without_edges(
        above,
        core_out,
        frames=frames,
        background=background,
        lowest_ratio=0.6 - RATIO_BAND,
        min_background=MIN_BACKGROUND,
    )
    assert edges[0, 9, 26:40].all() and edges[0, 10:30, 40].all()  # the edge's inner pixels
    assert not edges[0, 8, 26:40].any()  # two pixels from the shadow: left to the clean-up's vote
    assert not edges[0, 10:30, 24].any()  # the object beside it is brighter than the ground
    np.testing.assert_array_equal(kept, core_out & ~edges)
    with pytest.raises(InvalidParameterError, match="one shape"):
        without_edges(
            above, kept[:, :10], frames=frames, background=background, lowest_ratio=0.5, min_background=16
        )


def test_a_dark_mark_inside_an_object_that_leaves_as_a_shadow_is_filled_back() -> None:
    """A mark that shows the ground darkened by the ratio, enclosed by its bright object."""
    frames, background = _walker_and_shadow(ratio=0.6)
    mark = (slice(None), slice(15, 21), slice(14, 20))
    frames[mark] = np.rint(background[mark] * 0.6)
    above = np.abs(frames.astype(np.float32) - background) > 15
    left = drop_shadows(
        above,
        shadow_candidates(frames, background, ratio=0.6),
        frames=frames,
        background=background,
        ratio=0.6,
    )
    assert not left[mark].any()  # it leaves, as a shadow would ...
    u, s, vt = _plate_factors(background, n_frames=1)
    masks = factor_mask_block(frames, u, s, vt, threshold=15.0, cleanup=True, shadow_ratio=0.6) > 0
    assert masks[mark].all()  # ... and the object, bright around it, encloses it again


def test_a_place_the_edges_opened_is_filled_back_inside_an_object_but_not_beside_it() -> None:
    """What the clean-up would have filled, had the edges stayed: by how much ground is around it."""
    mask = np.zeros((2, 50, 70), dtype=np.bool_)
    kept, edges = mask.copy(), mask.copy()
    # frame 0: an object whose place that left opens onto the ground by its short side
    mask[0, 5:45, 5:60] = True
    kept[0] = mask[0]
    kept[0, 20:31, 7:50] = False  # the place that left (a region the test let pass) ...
    edges[0, 20:31, 5:7] = True  # ... and the edge that left with it, opening it
    kept[0] &= ~edges[0]
    # frame 1: an object and its shadow below it, closed by its edge on three sides
    mask[1, 5:20, 10:40] = True  # the object
    mask[1, 20:40, 10:50] = True  # its shadow and the shadow's edge
    kept[1] = mask[1]
    edges[1, 20:40, 10:50] = True
    edges[1, 22:38, 12:48] = False  # the edge: two pixels wide
    kept[1, 20:40, 10:50] = False  # core and edge left
    cleaned = cleaned_without_shadows(mask, kept, edges)
    # a sixth of its surroundings is ground: inside the object, which is whole again, edge and all
    np.testing.assert_array_equal(cleaned[0], clean_masks(mask[:1])[0])
    assert cleaned[0, 20:31, 5:50].all()
    assert cleaned[1, 6:19, 11:39].all() and not cleaned[1, 20:40, 10:50].any()  # the shadow stays out
    np.testing.assert_array_equal(
        cleaned_without_shadows(mask, kept, np.zeros_like(edges)), clean_masks(kept)
    )
    with pytest.raises(InvalidParameterError, match="one shape"):
        cleaned_without_shadows(mask, kept[:1], edges)


def _plate_factors(background: np.ndarray, *, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (P, 1), s (1,), Vt (1, n_frames): the ground's pattern ``background[0]`` as a rank-1 background."""
    plate = background[0].reshape(-1)
    norm = float(np.linalg.norm(plate))
    u = (plate / norm).astype(np.float32)[:, np.newaxis]
    return u, np.array([norm], dtype=np.float32), np.ones((1, n_frames), dtype=np.float32)


def test_apply_s_masks_equal_separate_s() -> None:
    """The block rule of `apply` (foreground and frames) and the factors' tiles of `separate` agree."""
    rng = np.random.default_rng(0)
    frames, background = _walker_and_shadow(ratio=0.55)
    frames = np.repeat(frames, 4, axis=0)
    frames = np.clip(frames + rng.normal(0, 2, frames.shape), 0, 255).astype(np.uint8)
    u, s, vt = _plate_factors(background, n_frames=frames.shape[0])
    from_factors = factor_mask_block(frames, u, s, vt, threshold=15.0, cleanup=True, shadow_ratio=0.55)
    foreground = frames.astype(np.float32) - np.repeat(background, 4, axis=0)
    from_foreground = mask_block_without_shadows(foreground, frames, threshold=15.0, ratio=0.55)
    np.testing.assert_array_equal(from_factors, from_foreground)
    assert from_factors[:, 11:29, 11:24].all()  # the object (its corners go to the 3x3 vote)
    assert not from_factors[:, 12:28, 27:38].any()
    without = factor_mask_block(frames, u, s, vt, threshold=15.0, cleanup=True)
    assert without[:, 12:28, 27:38].all()  # the shadow, when shadows stay


def test_apply_s_masks_equal_separate_s_on_weakly_textured_ground() -> None:
    """The same where the noise's test decides (frames one at a time, or four in a block)."""
    frames = np.concatenate([_asphalt_with_noise(seed=seed)[0] for seed in range(4)])
    background = _asphalt_with_noise()[1]
    u, s, vt = _plate_factors(background, n_frames=frames.shape[0])
    from_factors = factor_mask_block(frames, u, s, vt, threshold=20.0, cleanup=True, shadow_ratio=0.6)
    one_by_one = np.concatenate(
        [
            factor_mask_block(
                frames[i : i + 1], u, s, vt[:, i : i + 1], threshold=20.0, cleanup=True, shadow_ratio=0.6
            )
            for i in range(frames.shape[0])
        ]
    )
    foreground = frames.astype(np.float32) - np.repeat(background, 4, axis=0)
    from_foreground = mask_block_without_shadows(foreground, frames, threshold=20.0, ratio=0.6)
    np.testing.assert_array_equal(from_factors, from_foreground)
    np.testing.assert_array_equal(from_factors, one_by_one)
    assert (from_factors[SHADOW] == 0).mean() > 0.9  # the shadows left
    assert from_factors[:, 11:39, 11:29].all()  # the objects stay
