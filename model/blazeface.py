"""Faces and six landmarks with MediaPipe's BlazeFace short-range detector, through ONNX Runtime.

BlazeFace (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs") is a
single-shot detector over 896 fixed anchors of a 128×128 input, trained by Google for faces within about
2 m of the camera: portraits, badge photos, webcam frames. It returns a box and six keypoints per face (both
eye centres, nose tip, mouth centre, both ear tragions), so alignment needs no second (eye) search. The
weights are MediaPipe's `face_detection_short_range.tflite` (Apache License 2.0, © Google LLC; the licence is
model/detectors/LICENSE-mediapipe), converted unchanged to model/detectors/blazeface_short_range.onnx by
tools/convert_blazeface.py, which also checks the converted graph against TFLite's own runtime.

The decoding below follows MediaPipe's face_detection_short_range graph: SSD anchors (strides 8, 16, 16, 16;
anchor size fixed at 1), box and keypoints as offsets of 1/128 from the anchor centre, sigmoid scores kept
from 0.5, and "weighted" non-maximum suppression (overlapping detections averaged, weighted by score).

The image is resized to fit 128×128 and letterboxed (centred on black), so a face small against the image's
longer side (ORL's 92×112 face on an 1,100-pixel canvas, in the tests) is beyond it; such photos go to a
second detector (`fallback`, the Haar cascades by default), which runs only when BlazeFace finds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from model.faces import LEFT_EYE, NOSE, RIGHT_EYE, Face, FaceDetector, HaarParams, _validate_image, detector_from_card

BLAZEFACE_ONNX = Path(__file__).parent / "detectors" / "blazeface_short_range.onnx"
INPUT_SIZE = 128
MOUTH, LEFT_EAR, RIGHT_EAR = "mouth", "left_ear", "right_ear"


def ssd_anchors(size: int = INPUT_SIZE, strides: tuple[int, ...] = (8, 16, 16, 16)) -> np.ndarray:
    """The anchor centres, A×2 (x, y) as fractions of the input, in the network's output order.

    MediaPipe's SsdAnchorsCalculator with the short-range options: layers of equal stride share a feature map
    and are generated together, two anchors per layer per cell (aspect ratio 1 and its interpolated scale,
    identical centres when the anchor size is fixed), cells row-major. 128 px: 16×16×2 + 8×8×6 = 896.
    """
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        cells = -(-size // strides[i])
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x0, y0, x1, y1) with each of N×4 boxes: N values in [0, 1]."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(np.clip(box[2:] - box[:2], 0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou: float) -> list[tuple]:
    """MediaPipe's "weighted" suppression: [(box, score, points)], best first.

    boxes: N×4 (x0, y0, x1, y1); scores: N; points: N×K×2. Repeatedly take the best remaining detection and
    every remaining one overlapping it by more than `iou`; the group becomes one detection whose box and
    points are the score-weighted means of the group's and whose score is the best one's.
    """
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    alive = np.ones(len(scores), dtype=bool)
    out = []
    for k in range(len(scores)):
        if not alive[k]:
            continue
        group = alive & (box_iou(boxes[k], boxes) > iou)
        group[k] = True
        w = scores[group][:, None]
        out.append(
            (
                (boxes[group] * w).sum(0) / w.sum(),
                float(scores[k]),
                (points[group] * w[:, :, None]).sum(0) / w.sum(),
            )
        )
        alive &= ~group
    return out


# The six keypoints' order in the network's output, and where each lands in the mirror image.
MIRRORED_KEYPOINTS = (1, 0, 2, 3, 5, 4)


def _average_with_mirror(
    detections: list[tuple[np.ndarray, float, np.ndarray]], mirrored: list[tuple[np.ndarray, float, np.ndarray]]
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Average each detection with the mirror image's detection of the same face (box IoU > 0.5, taken back
    through the mirror: u -> 1 − u, left and right keypoints swapped); one without a counterpart is kept."""
    back = []
    for box, score, pts in mirrored:
        unflipped = pts[list(MIRRORED_KEYPOINTS)].copy()
        unflipped[:, 0] = 1.0 - unflipped[:, 0]
        back.append((np.array([1.0 - box[2], box[1], 1.0 - box[0], box[3]]), score, unflipped))
    out = []
    for box, score, pts in detections:
        overlap = box_iou(box, np.stack([b for b, _, _ in back])) if back else np.zeros(0)
        if len(overlap) and overlap.max() > 0.5:
            best = back[int(overlap.argmax())]
            out.append(((box + best[0]) / 2, score, (pts + best[2]) / 2))
        else:
            out.append((box, score, pts))
    return out


def _eye_convention(
    left: tuple[float, float], right: tuple[float, float], spread: float, drop: float
) -> list[tuple[float, float]]:
    """The eye pair scaled by `spread` about its midpoint, then moved by `drop` × its (scaled) distance along
    the eye line's downward normal; (left, right) image pixels in and out."""
    lx, ly, rx, ry = *left, *right
    mx, my, dx, dy = (lx + rx) / 2, (ly + ry) / 2, (rx - lx) * spread / 2, (ry - ly) * spread / 2
    nx, ny = -2 * dy * drop, 2 * dx * drop  # the normal (−dy, dx) points down when the eye line runs right
    return [(mx - dx + nx, my - dy + ny), (mx + dx + nx, my + dy + ny)]


@dataclass(frozen=True)
class BlazeFaceParams:
    """Parameters of `BlazeFaceDetector` (saved in a model card's detector block).

    min_score: detections below this probability are dropped (MediaPipe's default 0.5).
    extra_face_score: every face but the most probable one must reach this probability. On LFW photos half of
        the second faces between 0.5 and 0.75 are not faces (dlib finds none there), and they made 10% of
        portraits "several faces" (2.6% with Haar, 4.9% with dlib); the most probable face keeps min_score, so
        no photo loses its face (bench/results/face_detection.md, BlazeFace variants).
    nms_iou: the overlap above which detections are merged (MediaPipe's 0.3).
    box_scale: the face box is grown about its centre by this factor. BlazeFace's boxes are tight (brows to
        chin); 1.0 keeps them, as the pipeline's `min_size` and the box fallback of alignment are then
        measured on them.
    flip_average: also run the network on the mirror image (a second call) and average each
        face's box and points with its mirrored counterpart's. The eyes' error against dlib's 5-point eyes
        falls from a median 0.065 to 0.056 interocular distances on LFW (bench/results/face_detection.md), but
        the shipped face model verifies no better for it (faces 2.2.0 with it, 2.3.0 without: LFW View 1 end to
        end 90.4 / 91.0%, held-out people AUC 0.9727 / 0.9723, ORL EER 3.33 / 3.24%; bench/results/faces.md,
        "Update (2.3.0)"), and the second call is a quarter of a photo's time. Off by default.
    eye_spread, eye_drop: BlazeFace's eye points sit 4.5% further apart and 0.018 interocular distances higher
        than dlib's 5-point eye centres (the mean of each eye's corners; medians over 600 LFW and 400 ORL
        photos, measured with flip_average), which the Haar eyes the 2.x face models were trained with follow
        too (HAAR_BOX_LEFT_EYE's note; 3.0.0 and 3.1.0 trained on these adjusted BlazeFace crops). The eyes
        are moved onto that convention: their distance times
        eye_spread about their midpoint, then both down (perpendicular to the eye line) by eye_drop times it.
        1.0 and 0.0 leave BlazeFace's own points.
    fallback: a second detector, by `model.faces.make_detector` name ("haar"), run only when BlazeFace finds
        no face (faces under about a tenth of the image's longer side); "" for none.
    fallback_params: that detector's parameters (its own card block).
    threads: ONNX Runtime's intra-op threads for the detector (0: its default, every core). The network is
        small enough (about 0.3 MFLOP per anchor cell) that one thread is the fastest per image.
    """

    min_score: float = 0.5
    extra_face_score: float = 0.75
    nms_iou: float = 0.3
    box_scale: float = 1.0
    flip_average: bool = False
    eye_spread: float = 0.957
    eye_drop: float = 0.018
    fallback: str = "haar"
    fallback_params: Mapping[str, Any] | None = None
    threads: int = 1

    # What a parameter added later meant before it existed (every face from min_score), for `from_dict` on
    # blocks written earlier (a training run's recorded crop recipe).
    LEGACY: ClassVar[dict[str, Any]] = {"extra_face_score": 0.5}

    def __post_init__(self) -> None:
        if not 0.0 < self.min_score <= self.extra_face_score < 1.0:
            raise ValueError(
                f"min_score and extra_face_score must be 0 < min_score <= extra_face_score < 1, got "
                f"{self.min_score}, {self.extra_face_score}"
            )
        if not 0.0 < self.nms_iou < 1.0:
            raise ValueError(f"nms_iou must be in (0, 1), got {self.nms_iou}")
        if not 0.5 <= self.eye_spread <= 2.0 or abs(self.eye_drop) > 0.5:
            raise ValueError(
                f"eye_spread must be in [0.5, 2] and |eye_drop| <= 0.5, got {self.eye_spread}, {self.eye_drop}"
            )
        if not 0.5 <= self.box_scale <= 2.0:
            raise ValueError(f"box_scale must be in [0.5, 2], got {self.box_scale}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    def fallback_block(self) -> dict[str, Any]:
        """The fallback as a card's detector block; no params means today's defaults, written out in full so
        that a card keeps them when the defaults change."""
        params = dict(self.fallback_params or {})
        if not params and self.fallback == "haar":
            params = HaarParams().to_dict()
        return {"name": self.fallback, "params": params}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fallback_params"] = self.fallback_block()["params"] if self.fallback else {}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlazeFaceParams:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown BlazeFace parameter(s) {sorted(unknown)}")
        # A block written before a parameter existed was made without it: it keeps that behaviour.
        return cls(**{**cls.LEGACY, **d})


class BlazeFaceDetector:
    """`FaceDetector` over BlazeFace; see the module docstring. Thread-safe (ONNX Runtime sessions are).

    Faces carry LEFT_EYE / RIGHT_EYE (image-left first), NOSE, MOUTH, LEFT_EAR / RIGHT_EAR (image sides), and
    a score, the detection's probability in (0, 1).
    """

    name = "blazeface"

    def __init__(self, params: BlazeFaceParams | None = None, model_path: Path | str = BLAZEFACE_ONNX) -> None:
        import onnxruntime as ort

        self.params = params or BlazeFaceParams()
        opts = ort.SessionOptions()
        if self.params.threads:
            opts.intra_op_num_threads = self.params.threads
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self._anchors = ssd_anchors()
        self._fallback: FaceDetector | None = None
        if self.params.fallback:
            self._fallback = detector_from_card(self.params.fallback_block())

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float, int, int]]:
        """RGB H×W×3 -> (1×3×128×128 float32 in [-1, 1], (sx, sy, px, py)).

        The image is resized to fit 128×128 (aspect kept), then centred on black: resizing first keeps a large
        photo from being padded at full size. Fraction u of the 128 square lies at image x = (128·u − px)·sx
        − 0.5 (pixel centres at integers), sx being image pixels per resized pixel; likewise y.
        """
        h, w = image.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(image, (nw, nh), interpolation=interpolation)
        px, py = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        small = cv2.copyMakeBorder(
            small, py, INPUT_SIZE - nh - py, px, INPUT_SIZE - nw - px, cv2.BORDER_CONSTANT, value=0
        )
        x = small.astype(np.float32).transpose(2, 0, 1)[None] * (2.0 / 255.0) - 1.0
        return x, (w / nw, h / nh, px, py)

    def detect(self, image: np.ndarray) -> list[Face]:
        """RGB uint8 H×W×3 (or grey H×W) -> every face, most probable first; the fallback's when none."""
        _validate_image(image)
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image)
        h, w = rgb.shape[:2]
        x, mapping = self._letterbox(rgb)
        raw, logits = self._session.run(None, {"images": x})
        detections = self._decode(raw[0], logits[0, :, 0])
        if self.params.flip_average and detections:
            # A second call rather than a batch of two: the pair takes ONNX Runtime twice as long as one image
            # (2.9 against 1.5 ms, one thread), so a batch saves almost nothing, and a photo without a face needs no
            # mirror at all.
            raw, logits = self._session.run(None, {"images": np.ascontiguousarray(x[..., ::-1])})
            detections = _average_with_mirror(detections, self._decode(raw[0], logits[0, :, 0]))
        detections = detections[:1] + [d for d in detections[1:] if d[1] >= self.params.extra_face_score]
        faces = [self._face(box, score, pts, mapping, (w, h)) for box, score, pts in detections]
        if not faces and self._fallback is not None:
            return self._fallback.detect(image)
        return faces

    def _decode(self, raw: np.ndarray, logits: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """One image's outputs (896×16 regressors, 896 logits) -> [(box x0 y0 x1 y1, score, 6×2 points)] in
        fractions of the letterboxed square, after suppression, best first."""
        keep = logits > np.log(self.params.min_score / (1 - self.params.min_score))
        if not keep.any():
            return []
        anchors, raw = self._anchors[keep], raw[keep] / INPUT_SIZE
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -100, 100)))
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        return weighted_nms(boxes, scores, points, self.params.nms_iou)

    def _face(
        self,
        box: np.ndarray,
        score: float,
        pts: np.ndarray,
        mapping: tuple[float, float, int, int],
        size: tuple[int, int],
    ) -> Face:
        """A decoded detection (fractions of the letterboxed square) as a Face in image pixels."""
        sx, sy, px, py = mapping

        def to_image(u: float, v: float) -> tuple[float, float]:
            return (INPUT_SIZE * u - px) * sx - 0.5, (INPUT_SIZE * v - py) * sy - 0.5

        (x0, y0), (x1, y1) = to_image(box[0], box[1]), to_image(box[2], box[3])
        cx, cy, bw, bh = (
            (x0 + x1) / 2,
            (y0 + y1) / 2,
            (x1 - x0) * self.params.box_scale,
            (y1 - y0) * self.params.box_scale,
        )
        rect = (round(cx - bw / 2), round(cy - bh / 2), max(1, round(bw)), max(1, round(bh)))
        p = [to_image(u, v) for u, v in pts]
        eyes = sorted([p[0], p[1]])  # the network's first eye is the subject's right; sort by image x anyway
        eyes = _eye_convention(eyes[0], eyes[1], self.params.eye_spread, self.params.eye_drop)
        ears = sorted([p[4], p[5]])
        landmarks = {
            LEFT_EYE: eyes[0],
            RIGHT_EYE: eyes[1],
            NOSE: p[2],
            MOUTH: p[3],
            LEFT_EAR: ears[0],
            RIGHT_EAR: ears[1],
        }
        return Face(rect, score, landmarks, size, self.name)
