"""A FAISS index over gallery embeddings, with explicit int64 ids (the store's face or subject ids).

The index is a cache: the store is the truth, and the index is rebuilt from it at every start. Three kinds:
  - "flat": exact search (brute force); the default, and right up to some 10^5 faces on a CPU.
  - "hnsw": approximate (HNSW graph, `hnsw_m` links, `ef_search` beam). FAISS's HNSW cannot remove vectors,
    so removals are tombstones filtered out of results, and an id added again gets a fresh internal label
    (the id map below); `needs_rebuild` asks for a rebuild once tombstones pile up.
  - "ivf": approximate (inverted lists over a k-means coarse quantiser; `nprobe` lists searched). It needs a
    training set: below 78 vectors (2 lists × 39, FAISS's minimum per list) it stays exact, and
    `needs_rebuild` asks for a retrain once the gallery has grown 4× past the set it was trained on.

Values are in the units of the card's distance (`model.distances`), best first: cosine similarity (vectors
are L2-normalised here, then inner product; higher is closer), Euclidean distance (FAISS's squared L2, rooted)
or L1 (lower is closer).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

from model import distances

LOG = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivf")
IVF_MIN_PER_LIST = 39  # FAISS warns below 39 training points per centroid


@dataclass(frozen=True)
class IndexParams:
    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    ivf_nlist: int = 0  # 0: about 4·√n, at most n / IVF_MIN_PER_LIST
    ivf_nprobe: int = 0  # 0: a quarter of the lists, at least 16 (see `VectorIndex.nprobe`)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {self.kind!r}")


_METRICS = {"cosine": faiss.METRIC_INNER_PRODUCT, "euclidean": faiss.METRIC_L2, "l1": faiss.METRIC_L1}


class VectorIndex:
    """Vectors (float32, `dim` wide) under int64 ids, searched with the card's distance.

    Not thread-safe: the gallery serialises access. `search` returns (values N×k float32, ids N×k int64),
    best first, padded with id -1 (and value NaN) where fewer than k live vectors exist.
    """

    def __init__(self, dim: int, distance: str, params: IndexParams | None = None) -> None:
        self.dim = int(dim)
        self.distance = distances.get(distance)
        self.params = params or IndexParams()
        if self.params.kind == "ivf" and distance == "l1":
            raise ValueError("FAISS's IVF index has no L1 scanner; use index 'flat' or 'hnsw' for an L1 model")
        self._metric = _METRICS[distance]
        self._deleted: set[int] = set()  # HNSW: tombstoned internal labels
        self._label: dict[int, int] = {}  # HNSW: id -> its live internal label
        self._owner: dict[int, int] = {}  # HNSW: internal label -> id (tombstoned ones included)
        self._next_label = 0
        self._trained_on = 0
        self.kind = "flat"  # the kind actually built (IVF falls back to flat on tiny galleries)
        self._index = self._make(np.zeros((0, self.dim), np.float32))

    # ----------------------------------------------------------------------------------------- building
    def _make(self, train: np.ndarray) -> faiss.Index:
        p, d, n = self.params, self.dim, len(train)
        if p.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(d, p.hnsw_m, self._metric)
            inner.hnsw.efConstruction = p.hnsw_ef_construction
            inner.hnsw.efSearch = p.hnsw_ef_search
            self.kind = "hnsw"
        elif p.kind == "ivf" and self._nlist(n) >= 2:
            nlist = self._nlist(n)
            quantizer = faiss.IndexFlat(d, self._metric)
            inner = faiss.IndexIVFFlat(quantizer, d, nlist, self._metric)
            inner.cp.seed = 1234  # reproducible k-means
            inner.train(train)
            inner.nprobe = self.nprobe(nlist)
            self._quantizer = quantizer  # the IVF index does not own it from Python
            self._trained_on = n
            self.kind = "ivf"
            # IVF stores ids in its lists itself; an IDMap over it would mistranslate ids after a removal
            # (IDMap assumes the wrapped index renumbers the survivors, as a flat index does and IVF does not).
            self._inner = inner
            return inner
        else:
            inner = faiss.IndexFlat(d, self._metric)
            self._trained_on = n
            self.kind = "flat"
        self._inner = inner  # keep the wrapped index alive next to its IDMap
        return faiss.IndexIDMap2(inner)

    def nprobe(self, nlist: int) -> int:
        """Lists searched per query: the setting, or by default a quarter of them and at least 16, so that a
        small gallery (few lists) is searched whole, i.e. exactly. Fewer lose recall fast on spread-out vectors
        (1M random 128-d, nlist 1024: nprobe 32 / 128 / 256 give recall@1 0.69 / 0.93 / 0.98, at 2.0 / 6.9 /
        15.1 ms on one core; exact search 46 ms)."""
        return max(1, min(self.params.ivf_nprobe or max(nlist // 4, 16), nlist))

    def _nlist(self, n: int) -> int:
        cap = n // IVF_MIN_PER_LIST
        want = self.params.ivf_nlist or round(4 * math.sqrt(max(n, 1)))
        return min(want, cap)

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim))
        if self.distance.name == "cosine":
            x = np.ascontiguousarray(distances.normalize(x), dtype=np.float32)
        return x

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the contents with these vectors (trains IVF on them)."""
        x = self._prepare(vectors)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        self._deleted.clear()
        self._label.clear()
        self._owner.clear()
        self._next_label = 0
        self._index = self._make(x)
        self.add(ids, x, prepared=True)
        LOG.info("built %s index (requested %s) over %d vectors", self.kind, self.params.kind, len(x))

    # ---------------------------------------------------------------------------------------- mutations
    def add(self, ids: np.ndarray, vectors: np.ndarray, prepared: bool = False) -> None:
        """Add vectors under `ids`, which must be absent (`remove` an id before adding it again)."""
        x = vectors if prepared else self._prepare(vectors)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if not len(x):
            return
        if self.kind != "hnsw":
            self._index.add_with_ids(x, ids)
            return
        self.remove(ids)  # HNSW: an id added again must not keep its old label live
        labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
        self._next_label += len(ids)
        for i, label in zip(ids.tolist(), labels.tolist(), strict=True):
            self._label[i] = label
            self._owner[label] = i
        self._index.add_with_ids(x, labels)

    def remove(self, ids: np.ndarray | list[int]) -> None:
        """Remove these ids (unknown ids are ignored)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        if self.kind != "hnsw":
            self._index.remove_ids(ids)
            return
        for i in ids.tolist():
            label = self._label.pop(i, None)
            if label is not None:
                self._deleted.add(label)

    @property
    def size(self) -> int:
        """Live vectors (tombstones excluded)."""
        return int(self._index.ntotal) - len(self._deleted)

    @property
    def needs_rebuild(self) -> bool:
        """HNSW: tombstones are over a fifth of the graph. IVF: grown 4× past its training set (or big enough
        to leave the exact fallback). The caller rebuilds from its vectors with `build`."""
        if self.kind == "hnsw":
            return len(self._deleted) > max(64, self._index.ntotal // 5)
        if self.params.kind == "ivf":
            n = self.size
            grew = n > 4 * max(self._trained_on, 1)
            return grew and self._nlist(n) >= 2
        return False

    # ------------------------------------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self._prepare(queries)
        nq = len(q)
        values = np.full((nq, k), np.nan, dtype=np.float32)
        ids = np.full((nq, k), -1, dtype=np.int64)
        total = int(self._index.ntotal)
        if total == 0 or k < 1:
            return values, ids
        fetch = min(total, k + len(self._deleted))
        raw, found = self._index.search(q, fetch)
        if self._metric == faiss.METRIC_L2:
            raw = np.sqrt(np.maximum(raw, 0.0))
        hnsw = self.kind == "hnsw"
        for row in range(nq):
            keep = [
                (v, self._owner[int(i)] if hnsw else int(i))
                for v, i in zip(raw[row], found[row], strict=True)
                if i >= 0 and int(i) not in self._deleted
            ][:k]
            if keep:
                values[row, : len(keep)] = [v for v, _ in keep]
                ids[row, : len(keep)] = [i for _, i in keep]
        return values, ids
