"""Artifact formats: `joblib` (pickle: loading runs whatever code the file names) and `skops`
(a zip of JSON and .npy files: loading builds only types on an allow-list).

For skops, the allow-list is skops's own defaults (builtins, numpy and scipy basics, every
scikit-learn estimator) plus BULWARK_SKOPS_TRUSTED_TYPES (default below). An upload is
inspected without being loaded (`skops.io.get_untrusted_types`) and refused if it names any
other type; the verified load passes the same list to skops, which refuses on its own.

skops checks types, not content. `sklearn.tree._tree.Tree` (every decision tree, random
forest and gradient-boosting model) keeps raw node and feature indices that scikit-learn's
predict follows without bounds checks, so a crafted file holding only trusted types could still
crash or read out of bounds at predict. Every loaded Tree is therefore checked here before the
model is handed out (`_check_trees`).
"""

from __future__ import annotations

import io
import mmap
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import skops.io
from django.conf import settings
from skops.io.exceptions import UntrustedTypesFoundException

from apps.core.errors import InvalidInput
from apps.registry.envelope import ArtifactRejected, Reason

# Types skops reports as untrusted for the models we expect (checked with skops 0.16 and
# scikit-learn 1.9): linear models, pipelines, scalers, SVMs, PCA, k-means and naive Bayes
# report none (skops trusts every scikit-learn estimator); trees, random forests, extra trees
# and gradient boosting report the Tree; SimpleImputer reports numpy.dtype. Deliberately absent:
# HistGradientBoosting's TreePredictor (unchecked indices; it also needs functools.partial, a
# generic callable) and the k-d/ball trees of nearest neighbours (unchecked indices).
DEFAULT_SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
)

_LEAF = -1


def skops_trusted_types() -> list[str]:
    """BULWARK_SKOPS_TRUSTED_TYPES, or the default: fully qualified type names."""
    trusted = getattr(settings, "BULWARK_SKOPS_TRUSTED_TYPES", DEFAULT_SKOPS_TRUSTED_TYPES)
    if isinstance(trusted, str) or not all(isinstance(name, str) for name in trusted):
        # A bare string would be read as its characters; anything else is a configuration bug.
        raise TypeError("BULWARK_SKOPS_TRUSTED_TYPES must be a list of type names")
    return list(trusted)


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"artifact: {message}", details=[{"path": "artifact", "message": message}])


def skops_check_upload(data: bytes, *, limit: int) -> None:
    """Refuse (InvalidInput, path `artifact`) a skops upload that is not a readable skops file,
    unpacks to more than `limit` bytes, or names a type outside the trusted list. Nothing is
    constructed or imported: skops builds its node tree from the JSON schema and lists the
    types it would need."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # A compressed member could unpack to far more than was uploaded (a zip bomb):
            # bound what skops would read by what the members declare (zipfile reads no more).
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _invalid("is not a skops file (not a zip archive)") from None
    if unpacked > limit:
        raise _invalid(f"unpacks to {unpacked} bytes, more than the limit of {limit}")
    try:
        found = skops.io.get_untrusted_types(data=data)
    except Exception:  # an untrusted file may fail anywhere in skops's parser: refuse it
        raise _invalid("is not a readable skops file") from None
    untrusted = sorted(set(found) - set(skops_trusted_types()))
    if untrusted:
        raise _invalid(
            "holds types that are not trusted (BULWARK_SKOPS_TRUSTED_TYPES): "
            + ", ".join(untrusted)
        )


class _MapFile(io.RawIOBase):
    """The decrypted map as a read-only seekable file, without copying it: ZipFile needs
    `seekable()`, which a map only has from Python 3.13. Each read copies just what it reads."""

    def __init__(self, buffer: mmap.mmap) -> None:
        super().__init__()
        self._buffer = buffer

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._buffer.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._buffer.seek(offset, whence)
        return self._buffer.tell()

    def read(self, size: int | None = -1) -> bytes:
        # One copy per read (the RawIOBase default would make two: readinto, then bytes()).
        return self._buffer.read(-1 if size is None else size)

    def readinto(self, target: Any) -> int:
        data = self._buffer.read(len(target))
        memoryview(target).cast("B")[: len(data)] = data
        return len(data)


def _objects(root: object) -> Iterator[object]:
    """Every object reachable from `root` through attributes, containers and object arrays,
    each once."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                stack.extend(item.ravel())
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            stack.extend(vars(item).values())


def _tree_is_sound(tree: Any) -> bool:
    """Every internal node's children come after it and exist (so predict ends and stays in
    the array), leaves have no child, and every split feature is one of the tree's features."""
    count = tree.node_count
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if count < 1 or not len(left) == len(right) == len(feature) == count:
        return False
    leaf = left == _LEAF
    if not np.array_equal(leaf, right == _LEAF):
        return False
    internal = ~leaf
    index = np.arange(count)[internal]
    for children in (left[internal], right[internal]):
        if np.any(children <= index) or np.any(children >= count):
            return False
    split = feature[internal]
    return not (np.any(split < 0) or np.any(split >= tree.n_features))


def _check_trees(model: object) -> None:
    """ArtifactRejected(UNSAFE_CONTENT) unless every Tree in `model` is sound, each tree model
    expects as many features as its Tree indexes, and no member of an ensemble (forests,
    gradient boosting, bagging) expects more features than the ensemble passes it."""
    from sklearn.tree._tree import Tree

    for item in _objects(model):
        if isinstance(item, Tree) and not _tree_is_sound(item):
            raise ArtifactRejected(Reason.UNSAFE_CONTENT)
        tree = getattr(item, "tree_", None)
        if isinstance(tree, Tree) and getattr(item, "n_features_in_", None) != tree.n_features:
            raise ArtifactRejected(Reason.UNSAFE_CONTENT)
        members = getattr(item, "estimators_", None)
        width = getattr(item, "n_features_in_", None)
        if members is not None and isinstance(width, int):
            for member in np.asarray(members, dtype=object).ravel():
                if getattr(member, "n_features_in_", 0) > width:
                    raise ArtifactRejected(Reason.UNSAFE_CONTENT)


def skops_loader(trusted: Sequence[str]) -> Callable[[mmap.mmap], object]:
    """A loader for `envelope.load_artifact`: skops.io.load from the verified map with only
    `trusted` added to skops's defaults, then the tree check. Raises ArtifactRejected
    (UNTRUSTED_TYPES, UNREADABLE or UNSAFE_CONTENT); nothing it refused is returned."""

    def load(plaintext: mmap.mmap) -> object:
        # The map read as a file: `skops.io.loads` would copy the whole artifact first.
        source: Any = _MapFile(plaintext)
        try:
            model = skops.io.load(source, trusted=list(trusted))
        except UntrustedTypesFoundException as exc:
            raise ArtifactRejected(Reason.UNTRUSTED_TYPES, detail=str(exc)) from None
        except Exception as exc:  # fail closed on anything skops cannot read
            raise ArtifactRejected(Reason.UNREADABLE, detail=type(exc).__name__) from None
        try:
            _check_trees(model)
        except ArtifactRejected:
            raise
        except Exception as exc:  # crafted attributes (a width that is not a number, ...)
            raise ArtifactRejected(Reason.UNSAFE_CONTENT, detail=type(exc).__name__) from None
        return model

    return load
