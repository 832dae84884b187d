"""Face datasets and their protocols, read in place from the archives in `../shared/data`.

- LFW (Huang et al. 2007; deep-funneled images, Huang et al. 2012): `load_lfw_protocol(root)` parses
  the protocol text files into View 2's ten folds and View 1's train/test split (`LFWSplit` says what
  to train on, where to pick thresholds and what to score); `list_lfw_images` and `iter_lfw_images`
  read `lfw/lfw-deepfunneled.tgz`.
- ORL / AT&T (Olivetti Research Laboratory; Samaria & Harter 1994): `iter_orl_images(root)`.
- Extended Yale B, cropped (Georghiades et al. 2001; Lee et al. 2005): `iter_yaleb_images(root)`.
- `split_subjects`: seeded held-out subjects for ORL / Yale (never images of a training subject).

Readers yield raw file bytes with identity metadata (`FaceImage`) and nothing else: decoding, face
detection and alignment belong to the image pipeline, which caches its own crops. A .tgz has no index,
so each reader makes one sequential pass over its archive (LFW: ~110 MB, about 2 s); never seek into
one per image. Every function takes the data root as an argument (default `../shared/data`).
"""

from __future__ import annotations

import logging
import re
import tarfile
import zipfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

LOG = logging.getLogger(__name__)

DEFAULT_ROOT = Path("../shared/data")
LFW_ARCHIVE = "lfw/lfw-deepfunneled.tgz"
LFW_PREFIX = "lfw-deepfunneled"
ORL_ARCHIVE = "orl_faces/orl_faces.zip"
YALEB_ARCHIVE = "yaleb/CroppedYale.tgz"
YALEB_SKIP_NAMES = frozenset({"DEADJOE", "WS_FTP.LOG"})


class FaceImage(NamedTuple):
    """One image file: identity (LFW name, ORL "s7", Yale "yaleB03"), file name, and its raw bytes."""

    identity: str
    filename: str
    data: bytes


def _require(root: Path | str, relative: str) -> Path:
    path = Path(root) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{relative} not found under {root} (the shared data folder; see its README)")
    return path


# ------------------------------------------------------------------------------------------ LFW files
@dataclass(frozen=True)
class Pair:
    """An LFW pair: image `index_a` (1-based, as in the file names) of `name_a` and `index_b` of `name_b`.

    Matched pairs have name_a == name_b.
    """

    name_a: str
    index_a: int
    name_b: str
    index_b: int

    @property
    def same(self) -> bool:
        return self.name_a == self.name_b

    @property
    def members(self) -> tuple[str, str]:
        """The two images' paths inside `lfw-deepfunneled.tgz`."""
        return lfw_member(self.name_a, self.index_a), lfw_member(self.name_b, self.index_b)


def lfw_member(name: str, index: int) -> str:
    """Archive path of image `index` (1-based) of `name`: "lfw-deepfunneled/<Name>/<Name>_NNNN.jpg"."""
    return f"{LFW_PREFIX}/{name}/{name}_{index:04d}.jpg"


def _lines(path: Path) -> list[list[str]]:
    """Whitespace-split non-empty lines (the files use tabs; some copies use spaces or CRLF)."""
    return [line.split() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


def _int(tokens: list[str], path: Path, lineno: int) -> int:
    if len(tokens) != 1 or not tokens[0].isdigit():
        raise ValueError(f"{path}:{lineno}: expected a count, got {' '.join(tokens)!r}")
    return int(tokens[0])


def parse_pairs(path: Path | str) -> list[list[Pair]]:
    """Pairs per fold from an LFW pairs file.

    pairs.txt (View 2): first line "10 300" (folds, pairs per kind); then per fold 300 matched lines
    "name i j" followed by 300 mismatched lines "name1 i name2 j". pairsDevTrain/Test.txt (View 1):
    first line "1100" / "500", then that many matched lines and as many mismatched: one fold.
    Raises ValueError (with the line number) on anything else.
    """
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path} is empty")
    head = lines[0]
    if len(head) == 2 and all(t.isdigit() for t in head):
        n_folds, n_each = int(head[0]), int(head[1])
    else:
        n_folds, n_each = 1, _int(head, path, 1)
    expected = 1 + n_folds * 2 * n_each
    if len(lines) != expected:
        raise ValueError(f"{path}: header says {n_folds}×2×{n_each} pairs ({expected} lines), file has {len(lines)}")
    folds: list[list[Pair]] = []
    k = 1
    for _ in range(n_folds):
        fold = []
        for same in (True, False):
            for _ in range(n_each):
                t = lines[k]
                k += 1
                try:
                    if same and len(t) == 3:
                        fold.append(Pair(t[0], int(t[1]), t[0], int(t[2])))
                    elif not same and len(t) == 4:
                        fold.append(Pair(t[0], int(t[1]), t[2], int(t[3])))
                    else:
                        raise ValueError("wrong field count")
                except ValueError as e:
                    kind = "matched 'name i j'" if same else "mismatched 'name1 i name2 j'"
                    raise ValueError(f"{path}:{k}: expected a {kind} line, got {' '.join(t)!r}") from e
        folds.append(fold)
    return folds


def parse_people(path: Path | str) -> list[dict[str, int]]:
    """People (name → image count) per fold from an LFW people file.

    people.txt (View 2): first line the number of folds (10); then per fold a line with its person count
    followed by that many "name n_images" lines. peopleDevTrain/Test.txt (View 1): first line the person
    count, then the lines: one fold. The two are told apart by whether line 2 is a lone count.
    """
    path = Path(path)
    lines = _lines(path)
    if len(lines) < 2:
        raise ValueError(f"{path} is too short to be an LFW people file")
    first = _int(lines[0], path, 1)
    multi = len(lines[1]) == 1
    n_folds = first if multi else 1
    folds: list[dict[str, int]] = []
    k = 1
    for _ in range(n_folds):
        if multi:
            count = _int(lines[k], path, k + 1)
            k += 1
        else:
            count = first
        fold: dict[str, int] = {}
        for _ in range(count):
            if k >= len(lines):
                raise ValueError(f"{path}: ends inside a fold (expected {count} people)")
            t = lines[k]
            k += 1
            if len(t) != 2 or not t[1].isdigit():
                raise ValueError(f"{path}:{k}: expected 'name n_images', got {' '.join(t)!r}")
            if t[0] in fold:
                raise ValueError(f"{path}:{k}: {t[0]} listed twice in one fold")
            fold[t[0]] = int(t[1])
        folds.append(fold)
    if k != len(lines):
        raise ValueError(f"{path}: {len(lines) - k} lines after the last fold")
    return folds


# ------------------------------------------------------------------------------------- LFW protocols
@dataclass(frozen=True)
class LFWSplit:
    """One train/test split of an LFW protocol.

    train_people: the only identities a model scored on `test_pairs` may have seen.
    threshold_pairs: pairs to choose the decision threshold on (View 2: the other nine folds' pairs;
      View 1: pairsDevTrain.txt), all between `train_people`.
    test_pairs: the pairs to score (300 matched then 300 mismatched per View 2 fold), between
      `test_people` only.
    """

    name: str
    train_people: frozenset[str]
    test_people: frozenset[str]
    threshold_pairs: tuple[Pair, ...]
    test_pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class LFWProtocol:
    """LFW's protocol files, parsed and cross-checked.

    folds_people, folds_pairs: View 2 (people.txt, pairs.txt), ten folds each, fold k's pairs only
      between fold k's people.
    dev_train_people, dev_test_people, dev_train_pairs, dev_test_pairs: View 1.
    image_counts: name → number of images, for all 5,749 people (from people.txt).
    """

    folds_people: tuple[dict[str, int], ...]
    folds_pairs: tuple[tuple[Pair, ...], ...]
    dev_train_people: dict[str, int]
    dev_test_people: dict[str, int]
    dev_train_pairs: tuple[Pair, ...]
    dev_test_pairs: tuple[Pair, ...]
    image_counts: dict[str, int]

    @property
    def n_folds(self) -> int:
        return len(self.folds_pairs)

    def view2_split(self, k: int) -> LFWSplit:
        """View 2 fold k (0-based): train on the other folds' people, pick thresholds on their pairs."""
        if not 0 <= k < self.n_folds:
            raise IndexError(f"fold {k} not in 0..{self.n_folds - 1}")
        others = [i for i in range(self.n_folds) if i != k]
        return LFWSplit(
            name=f"view2-fold{k + 1:02d}",
            train_people=frozenset(n for i in others for n in self.folds_people[i]),
            test_people=frozenset(self.folds_people[k]),
            threshold_pairs=tuple(p for i in others for p in self.folds_pairs[i]),
            test_pairs=self.folds_pairs[k],
        )

    def view2_splits(self) -> list[LFWSplit]:
        return [self.view2_split(k) for k in range(self.n_folds)]

    def view1_split(self) -> LFWSplit:
        """View 1: train on peopleDevTrain, pick thresholds on pairsDevTrain, score pairsDevTest once."""
        return LFWSplit(
            name="view1",
            train_people=frozenset(self.dev_train_people),
            test_people=frozenset(self.dev_test_people),
            threshold_pairs=self.dev_train_pairs,
            test_pairs=self.dev_test_pairs,
        )


def _check_pairs(pairs: Sequence[Pair], people: dict[str, int], what: str) -> None:
    for p in pairs:
        for name, index in ((p.name_a, p.index_a), (p.name_b, p.index_b)):
            if name not in people:
                raise ValueError(f"{what}: pair {p} names {name}, who is not among its people")
            if not 1 <= index <= people[name]:
                raise ValueError(f"{what}: pair {p} asks for image {index} of {name}, who has {people[name]}")


def load_lfw_protocol(root: Path | str = DEFAULT_ROOT) -> LFWProtocol:
    """Parse `lfw/{people,pairs,peopleDevTrain,peopleDevTest,pairsDevTrain,pairsDevTest}.txt` under root.

    Checks while loading (ValueError otherwise): View 2 has as many people folds as pair folds, each
    person in one fold, every pair between people of its own fold and with image indices they have;
    View 1 train and test people are disjoint and each pairs file stays within its people.
    """
    lfw = Path(root) / "lfw"
    for f in ("people.txt", "pairs.txt", "peopleDevTrain.txt", "peopleDevTest.txt"):
        _require(root, f"lfw/{f}")
    people = parse_people(lfw / "people.txt")
    pairs = parse_pairs(lfw / "pairs.txt")
    if len(people) != len(pairs):
        raise ValueError(f"people.txt has {len(people)} folds, pairs.txt {len(pairs)}")
    counts: dict[str, int] = {}
    for k, fold in enumerate(people):
        dup = set(fold) & set(counts)
        if dup:
            raise ValueError(f"people.txt: {sorted(dup)[:3]} appear in fold {k + 1} and an earlier one")
        counts.update(fold)
        _check_pairs(pairs[k], fold, f"pairs.txt fold {k + 1}")
    (dev_train_people,) = parse_people(_require(root, "lfw/peopleDevTrain.txt"))
    (dev_test_people,) = parse_people(_require(root, "lfw/peopleDevTest.txt"))
    (dev_train_pairs,) = parse_pairs(_require(root, "lfw/pairsDevTrain.txt"))
    (dev_test_pairs,) = parse_pairs(_require(root, "lfw/pairsDevTest.txt"))
    if set(dev_train_people) & set(dev_test_people):
        raise ValueError("View 1 train and test people overlap")
    _check_pairs(dev_train_pairs, dev_train_people, "pairsDevTrain.txt")
    _check_pairs(dev_test_pairs, dev_test_people, "pairsDevTest.txt")
    LOG.info("LFW protocol: %d folds, %d people, View 1 %d/%d pairs", len(pairs), len(counts),
             len(dev_train_pairs), len(dev_test_pairs))  # fmt: skip
    return LFWProtocol(
        folds_people=tuple(people),
        folds_pairs=tuple(tuple(f) for f in pairs),
        dev_train_people=dev_train_people,
        dev_test_people=dev_test_people,
        dev_train_pairs=tuple(dev_train_pairs),
        dev_test_pairs=tuple(dev_test_pairs),
        image_counts=counts,
    )


# ------------------------------------------------------------------------------------------ LFW images
@dataclass(frozen=True)
class LFWImage:
    """An image of the LFW archive: person `name`, 1-based `index` (as in pairs files), archive `member`."""

    name: str
    index: int
    member: str


_LFW_FILE = re.compile(rf"^{LFW_PREFIX}/([^/]+)/\1_(\d{{4}})\.jpg$")


def list_lfw_images(root: Path | str = DEFAULT_ROOT) -> list[LFWImage]:
    """Every image of `lfw-deepfunneled.tgz` (headers only, one pass), sorted by (name, index).

    Members that are not `<Name>/<Name>_NNNN.jpg` files are logged and skipped.
    """
    out = []
    with tarfile.open(_require(root, LFW_ARCHIVE), mode="r|gz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            match = _LFW_FILE.match(m.name)
            if match is None:
                LOG.warning("LFW archive: skipping unexpected member %s", m.name)
                continue
            out.append(LFWImage(match.group(1), int(match.group(2)), m.name))
    return sorted(out, key=lambda i: (i.name, i.index))


def iter_lfw_images(root: Path | str = DEFAULT_ROOT, names: Collection[str] | None = None) -> Iterator[FaceImage]:
    """(name, "<Name>_NNNN.jpg", JPEG bytes) for every LFW image, or only those of `names`, in archive
    order, in one sequential pass over the .tgz (a streaming read: no random access)."""
    wanted = None if names is None else set(names)
    with tarfile.open(_require(root, LFW_ARCHIVE), mode="r|gz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            match = _LFW_FILE.match(m.name)
            if match is None or (wanted is not None and match.group(1) not in wanted):
                continue
            f = tf.extractfile(m)
            if f is None:
                continue
            yield FaceImage(match.group(1), m.name.rsplit("/", 1)[1], f.read())


# ------------------------------------------------------------------------------------------ ORL, Yale
def _natural(s: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def iter_orl_images(root: Path | str = DEFAULT_ROOT) -> Iterator[FaceImage]:
    """("s1".."s40", "1.pgm".."10.pgm", PGM bytes) for the 400 ORL images, in natural order
    (s1/1 .. s1/10, s2/1, ...). The archive's README is skipped."""
    with zipfile.ZipFile(_require(root, ORL_ARCHIVE)) as zf:
        names = [n for n in zf.namelist() if n.endswith(".pgm")]
        for n in sorted(names, key=_natural):
            parts = n.split("/")
            yield FaceImage(parts[-2], parts[-1], zf.read(n))


def yaleb_usable(member: str) -> bool:
    """Whether an archive member of CroppedYale.tgz is a usable image (the data README's rules): a
    `.pgm` (so not `*.pgm.bad`, `*.info`, `DEADJOE`, `WS_FTP.LOG`) that is not an `*_Ambient.pgm`
    (some of those are uncropped 640×480)."""
    base = member.rsplit("/", 1)[-1]
    return base.endswith(".pgm") and not base.endswith("_Ambient.pgm") and base not in YALEB_SKIP_NAMES


def iter_yaleb_images(root: Path | str = DEFAULT_ROOT) -> Iterator[FaceImage]:
    """("yaleB01".., "yaleB01_P00A+000E+00.pgm", PGM bytes) for the 2,414 usable cropped Extended
    Yale B images (38 subjects), in archive order, one pass over the .tgz."""
    with tarfile.open(_require(root, YALEB_ARCHIVE), mode="r|gz") as tf:
        for m in tf:
            if not m.isfile() or not yaleb_usable(m.name):
                continue
            f = tf.extractfile(m)
            if f is None:
                continue
            parts = m.name.split("/")
            yield FaceImage(parts[-2], parts[-1], f.read())


def split_subjects(subjects: Collection[str], n_holdout: int, seed: int) -> tuple[list[str], list[str]]:
    """(train subjects, held-out subjects), both sorted; `n_holdout` chosen with numpy default_rng(seed).

    Depends only on the set of subjects and the seed (not their order or repeats), so the same call
    holds out the same people on every machine. Raises ValueError unless 0 < n_holdout < #subjects.
    """
    unique = sorted(set(subjects), key=_natural)
    if not 0 < n_holdout < len(unique):
        raise ValueError(f"cannot hold out {n_holdout} of {len(unique)} subjects")
    held = set(np.random.default_rng(seed).choice(len(unique), size=n_holdout, replace=False).tolist())
    return [s for i, s in enumerate(unique) if i not in held], [s for i, s in enumerate(unique) if i in held]
