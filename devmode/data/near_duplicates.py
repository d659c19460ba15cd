"""Near-duplicate texts: MinHash signatures over character 5-gram shingles (``datasketch``),
shared by the Monitor's stories (copies of one story across feeds) and the label review (the
same text labelled twice, differently).

    minhashes(texts)                        # a signature per text (None for an empty one)
    near_duplicate_groups(texts, 0.8)       # [[0, 1], [3, 4]]: indexes of near-copies
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasketch import MinHash

# datasketch is imported where it is used: it pulls in scipy.integrate (about 0.5 s), which the
# pages, the CLI and the workers that never look for near-duplicates would pay at start-up.

# Permutations per signature (an estimate of Jaccard similarity within about 0.1), and the
# length of a shingle in characters.
NUM_PERM = 64
SHINGLE = 5
_NOT_WORD = re.compile(r"[^0-9a-z$%]+")


def shingles(text: str | None) -> set[bytes]:
    """Character 5-grams of the text lower-cased with punctuation folded to single spaces."""
    normal = " ".join(_NOT_WORD.sub(" ", str(text or "").lower()).split())
    if len(normal) <= SHINGLE:
        return {normal.encode()} if normal else set()
    return {normal[i : i + SHINGLE].encode() for i in range(len(normal) - SHINGLE + 1)}


def minhashes(texts) -> list[MinHash | None]:
    from datasketch import MinHash

    sets = [shingles(t) for t in texts]
    signatures = iter(MinHash.bulk([s for s in sets if s], num_perm=NUM_PERM))
    return [next(signatures) if s else None for s in sets]


def near_duplicate_groups(texts: Sequence[str], threshold: float) -> list[list[int]]:
    """Groups (two or more) of texts whose estimated Jaccard similarity is at least
    ``threshold`` (joined transitively), each in index order, groups by their first text."""
    from datasketch import MinHashLSH

    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, signature in enumerate(minhashes(texts)):
        if signature is None:
            continue
        for j in index.query(signature):
            parent[root(i)] = root(j)
        index.insert(i, signature)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
