"""BlazeFace (model/blazeface.py): anchors, suppression, the coordinate mapping, and real faces.

Real faces come from LFW and ORL in ../shared/data (marked `data`, skipped without them), with the dlib
eye positions of tests/test_faces.py as the independent reference. The synthetic tests need only the shipped
ONNX graph.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from model.blazeface import (
    BLAZEFACE_ONNX,
    MOUTH,
    BlazeFaceDetector,
    BlazeFaceParams,
    ssd_anchors,
    weighted_nms,
)
from model.faces import NOSE, Face, FaceDetector, HaarFaceDetector, HaarParams, detector_from_card, find_face
from tests.test_faces import LFW_FACES, ORL_FACES, assert_eyes_near, faces_data  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def blaze() -> BlazeFaceDetector:
    return BlazeFaceDetector(BlazeFaceParams(fallback=""))


def test_anchors_follow_mediapipe_short_range_layout() -> None:
    a = ssd_anchors()
    assert a.shape == (896, 2)
    # 16×16 cells of stride 8, two anchors each, row-major; then 8×8 cells of stride 16, six anchors each.
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], (0.5 / 16, 0.5 / 16))
    np.testing.assert_allclose(a[2], (1.5 / 16, 0.5 / 16))
    np.testing.assert_allclose(a[32], (0.5 / 16, 1.5 / 16))
    np.testing.assert_allclose(a[512:518], np.tile((0.5 / 8, 0.5 / 8), (6, 1)))
    np.testing.assert_allclose(a[-1], (7.5 / 8, 7.5 / 8))


def test_weighted_nms_merges_overlaps_by_score_and_keeps_the_rest() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    points = np.array([[[0, 0]], [[10, 10]], [[55, 55]]], np.float32)
    out = weighted_nms(boxes, scores, points, iou=0.3)
    assert [round(s, 2) for _, s, _ in out] == [0.9, 0.7]  # best first; the group keeps its best score
    box, _, pts = out[0]
    np.testing.assert_allclose(box, (0.6 * boxes[0] + 0.9 * boxes[1]) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(pts, [[6.0, 6.0]], rtol=1e-6)  # (0.6·0 + 0.9·10) / 1.5
    np.testing.assert_allclose(out[1][0], boxes[2])
    assert weighted_nms(boxes[:0], scores[:0], points[:0], 0.3) == []


def test_params_validate_and_round_trip_through_a_card() -> None:
    p = BlazeFaceParams(min_score=0.6)
    block = json.loads(json.dumps({"name": "blazeface", "params": p.to_dict()}))
    assert block["params"]["fallback_params"] == HaarParams().to_dict()  # today's Haar defaults, written out
    det = detector_from_card(block)
    assert isinstance(det, BlazeFaceDetector)
    assert BlazeFaceParams.from_dict(block["params"]).min_score == 0.6
    assert isinstance(det._fallback, HaarFaceDetector)
    assert det._fallback.params == HaarParams()
    assert isinstance(det, FaceDetector)
    current = BlazeFaceParams().to_dict()
    assert BlazeFaceParams.from_dict(current).to_dict() == current  # a current block: today's defaults
    older = {k: v for k, v in BlazeFaceParams().to_dict().items() if k != "extra_face_score"}
    assert BlazeFaceParams.from_dict(older).extra_face_score == 0.5  # before the parameter: every face at 0.5
    with pytest.raises(ValueError, match="unknown BlazeFace"):
        BlazeFaceParams.from_dict({"min_scor": 0.5})
    bad_values = (
        {"min_score": 1.0},
        {"min_score": 0.8, "extra_face_score": 0.7},
        {"nms_iou": 0.0},
        {"box_scale": 3.0},
        {"threads": -1},
    )
    for bad in bad_values:
        with pytest.raises(ValueError, match="must be"):
            BlazeFaceParams(**bad)


def test_blank_image_has_no_face_and_only_then_asks_the_fallback() -> None:
    calls: list[int] = []

    class Fallback:
        name = "fallback"

        def detect(self, image: np.ndarray) -> list[Face]:
            calls.append(image.shape[0])
            return [Face((1, 2, 50, 50), 3.0, {}, (image.shape[1], image.shape[0]), self.name)]

    det = BlazeFaceDetector(BlazeFaceParams(fallback=""))
    blank = np.full((200, 300, 3), 128, np.uint8)
    assert det.detect(blank) == []
    det._fallback = Fallback()  # the boundary under test: when the second detector is consulted
    (face,) = det.detect(blank)
    assert face.detector == "fallback"
    assert calls == [200]
    assert BLAZEFACE_ONNX.is_file()
    assert BLAZEFACE_ONNX.stat().st_size < 1_000_000


@pytest.mark.data
@pytest.mark.parametrize("name", [*LFW_FACES, *ORL_FACES])
def test_finds_one_face_with_eyes_near_dlibs(blaze: BlazeFaceDetector, faces_data: dict, name: str) -> None:  # noqa: F811
    img = faces_data[name]
    faces = [f for f in blaze.detect(img) if f.size >= 40]  # LFW photos may hold small faces behind
    assert len(faces) == 1
    (face,) = faces
    assert face.detector == "blazeface"
    assert 0.5 < face.score < 1.0
    x, y, w, h = face.box
    assert x < img.shape[1] / 2 < x + w
    assert y < img.shape[0] / 2 < y + h + 10
    assert_eyes_near(face, LFW_FACES.get(name) or ORL_FACES[name], tolerance=0.2)
    (lx, ly), (rx, ry) = face.eyes  # type: ignore[misc]
    nx, ny = face.landmarks[NOSE]
    assert lx < nx < rx
    assert max(ly, ry) < ny < face.landmarks[MOUTH][1]
    assert find_face(img, blaze, allow_multiple="largest") == face


@pytest.mark.data
def test_coordinates_follow_the_face_through_padding_and_mirroring(blaze: BlazeFaceDetector, faces_data: dict) -> None:  # noqa: F811
    img = faces_data["AJ_Cook_0001"]  # 250×250
    (face,) = [f for f in blaze.detect(img) if f.size >= 40]
    # The same photo at two places on one wider grey canvas: the network sees the same pixels at the same scale,
    # shifted by the letterbox and the offset. The canvas is resized by 128/400 = 0.32 on both axes and the
    # offset (150, 50) becomes (48, 16) input pixels, whole cells of the anchor grid (strides 8 and 16), so
    # the detection itself shifts exactly (measured: 0.006 interocular distances apart; an offset of 60 px,
    # 19.2 input pixels, moves it by 0.037): the eyes must follow the offset to a few hundredths of the
    # interocular distance, and stay near those found in the photo alone (now seen at 250/400 the scale).
    iod = np.hypot(*np.subtract(*face.eyes))  # type: ignore[misc]
    found = []
    for ox, oy in ((0, 0), (150, 50)):
        canvas = np.full((375, 400, 3), 90, np.uint8)
        canvas[oy : oy + 250, ox : ox + 250] = img
        (moved,) = [f for f in blaze.detect(canvas) if f.size >= 40]
        found.append(np.subtract(moved.eyes, (ox, oy)))
        assert abs(moved.box[0] - ox - face.box[0]) < 0.1 * face.box[2]
    assert np.abs(found[0] - found[1]).max() < 0.03 * iod
    assert np.abs(found[0] - np.asarray(face.eyes)).max() < 0.1 * iod
    # Mirrored: the image-left eye of the mirror is the image-right eye of the original, reflected.
    (mirror,) = [f for f in blaze.detect(np.ascontiguousarray(img[:, ::-1])) if f.size >= 40]
    assert mirror.eyes is not None
    (ml, mr), (ol, orr) = mirror.eyes, face.eyes  # type: ignore[misc]
    assert np.hypot(ml[0] - (249 - orr[0]), ml[1] - orr[1]) < 0.1 * iod
    assert np.hypot(mr[0] - (249 - ol[0]), mr[1] - ol[1]) < 0.1 * iod


@pytest.mark.data
def test_grey_input_and_a_face_too_small_for_blazeface_goes_to_haar(faces_data: dict) -> None:  # noqa: F811
    det = BlazeFaceDetector()  # with the default Haar fallback
    img = faces_data["s1/1"]
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert [f.detector for f in det.detect(grey)] == ["blazeface"]
    # ORL's 92×112 face, small on a large plain canvas: under BlazeFace's ~1/10 of the side, Haar finds it.
    canvas = np.full((1100, 1100, 3), 128, np.uint8)
    canvas[500:612, 500:592] = img
    faces = det.detect(canvas)
    assert [f.detector for f in faces] == ["haar"], faces
    x, y, w, h = faces[0].box
    assert 480 < x + w / 2 < 612
    assert 480 < y + h / 2 < 640
