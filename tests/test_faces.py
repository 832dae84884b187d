"""From photo bytes to an aligned face: safe decoding, detection, choosing one face, alignment.

Decoding tests build their images with Pillow. Detection tests use real faces from LFW and ORL read straight
from ../shared/data's archives (marked `data`, skipped without them). Expected eye positions come from dlib's
5-point model on the same images (an independent detector), rounded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.faces import (
    ARCFACE_LEFT_EYE,
    ARCFACE_RIGHT_EYE,
    DEFAULT_MIN_FACE_SIZE,
    LEFT_EYE,
    RIGHT_EYE,
    AlignSpec,
    Face,
    FaceDetector,
    FaceError,
    FaceTooSmallError,
    HaarFaceDetector,
    HaarParams,
    MultipleFacesError,
    NoFaceError,
    align_face,
    alignment_eyes,
    alignment_matrix,
    as_rgb_array,
    detect_and_align,
    dlib_available,
    find_face,
    make_detector,
    similarity_from_eyes,
    transform_points,
)
from model.preprocess import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageTooLargeError, decode

# ------------------------------------------------------------------------------------------------ decoding


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 48, h: int = 32) -> Image.Image:
    """An RGB image with distinct, smooth colours (survives lossy codecs)."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


@pytest.mark.parametrize(
    ("fmt", "mode", "kw", "out_mode"),
    [
        ("JPEG", "RGB", {"quality": 95}, "RGB"),
        ("PNG", "RGB", {}, "RGB"),
        ("WEBP", "RGB", {"lossless": True}, "RGB"),
        ("BMP", "RGB", {}, "RGB"),
        ("GIF", "RGB", {}, "RGB"),
        ("TIFF", "RGB", {}, "RGB"),
        ("PNG", "L", {}, "L"),
        ("JPEG", "L", {}, "L"),
        ("PPM", "L", {}, "L"),  # PGM, as ORL ships
        ("PNG", "P", {}, "RGB"),
        ("PNG", "1", {}, "L"),
    ],
)
def test_decode_formats_and_modes(fmt: str, mode: str, kw: dict, out_mode: str) -> None:
    src = gradient().convert(mode)
    img = decode(encode(src, fmt, **kw))
    assert img.mode == out_mode
    assert img.size == (48, 32)
    expected = np.asarray(src.convert(out_mode), dtype=np.int16)
    tolerance = 40 if fmt == "GIF" else 6  # GIF quantises to 256 colours; JPEG is lossy
    assert np.abs(np.asarray(img, dtype=np.int16) - expected).mean() < tolerance


def test_decode_rgba_composites_onto_white() -> None:
    arr = np.zeros((10, 20, 4), np.uint8)
    arr[:, :10] = (255, 0, 0, 255)  # opaque red
    arr[:, 10:] = (0, 0, 255, 0)  # fully transparent "blue"
    img = decode(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert img.mode == "RGB"
    out = np.asarray(img)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, -1].tolist() == [255, 255, 255]
    la = decode(encode(Image.fromarray(arr, "RGBA").convert("LA"), "PNG"))
    assert la.mode == "L"
    assert np.asarray(la)[0, -1] == 255


def test_decode_16bit_grey_scales_to_8bit() -> None:
    arr = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(4, 0)
    src = Image.fromarray(arr)
    assert src.mode == "I;16"
    img = decode(encode(src, "PNG"))
    assert img.mode == "L"
    assert np.asarray(img)[0].tolist() == [0, 64, 128, 255]


def test_decode_cmyk_jpeg_becomes_rgb() -> None:
    src = Image.new("RGB", (16, 16), (200, 30, 30))
    data = encode(src.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = decode(data)
    assert img.mode == "RGB"
    r, g, b = np.asarray(img, dtype=int).reshape(-1, 3).mean(0)
    assert r > 150
    assert g < 80
    assert b < 80


def test_decode_applies_exif_orientation() -> None:
    # Stored 40 wide × 20 high: top half red, bottom half blue. Orientation 6 says "rotate 90° clockwise to
    # display", so the displayed image is 20 × 40 with the red (stored top) on the right.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:10] = (255, 0, 0)
    arr[10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())
    img = decode(data)
    assert img.size == (20, 40)
    out = np.asarray(img, dtype=int)
    assert out[:, -5:, 0].mean() > 200
    assert out[:, -5:, 2].mean() < 60
    assert out[:, :5, 2].mean() > 200
    assert out[:, :5, 0].mean() < 60


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_decode_truncated_raises(fmt: str, keep: float) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # incompressible: long data
    data = encode(noise, fmt)
    with pytest.raises(ImageDecodeError) as info:
        decode(data[: int(len(data) * keep)])
    assert info.value.code == "undecodable"
    assert not isinstance(info.value, ImageTooLargeError)


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, np.random.default_rng(1).bytes(5000), b"\x89PNG\r\n\x1a\n"])
def test_decode_garbage_raises(data: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode(data)


def png_claiming(width: int, height: int) -> bytes:
    """A real 1×1 PNG whose IHDR is patched to claim width × height (CRC fixed), as a decompression bomb would."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decode_refuses_more_pixels_than_max_pixels() -> None:
    with pytest.raises(ImageTooLargeError) as info:
        decode(png_claiming(8000, 6000))  # 48 MP: under Pillow's own limit, over ours
    err = info.value
    assert (err.pixels, err.limit, err.size, err.code) == (
        48_000_000,
        DEFAULT_MAX_PIXELS,
        (8000, 6000),
        "image_too_large",
    )
    assert isinstance(err, ImageDecodeError)
    small = encode(Image.new("RGB", (8, 8)), "PNG")
    with pytest.raises(ImageTooLargeError, match="64 pixels"):
        decode(small, max_pixels=63)
    assert decode(small, max_pixels=64).size == (8, 8)


def test_decode_maps_pillows_bomb_warning_and_error() -> None:
    # Between Image.MAX_IMAGE_PIXELS (~89.5 MP) and twice it Pillow only warns; ours refuses.
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLargeError) as info:
        decode(png_claiming(10_000, 10_000))
    assert info.value.pixels == 100_000_000
    with warnings.catch_warnings():  # a process that turns warnings into errors gets the same typed error
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError):
            decode(png_claiming(10_000, 10_000), max_pixels=None)
    # Above twice the limit Pillow raises DecompressionBombError itself, whatever max_pixels says.
    with pytest.raises(ImageTooLargeError) as info:
        decode(png_claiming(20_000, 20_000), max_pixels=None)
    assert info.value.pixels == 400_000_000
    assert info.value.limit == 2 * Image.MAX_IMAGE_PIXELS


def test_decode_refuses_formats_outside_the_whitelist() -> None:
    data = encode(gradient(), "TGA")
    with pytest.raises(ImageDecodeError):
        decode(data)
    assert decode(data, formats=None).size == (48, 32)


# ------------------------------------------------------------------------------------------- the face type


def test_face_validates_and_serialises() -> None:
    face = Face((10, 20, 30, 30), 5, {LEFT_EYE: (17, 31), RIGHT_EYE: (33, 31)}, (100, 80), "haar")
    assert face.size == 30
    assert face.area == 900
    assert face.eyes == ((17.0, 31.0), (33.0, 31.0))
    with pytest.raises(TypeError):
        face.landmarks["nose"] = (1.0, 2.0)  # type: ignore[index]
    assert json.loads(json.dumps(face.to_dict()))["landmarks"][LEFT_EYE] == [17.0, 31.0]
    with pytest.raises(ValueError, match="both eyes"):
        Face((0, 0, 10, 10), 1.0, {LEFT_EYE: (1, 1)})
    with pytest.raises(ValueError, match="positive"):
        Face((0, 0, 0, 10), 1.0)
    assert Face((0, 0, 10, 10), 1.0).eyes is None


def test_error_codes() -> None:
    codes = {
        NoFaceError((10, 10)).code,
        MultipleFacesError(2, [(0, 0, 1, 1)] * 2).code,
        FaceTooSmallError(10, 40).code,
        ImageDecodeError("x").code,
        ImageTooLargeError(10, 5).code,
    }
    assert codes == {"no_face", "multiple_faces", "face_too_small", "undecodable", "image_too_large"}
    assert issubclass(NoFaceError, FaceError)
    assert issubclass(FaceError, ValueError)


def test_specs_round_trip_and_validate() -> None:
    spec = AlignSpec(size=128, left_eye=(44.0, 59.0), right_eye=(84.0, 59.0))
    assert AlignSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert AlignSpec.from_dict(AlignSpec().to_dict()) == AlignSpec()
    with pytest.raises(ValueError, match="unknown align keys"):
        AlignSpec.from_dict({**spec.to_dict(), "margin": 0.1})
    with pytest.raises(ValueError, match="inside"):
        AlignSpec(size=32)  # ArcFace's 112-pixel template does not fit
    with pytest.raises(ValueError, match="smaller x"):
        AlignSpec(left_eye=ARCFACE_RIGHT_EYE, right_eye=ARCFACE_LEFT_EYE)
    params = HaarParams(min_neighbors=6)
    assert HaarParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    with pytest.raises(ValueError, match="unknown Haar"):
        HaarParams.from_dict({"minNeighbours": 3})


def test_haar_params_of_an_older_card_keep_the_behaviour_it_was_measured_with() -> None:
    # A card written before search_face and eye_fallback existed searched at full resolution, all eye
    # cascades at once: reading it must not silently switch it to today's defaults.
    old = {k: v for k, v in HaarParams().to_dict().items() if k not in ("search_face", "eye_fallback")}
    legacy = HaarParams.from_dict(old)
    assert legacy.search_face == 0
    assert legacy.eye_fallback == ()
    assert HaarParams.from_dict(HaarParams().to_dict()) == HaarParams()  # a current card: today's defaults
    assert HaarParams().search_face > 0
    assert HaarParams().eye_fallback
    with pytest.raises(ValueError, match="search_face"):
        HaarParams(search_face=-1)
    with pytest.raises(ValueError, match="eye cascade entries"):
        HaarParams(eye_fallback=(("haarcascade_eye.xml", "middle", 0.0, 0.0),))


# ------------------------------------------------------------------------------------------------ geometry


def test_similarity_maps_points_exactly() -> None:
    src = ((120.0, 80.0), (170.0, 100.0))  # tilted eyes
    matrix = similarity_from_eyes(src, (ARCFACE_LEFT_EYE, ARCFACE_RIGHT_EYE))
    np.testing.assert_allclose(transform_points(matrix, src), [ARCFACE_LEFT_EYE, ARCFACE_RIGHT_EYE], atol=1e-9)
    a, b = matrix[0, 0], matrix[1, 0]
    np.testing.assert_allclose(matrix[:, :2], [[a, -b], [b, a]])  # rotation + uniform scale, no shear
    with pytest.raises(ValueError, match="coincide"):
        similarity_from_eyes(((1.0, 1.0), (1.0, 1.0)), (ARCFACE_LEFT_EYE, ARCFACE_RIGHT_EYE))


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


@pytest.mark.parametrize("grey", [False, True])
def test_align_face_puts_marked_eyes_on_the_template(grey: bool) -> None:
    """Two bright discs at tilted 'eye' positions land on the template within a pixel after warping."""
    yy, xx = np.mgrid[:300, :400]
    eyes = ((151.3, 140.2), (232.6, 171.9))  # 27° tilt, 87 px apart: a rotation and a 0.4× scale
    img = np.zeros((300, 400), np.uint8)
    for ex, ey in eyes:
        img[(xx - ex) ** 2 + (yy - ey) ** 2 <= 8**2] = 255
    face = Face((100, 80, 200, 200), 1.0, {LEFT_EYE: eyes[0], RIGHT_EYE: eyes[1]}, (400, 300))
    crop = align_face(img if grey else np.dstack([img] * 3), face, AlignSpec())
    assert crop.shape == ((112, 112) if grey else (112, 112, 3))
    assert crop.dtype == np.uint8
    plane = crop if grey else crop[..., 0]
    left = centroid(plane[:, :56] > 127)
    right = centroid(plane[:, 56:] > 127)
    right = (right[0] + 56, right[1])
    assert np.hypot(*np.subtract(left, ARCFACE_LEFT_EYE)) < 1.0
    assert np.hypot(*np.subtract(right, ARCFACE_RIGHT_EYE)) < 1.0


def test_box_fallback_places_the_template_from_the_box() -> None:
    spec = AlignSpec()
    face = Face((40, 60, 100, 100), 1.0, {}, (300, 300))
    (left, right), source = alignment_eyes(face, spec)
    assert source == "box"
    fx, fy = spec.fallback_left_eye
    assert left == pytest.approx((40 + fx * 100, 60 + fy * 100))
    assert right[0] > left[0]
    np.testing.assert_allclose(
        transform_points(alignment_matrix(face, spec), [left, right]), [spec.left_eye, spec.right_eye], atol=1e-9
    )
    img = np.full((300, 300, 3), 90, np.uint8)
    assert align_face(img, face, spec).shape == (112, 112, 3)


class Fixed:
    """A FaceDetector returning given faces: tests `find_face`'s choice on exactly known inputs."""

    name = "fixed"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.faces


def test_find_face_policy() -> None:
    img = np.zeros((400, 400, 3), np.uint8)
    big = Face((10, 10, 200, 200), 3.0)
    other = Face((250, 250, 120, 120), 9.0)
    tiny = Face((300, 20, 30, 30), 50.0)
    assert isinstance(Fixed([]), FaceDetector)
    assert find_face(img, Fixed([big, tiny])) is big  # a face under min_size does not count as "several"
    with pytest.raises(MultipleFacesError) as info:
        find_face(img, Fixed([other, big, tiny]))
    assert info.value.count == 2
    assert info.value.boxes == [big.box, other.box]
    assert find_face(img, Fixed([other, big]), allow_multiple="largest") is big
    assert find_face(img, Fixed([other, big]), allow_multiple=True) is other  # most confident
    with pytest.raises(FaceTooSmallError) as small:
        find_face(img, Fixed([tiny]))
    assert (small.value.size, small.value.min_size, small.value.box) == (30, DEFAULT_MIN_FACE_SIZE, tiny.box)
    with pytest.raises(NoFaceError):
        find_face(img, Fixed([]))
    with pytest.raises(ValueError, match="allow_multiple"):
        find_face(img, Fixed([big]), allow_multiple="first")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ detection, real faces


@pytest.fixture(scope="module")
def haar() -> HaarFaceDetector:
    return HaarFaceDetector()


def test_haar_finds_no_face_in_a_blank_image(haar: HaarFaceDetector) -> None:
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert haar.detect(blank) == []
    with pytest.raises(NoFaceError) as info:
        find_face(blank, haar)
    assert info.value.code == "no_face"
    assert info.value.image_size == (320, 240)


def test_detector_input_validation(haar: HaarFaceDetector) -> None:
    with pytest.raises(TypeError):
        haar.detect(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        haar.detect(np.zeros((50, 50, 4), np.uint8))
    with pytest.raises(ValueError, match="unknown face detector"):
        make_detector("mtcnn")


# Eye centres from dlib's 5-point model on the same images (mean of each eye's two corners), rounded.
LFW_FACES = {
    "AJ_Cook_0001": ((104.0, 116.0), (148.0, 115.0)),
    "Aaron_Eckhart_0001": ((106.5, 110.0), (146.0, 109.5)),
    "AJ_Lamas_0001": ((98.5, 115.0), (145.0, 116.0)),
}
ORL_FACES = {"s1/1": ((27.0, 52.5), (62.0, 51.5)), "s4/1": ((25.0, 52.5), (58.5, 54.5))}


@pytest.fixture(scope="module")
def faces_data(data_root: Path) -> dict[str, np.ndarray]:
    """RGB arrays of the LFW and ORL images above, read from the archives (the LFW ones are the tgz's first)."""
    lfw, orl = data_root / "lfw" / "lfw-deepfunneled.tgz", data_root / "orl_faces" / "orl_faces.zip"
    if not (lfw.is_file() and orl.is_file()):
        pytest.skip(f"needs {lfw} and {orl}")
    out: dict[str, np.ndarray] = {}
    with tarfile.open(lfw, "r:gz") as tf:
        for member in tf:
            stem = Path(member.name).stem
            if member.isfile() and stem in LFW_FACES:
                out[stem] = as_rgb_array(decode(tf.extractfile(member).read()))  # type: ignore[union-attr]
                if len(out) == len(LFW_FACES):
                    break
    with zipfile.ZipFile(orl) as z:
        for key in ORL_FACES:
            out[key] = as_rgb_array(decode(z.read(f"orl_faces/{key}.pgm")))
    return out


def assert_eyes_near(face: Face, expected: tuple, tolerance: float = 0.15) -> None:
    """Both eyes within `tolerance` interocular distances of the expected (dlib) eyes."""
    assert face.eyes is not None, f"no eyes found in {face}"
    iod = np.hypot(*np.subtract(expected[1], expected[0]))
    for got, want in zip(face.eyes, expected, strict=True):
        assert np.hypot(*np.subtract(got, want)) < tolerance * iod, (face.eyes, expected)


@pytest.mark.data
@pytest.mark.parametrize("name", [*LFW_FACES, *ORL_FACES])
def test_haar_finds_one_face_with_eyes(haar: HaarFaceDetector, faces_data: dict, name: str) -> None:
    img = faces_data[name]
    faces = haar.detect(img)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert face.image_size == (img.shape[1], img.shape[0])
    assert face.detector == "haar"
    assert x < img.shape[1] / 2 < x + w
    assert y < img.shape[0] / 2 < y + h + 10
    assert face.size >= 60
    expected = LFW_FACES.get(name) or ORL_FACES[name]
    assert_eyes_near(face, expected)
    assert find_face(img, haar) == face


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.mark.data
@pytest.mark.parametrize("name", [*LFW_FACES, *ORL_FACES])
def test_downscaled_search_finds_the_face_full_resolution_finds(faces_data: dict, name: str) -> None:
    full = HaarFaceDetector(HaarParams(search_face=0)).detect(faces_data[name])
    fast = HaarFaceDetector().detect(faces_data[name])
    assert HaarFaceDetector().params.search_face < HaarParams().min_face  # the default search is downscaled
    assert len(full) == len(fast) == 1
    assert box_iou(full[0].box, fast[0].box) > 0.7, (full[0].box, fast[0].box)


class CountingCascade:
    """Wraps a cv2.CascadeClassifier to count the searches made with it."""

    def __init__(self, inner: object, calls: list[str], name: str) -> None:
        self.inner, self.calls, self.name = inner, calls, name

    def detectMultiScale(self, *args: object, **kwargs: object) -> object:
        self.calls.append(self.name)
        return self.inner.detectMultiScale(*args, **kwargs)  # type: ignore[attr-defined]

    def detectMultiScale2(self, *args: object, **kwargs: object) -> object:
        return self.inner.detectMultiScale2(*args, **kwargs)  # type: ignore[attr-defined]


def counting(detector: HaarFaceDetector) -> list[str]:
    calls: list[str] = []
    cascades = detector._cascades()
    for name in list(cascades):
        cascades[name] = CountingCascade(cascades[name], calls, name)  # type: ignore[assignment]
    return calls


@pytest.mark.data
def test_eye_fallback_searches_only_when_the_first_stage_finds_no_pair(faces_data: dict) -> None:
    img = faces_data["AJ_Cook_0001"]
    expected = LFW_FACES["AJ_Cook_0001"]
    default = HaarFaceDetector()
    calls = counting(default)
    (face,) = default.detect(img)
    assert_eyes_near(face, expected)
    assert calls == ["haarcascade_righteye_2splits.xml", "haarcascade_lefteye_2splits.xml"]  # no fallback needed
    # A first stage that cannot find eyes (a cat-face cascade): the fallback runs and finds them.
    cat = ("haarcascade_frontalcatface.xml", "left", 0.0, 0.0), ("haarcascade_frontalcatface.xml", "right", 0.0, 0.0)
    staged = HaarFaceDetector(HaarParams(eye_cascades=cat))
    calls = counting(staged)
    (face,) = staged.detect(img)
    assert_eyes_near(face, expected)
    assert calls.count("haarcascade_eye.xml") == 2
    (face,) = HaarFaceDetector(HaarParams(eye_cascades=cat, eye_fallback=())).detect(img)
    assert face.eyes is None  # without the fallback, no eyes: the fallback did the finding above


@pytest.mark.data
def test_aligned_real_face_has_eyes_on_template_and_fallback_is_close(haar: HaarFaceDetector, faces_data: dict) -> None:
    img = faces_data["AJ_Cook_0001"]
    spec = AlignSpec()
    crop, face = detect_and_align(img, haar, spec)
    assert crop.shape == (112, 112, 3)
    assert crop.dtype == np.uint8
    matrix = alignment_matrix(face, spec)
    np.testing.assert_allclose(transform_points(matrix, face.eyes), [spec.left_eye, spec.right_eye], atol=1e-6)
    # Where the independent (dlib) eyes land in the crop: near the template.
    dlib_in_crop = transform_points(matrix, LFW_FACES["AJ_Cook_0001"])
    template_iod = spec.right_eye[0] - spec.left_eye[0]
    assert np.abs(dlib_in_crop - [spec.left_eye, spec.right_eye]).max() < 0.15 * template_iod
    # Without landmarks the box fallback puts the same eyes within a fraction of the eye distance of the template.
    boxed = dataclasses.replace(face, landmarks={})
    assert alignment_eyes(boxed, spec)[1] == "box"
    fallback = transform_points(alignment_matrix(boxed, spec), face.eyes)
    assert np.abs(fallback - [spec.left_eye, spec.right_eye]).max() < 0.2 * template_iod
    assert align_face(img, boxed, spec).shape == (112, 112, 3)


@pytest.mark.data
def test_orl_face_that_fills_the_frame_aligns(haar: HaarFaceDetector, faces_data: dict) -> None:
    grey = faces_data["s1/1"][..., 0]  # ORL is grey: the H×W path
    crop, face = detect_and_align(grey, haar)
    assert crop.shape == (112, 112)
    assert face.box[2] >= 0.7 * grey.shape[1]  # the face fills the frame (found thanks to the padded retry)


@pytest.mark.data
def test_two_faces_side_by_side(haar: HaarFaceDetector, faces_data: dict) -> None:
    a, b = faces_data["AJ_Cook_0001"], faces_data["Aaron_Eckhart_0001"]
    canvas = np.concatenate([a, b], axis=1)  # 500×250, one face in each half
    with pytest.raises(MultipleFacesError) as info:
        find_face(canvas, haar)
    assert info.value.count == 2
    assert info.value.code == "multiple_faces"
    lefts = sorted(box[0] for box in info.value.boxes)
    assert lefts[0] < 250 <= lefts[1]
    chosen = find_face(canvas, haar, allow_multiple="largest")
    assert chosen.area == max(w * h for _, _, w, h in info.value.boxes)
    assert find_face(canvas, haar, allow_multiple=True).eyes is not None


@pytest.mark.data
def test_face_too_small(haar: HaarFaceDetector, faces_data: dict) -> None:
    img = faces_data["AJ_Cook_0001"]
    with pytest.raises(FaceTooSmallError) as info:
        find_face(img, haar, min_size=200)
    assert info.value.code == "face_too_small"
    assert 90 <= info.value.size < 200
    assert info.value.min_size == 200
    thumb = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BOX))
    with pytest.raises(FaceTooSmallError) as info:  # the face is ~29 px: found, but under the default minimum
        find_face(thumb, haar)
    assert info.value.size < DEFAULT_MIN_FACE_SIZE
    # Found only by the detector's small-face probe: without it, the same photo has "no face".
    no_probe = HaarFaceDetector(dataclasses.replace(haar.params, small_face_probe=0))
    with pytest.raises(NoFaceError):
        find_face(thumb, no_probe)


@pytest.fixture(scope="module")
def dlib_detector() -> FaceDetector:
    if not dlib_available():
        pytest.skip(
            "dlib or its 5-point model not installed (optional backend: pip install dlib-bin face_recognition_models)"
        )
    return make_detector("dlib")


@pytest.mark.data
@pytest.mark.parametrize("name", ["AJ_Cook_0001", "s1/1"])
def test_dlib_backend_agrees(dlib_detector: FaceDetector, faces_data: dict, name: str) -> None:
    detector = dlib_detector
    img = faces_data[name]
    face = find_face(img, detector)
    assert face.detector == "dlib-hog"
    assert face.score > 0
    assert "nose" in face.landmarks
    assert_eyes_near(face, LFW_FACES.get(name) or ORL_FACES[name], tolerance=0.05)
    assert align_face(img, face).shape == (112, 112, 3)
