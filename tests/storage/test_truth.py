"""Ground-truth readers: the masks layout (generator's and BMC's) and CDnet's, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.synthetic import SceneSpec, write_scene
from storage.errors import InvalidParameterError, SourceNotFoundError, SourceNotReadableError
from storage.truth import read_cdnet_truth, read_mask_image, read_truth_masks


def _mask(value: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:3, 2:5] = value
    return mask


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- masks layout -------------------------------------------------------------------


def test_reads_what_the_generator_writes(tmp_path: Path) -> None:
    spec = SceneSpec(width=32, height=24, n_frames=6, n_objects=2, seed=2)
    written = write_scene(
        spec, tmp_path / "scene.mkv", codec="ffv1", truth_dir=tmp_path / "truth", truth_every=2
    )
    masks = read_truth_masks(tmp_path / "truth", shape=(24, 32))
    assert [frame for frame, _ in masks] == list(written.mask_frames) == [0, 2, 4]
    from pipelines.synthetic import render_scene

    expected = [m for t, (_, m) in enumerate(render_scene(spec)) if t % 2 == 0]
    for (_, mask), truth in zip(masks, expected, strict=True):
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, truth)


def test_reads_a_csv_beside_the_folder_with_bmc_columns(tmp_path: Path) -> None:
    folder = tmp_path / "private_truth"
    folder.mkdir()
    Image.fromarray(_mask(255)).save(folder / "1.bmp")
    Image.fromarray(_mask(255)).convert("1").save(folder / "2.bmp")  # 1-bit BMP
    Image.fromarray(np.stack([_mask(255)] * 3, axis=-1)).save(folder / "3.png")  # RGB
    csv_path = _write_csv(
        tmp_path / "gt_frame_map.csv",
        "mask_file,color_mask_file,frame_index_0based,iou_best\n"
        "private_truth/2.bmp,color/2.bmp,30,0.7\n"
        "private_truth/1.bmp,color/1.bmp,12,0.8\n"
        "3.png,,7,0.5\n",  # relative to the folder, not the CSV: found too
    )
    masks = read_truth_masks(folder, frame_map=csv_path)
    assert [frame for frame, _ in masks] == [7, 12, 30]  # sorted by frame
    for _, mask in masks:
        np.testing.assert_array_equal(mask, _mask(255))


@pytest.mark.shared_data
def test_reads_the_bmc2012_truth(shared_data: Path) -> None:
    video = shared_data / "bmc2012-video003"
    masks = read_truth_masks(video / "private_truth", frame_map=video / "gt_frame_map.csv", shape=(240, 320))
    frames = [frame for frame, _ in masks]
    assert len(masks) == 15
    assert frames == sorted(frames)
    assert {248, 249, 250, 648, 649, 650} <= set(frames)
    for _, mask in masks:
        assert mask.shape == (240, 320)
        assert set(np.unique(mask)) <= {0, 255}
        assert 0.005 < np.mean(mask == 255) < 0.1


def test_masks_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        read_truth_masks(tmp_path / "absent")
    folder = tmp_path / "masks"
    folder.mkdir()
    with pytest.raises(SourceNotFoundError, match="frame_map"):
        read_truth_masks(folder)
    with pytest.raises(SourceNotFoundError, match="no frame map"):
        read_truth_masks(folder, frame_map=tmp_path / "absent.csv")
    Image.fromarray(_mask(255)).save(folder / "a.png")
    Image.fromarray(_mask(255, (6, 9))).save(folder / "wide.png")
    (folder / "broken.png").write_bytes(b"not an image")

    def csv(text: str) -> Path:
        return _write_csv(folder / "frame_map.csv", text)

    csv("file,index\na.png,0\n")
    with pytest.raises(InvalidParameterError, match="header"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,0\nmissing.png,1\n")
    with pytest.raises(SourceNotFoundError, match=r"missing\.png"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,one\n")
    with pytest.raises(InvalidParameterError, match="frame index"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,-2\n")
    with pytest.raises(InvalidParameterError, match="frame index"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,3\nwide.png,3\n")
    with pytest.raises(InvalidParameterError, match="two masks"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,0\nwide.png,1\n")
    with pytest.raises(InvalidParameterError, match="9x6"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,0\n")
    with pytest.raises(InvalidParameterError, match="should be 10x6"):
        read_truth_masks(folder, shape=(6, 10))
    csv("mask,frame\nbroken.png,0\n")
    with pytest.raises(SourceNotReadableError, match=r"broken\.png"):
        read_truth_masks(folder)
    csv("mask,frame\na.png,0\n\n")  # a trailing blank line is fine
    assert len(read_truth_masks(folder)) == 1


def test_read_mask_image_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        read_mask_image(tmp_path / "none.png")
    with pytest.raises(FileNotFoundError):  # also the built-in
        read_mask_image(tmp_path / "none.png")


# --- CDnet layout -------------------------------------------------------------------------


def make_cdnet(folder: Path, *, n_files: int = 10, roi: str | None = "3 8") -> Path:
    (folder / "groundtruth").mkdir(parents=True)
    for number in range(1, n_files + 1):
        mask = np.full((4, 5), 0, dtype=np.uint8)
        mask[0, 0] = number  # tells the frames apart
        mask[1, :] = (0, 50, 85, 170, 255)
        Image.fromarray(mask).save(folder / "groundtruth" / f"gt{number:06d}.png")
    (folder / "groundtruth" / "Thumbs.db").write_bytes(b"")  # stray files are ignored
    if roi is not None:
        (folder / "temporalROI.txt").write_text(roi + "\n")
    return folder


def test_reads_the_cdnet_layout_lazily(tmp_path: Path) -> None:
    truth = read_cdnet_truth(make_cdnet(tmp_path / "highway"))
    assert truth.frames == (2, 3, 4, 5, 6, 7)  # gt000003..gt000008, 0-based
    frames, load = truth  # unpacks like a tuple
    assert frames == truth.frames
    mask = load(2)
    assert mask.dtype == np.uint8
    assert mask[0, 0] == 3  # the file gt000003.png
    np.testing.assert_array_equal(mask[1], [0, 50, 85, 170, 255])
    assert load(7)[0, 0] == 8
    with pytest.raises(InvalidParameterError, match="outside the temporal ROI"):
        load(0)
    with pytest.raises(InvalidParameterError, match="outside the temporal ROI"):
        load(8)


def test_cdnet_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        read_cdnet_truth(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFoundError, match="groundtruth"):
        read_cdnet_truth(tmp_path / "empty")
    with pytest.raises(SourceNotFoundError, match="temporalROI"):
        read_cdnet_truth(make_cdnet(tmp_path / "no_roi", roi=None))
    with pytest.raises(SourceNotFoundError, match=r"gt000013\.png"):
        read_cdnet_truth(make_cdnet(tmp_path / "short", n_files=12, roi="5 20"))
    for index, roi in enumerate(["", "3", "8 3", "0 4", "a b", "1 2 3"]):
        with pytest.raises(InvalidParameterError, match="temporalROI"):
            read_cdnet_truth(make_cdnet(tmp_path / f"bad{index}", roi=roi))
