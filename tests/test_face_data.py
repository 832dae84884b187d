"""Face dataset protocols: the parsers on small files, then the invariants of the real LFW, ORL and Yale B
files (marked `data`; skipped with a reason without ../shared/data)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.data.faces import (
    LFWProtocol,
    Pair,
    iter_lfw_images,
    iter_orl_images,
    iter_yaleb_images,
    lfw_member,
    list_lfw_images,
    load_lfw_protocol,
    parse_pairs,
    parse_people,
    split_subjects,
    yaleb_usable,
)

# ------------------------------------------------------------------------------- no data needed


def test_parse_pairs_view2_layout(tmp_path: Path) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t3\nC\t2\tD\t4\n")
    folds = parse_pairs(f)
    assert folds == [[Pair("A", 1, "A", 2), Pair("A", 1, "B", 1)], [Pair("C", 1, "C", 3), Pair("C", 2, "D", 4)]]
    assert [p.same for p in folds[0]] == [True, False]
    assert folds[1][1].members == ("lfw-deepfunneled/C/C_0002.jpg", "lfw-deepfunneled/D/D_0004.jpg")


def test_parse_pairs_view1_layout_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "pairsDevTest.txt"
    f.write_text("1\r\nA 1 2\r\nA 1 B 1\r\n")  # one fold; spaces and CRLF are accepted too
    assert parse_pairs(f) == [[Pair("A", 1, "A", 2), Pair("A", 1, "B", 1)]]
    f.write_text("1\nA 1 B 1\nA 1 2\n")  # mismatched line where a matched one belongs
    with pytest.raises(ValueError, match=r":2: expected a matched"):
        parse_pairs(f)
    f.write_text("2\nA 1 2\nA 1 B 1\n")
    with pytest.raises(ValueError, match="header says"):
        parse_pairs(f)


def test_parse_people_both_layouts(tmp_path: Path) -> None:
    f = tmp_path / "people.txt"
    f.write_text("2\n2\nA\t3\nB\t1\n1\nC\t2\n")
    assert parse_people(f) == [{"A": 3, "B": 1}, {"C": 2}]
    f.write_text("2\nA\t3\nB\t1\n")
    assert parse_people(f) == [{"A": 3, "B": 1}]
    f.write_text("3\nA\t3\nB\t1\n")
    with pytest.raises(ValueError, match="ends inside a fold"):
        parse_people(f)
    f.write_text("1\nA\t3\nB\t1\n")
    with pytest.raises(ValueError, match="after the last fold"):
        parse_people(f)


def test_lfw_member_path() -> None:
    assert lfw_member("George_W_Bush", 12) == "lfw-deepfunneled/George_W_Bush/George_W_Bush_0012.jpg"


def test_yaleb_skip_rules() -> None:
    keep = "CroppedYale/yaleB01/yaleB01_P00A+000E+00.pgm"
    skip = [
        "CroppedYale/yaleB11/yaleB11_P00A+050E-40.pgm.bad",
        "CroppedYale/yaleB01/yaleB01_P00_Ambient.pgm",
        "CroppedYale/yaleB01/DEADJOE",
        "CroppedYale/yaleB01/WS_FTP.LOG",
        "CroppedYale/yaleB01/yaleB01_P00.info",
    ]
    assert yaleb_usable(keep)
    assert not any(yaleb_usable(s) for s in skip)


def test_split_subjects_is_deterministic_and_disjoint() -> None:
    subjects = [f"s{i}" for i in range(1, 41)]
    train, held = split_subjects(subjects, 10, seed=0)
    assert len(held) == 10
    assert len(train) == 30
    assert not set(train) & set(held)
    assert set(train) | set(held) == set(subjects)
    # The same people for a shuffled, repeated list; others for another seed.
    assert split_subjects(list(reversed(subjects)) * 2, 10, seed=0) == (train, held)
    assert split_subjects(subjects, 10, seed=1)[1] != held
    with pytest.raises(ValueError, match="cannot hold out"):
        split_subjects(subjects, 40, seed=0)


# ------------------------------------------------------------------------------- the real files


def _need(data_root: Path, *relative: str) -> Path:
    """`data_root`, or skip when one of the files this test reads is not there."""
    for r in relative:
        if not (data_root / r).is_file():
            pytest.skip(f"needs {data_root / r}")
    return data_root


@pytest.fixture(scope="module")
def lfw(data_root: Path) -> LFWProtocol:
    files = ("people", "pairs", "peopleDevTrain", "peopleDevTest", "pairsDevTrain", "pairsDevTest")
    return load_lfw_protocol(_need(data_root, *(f"lfw/{f}.txt" for f in files)))


@pytest.mark.data
def test_lfw_view2_folds(lfw: LFWProtocol) -> None:
    assert lfw.n_folds == 10
    assert [len(f) for f in lfw.folds_pairs] == [600] * 10  # 6,000 pairs
    for fold in lfw.folds_pairs:  # 300 matched, then 300 mismatched
        assert [p.same for p in fold] == [True] * 300 + [False] * 300
    assert [len(f) for f in lfw.folds_people] == [601, 555, 552, 560, 567, 527, 597, 601, 580, 609]
    assert len(lfw.image_counts) == 5749
    assert sum(lfw.image_counts.values()) == 13233
    # People of fold k appear only in pairs of fold k.
    for k, pairs in enumerate(lfw.folds_pairs):
        names = {n for p in pairs for n in (p.name_a, p.name_b)}
        assert names <= set(lfw.folds_people[k])
        for j, people in enumerate(lfw.folds_people):
            if j != k:
                assert not names & set(people)


@pytest.mark.data
def test_lfw_view2_splits_keep_test_people_out_of_training(lfw: LFWProtocol) -> None:
    splits = lfw.view2_splits()
    assert [s.name for s in splits][:2] == ["view2-fold01", "view2-fold02"]
    for s in splits:
        assert not s.train_people & s.test_people
        assert len(s.train_people) + len(s.test_people) == 5749
        assert len(s.threshold_pairs) == 5400
        assert len(s.test_pairs) == 600
        assert {n for p in s.threshold_pairs for n in (p.name_a, p.name_b)} <= s.train_people
        assert {n for p in s.test_pairs for n in (p.name_a, p.name_b)} <= s.test_people
    assert len({p for s in splits for p in s.test_pairs}) == 6000  # every pair scored exactly once


@pytest.mark.data
def test_lfw_view1(lfw: LFWProtocol) -> None:
    v1 = lfw.view1_split()
    assert (len(lfw.dev_train_people), len(lfw.dev_test_people)) == (4038, 1711)
    assert (sum(lfw.dev_train_people.values()), sum(lfw.dev_test_people.values())) == (9525, 3708)
    assert (len(v1.threshold_pairs), len(v1.test_pairs)) == (2200, 1000)
    assert Counter(p.same for p in v1.threshold_pairs) == {True: 1100, False: 1100}
    assert Counter(p.same for p in v1.test_pairs) == {True: 500, False: 500}
    assert not v1.train_people & v1.test_people
    # View 1 partitions the same 5,749 people (with the same image counts) differently from View 2.
    assert {**lfw.dev_train_people, **lfw.dev_test_people} == lfw.image_counts


@pytest.mark.data
def test_lfw_archive_matches_the_protocol(data_root: Path, lfw: LFWProtocol) -> None:
    images = list_lfw_images(
        _need(data_root, "lfw/lfw-deepfunneled.tgz")
    )  # one pass over the 110 MB .tgz headers (~2 s)
    assert len(images) == 13233
    assert Counter(i.name for i in images) == lfw.image_counts
    members = {i.member for i in images}
    every_pair = [p for f in lfw.folds_pairs for p in f] + list(lfw.dev_train_pairs + lfw.dev_test_pairs)
    assert all(m in members for p in every_pair for m in p.members)


@pytest.mark.data
def test_lfw_images_stream_as_jpeg_bytes(data_root: Path, lfw: LFWProtocol) -> None:
    got = list(iter_lfw_images(_need(data_root, "lfw/lfw-deepfunneled.tgz"), names={"Abel_Pacheco", "Zico"}))
    assert Counter(g.identity for g in got) == {"Abel_Pacheco": 4, "Zico": 3}
    assert {g.filename for g in got} >= {"Abel_Pacheco_0001.jpg", "Zico_0003.jpg"}
    assert all(g.data[:3] == b"\xff\xd8\xff" for g in got)  # JPEG start-of-image marker


@pytest.mark.data
def test_orl(data_root: Path) -> None:
    images = list(iter_orl_images(_need(data_root, "orl_faces/orl_faces.zip")))
    assert len(images) == 400
    assert Counter(i.identity for i in images) == {f"s{k}": 10 for k in range(1, 41)}
    assert [i.filename for i in images[:3]] == ["1.pgm", "2.pgm", "3.pgm"]
    assert all(i.data.startswith(b"P5\n92 112\n255\n") for i in images)  # 92×112 8-bit grey


@pytest.mark.data
def test_yaleb_usable_images(data_root: Path) -> None:
    images = list(iter_yaleb_images(_need(data_root, "yaleb/CroppedYale.tgz")))  # one pass over the 57 MB .tgz
    assert len(images) == 2414
    per_subject = Counter(i.identity for i in images)
    assert len(per_subject) == 38
    assert all(i.filename.endswith(".pgm") and "Ambient" not in i.filename for i in images)
    # Every kept image is a cropped 168×192 PGM (the uncropped 640×480 ambient shots are gone).
    assert all(i.data.split(b"\n")[1] == b"168 192" for i in images)
