"""From verified plaintext to a model that predicts, the same way in a web or worker process
(in-process isolation) and in a model runner: load with the restricted unpickler or skops,
check every decision tree, describe what the caller needs, and predict rows.

The plaintext reaching here has already been authenticated and digest-checked
(apps.registry.envelope); what it may import was fixed at upload.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.registry.artifacts.buffers import BufferFile
from apps.registry.artifacts.errors import ArtifactRejected, Reason
from apps.registry.artifacts.pickle_load import load_joblib

JOBLIB = "joblib"
SKOPS = "skops"
_LEAF = -1


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


def check_trees(model: object) -> None:
    """ArtifactRejected(UNSAFE_CONTENT) unless every scikit-learn Tree in `model` is sound,
    each tree model expects as many features as its Tree indexes, and no member of an
    ensemble (forests, gradient boosting, bagging) expects more features than the ensemble
    passes it. scikit-learn's predict follows a Tree's node and feature indices without bounds
    checks: a file of trusted types could still read out of bounds without this."""
    from sklearn.tree._tree import Tree

    try:
        for item in _objects(model):
            if isinstance(item, Tree) and not _tree_is_sound(item):
                raise ArtifactRejected(Reason.UNSAFE_CONTENT, detail="an unsound decision tree")
            tree = getattr(item, "tree_", None)
            if isinstance(tree, Tree) and getattr(item, "n_features_in_", None) != tree.n_features:
                raise ArtifactRejected(Reason.UNSAFE_CONTENT, detail="a tree of another width")
            members = getattr(item, "estimators_", None)
            width = getattr(item, "n_features_in_", None)
            if members is not None and isinstance(width, int):
                for member in np.asarray(members, dtype=object).ravel():
                    if getattr(member, "n_features_in_", 0) > width:
                        raise ArtifactRejected(
                            Reason.UNSAFE_CONTENT, detail="an ensemble member wider than it"
                        )
    except ArtifactRejected:
        raise
    except Exception as exc:  # crafted attributes (a width that is not a number, ...)
        raise ArtifactRejected(Reason.UNSAFE_CONTENT, detail=type(exc).__name__) from None


def _load_skops(plaintext: Any, trusted: Sequence[str]) -> object:
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    source: Any = BufferFile(plaintext)  # `skops.io.loads` would copy the whole artifact
    try:
        return skops.io.load(source, trusted=list(trusted))
    except UntrustedTypesFoundException as exc:
        raise ArtifactRejected(Reason.UNTRUSTED_TYPES, detail=str(exc)) from None
    except Exception as exc:  # fail closed on anything skops cannot read
        raise ArtifactRejected(Reason.UNREADABLE, detail=type(exc).__name__) from None
    finally:
        source.close()


def load_model(
    plaintext: Any,
    *,
    format: str,
    allowed_globals: Iterable[str],
    skops_trusted: Sequence[str],
    limit: int,
) -> object:
    """The model in `plaintext` (any buffer), loaded by its format's safe loader and with its
    trees checked. Raises ArtifactRejected (nothing refused is returned)."""
    if format == JOBLIB:
        model = load_joblib(plaintext, allowed=frozenset(allowed_globals), limit=limit)
    elif format == SKOPS:
        model = _load_skops(plaintext, skops_trusted)
    else:
        raise ArtifactRejected(Reason.UNREADABLE, detail=f"unknown format {format!r}")
    check_trees(model)
    if not callable(getattr(model, "predict", None)):
        raise ArtifactRejected(Reason.UNREADABLE, detail="holds no object with a predict method")
    return model


@dataclass(frozen=True)
class ModelFacts:
    """What the serving side needs to know about a loaded model, without holding it."""

    # Set when the estimator was fitted with named features: rows reach it in that order
    # (docs/api.md: the names decide).
    feature_names: tuple[str, ...] | None
    # A classifier's outputs are labels: differential privacy leaves them as they are.
    classifier: bool
    # Whether the rows must reach it as a DataFrame with those names: a composite estimator
    # (a pipeline, a column transformer) may pick columns by name. A single estimator uses
    # the names only to check them, so it gets a plain array (see `describe`).
    named_input: bool = False

    @property
    def input_names(self) -> tuple[str, ...] | None:
        """The column names its input is built with: None for a plain array."""
        return self.feature_names if self.named_input else None


# Attributes of estimators that hand their input on to others, or select its columns.
_COMPOSITE = ("steps", "transformers", "transformer_list", "estimator", "estimators")


def _drop_feature_names(model: object) -> bool:
    """For a single scikit-learn estimator fitted with named features: forget the names (the
    values reach it in their order, checked once here rather than per call), so that a plain
    array is taken without a DataFrame, a warning or a comparison of names per call. False
    when the names may be used for more than a check, and so are kept."""
    module = type(model).__module__
    if not module.startswith("sklearn.") or any(hasattr(model, a) for a in _COMPOSITE):
        return False
    try:
        del model.feature_names_in_  # type: ignore[attr-defined]  # set by fit
    except AttributeError:  # a property, or not the estimator's own
        return False
    return True


def describe(model: object) -> ModelFacts:
    """What serving needs to know of a freshly loaded model; a single estimator fitted with
    named features is readied for plain arrays on the way (`_drop_feature_names`)."""
    names = getattr(model, "feature_names_in_", None)
    named_input = names is not None and not _drop_feature_names(model)
    try:
        from sklearn.base import is_classifier

        classifier = bool(is_classifier(model))
    except AttributeError:  # not a scikit-learn estimator: a fitted classifier has classes_
        classifier = hasattr(model, "classes_")
    return ModelFacts(
        feature_names=None if names is None else tuple(str(name) for name in names),
        classifier=classifier,
        named_input=named_input,
    )


class PredictionRefused(Exception):
    """The model refused these values (ValueError or TypeError inside predict); `kind` is the
    exception's class name, never its message (which may name paths or internals)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


def feature_input(values: list[list[Any]], feature_names: Sequence[str] | None) -> Any:
    """What the model's predict takes: a DataFrame with its feature names when it was fitted
    with them, else the rows as one numpy array (numpy infers the dtype, as in-process)."""
    if feature_names is not None:
        import pandas as pd  # only models fitted on DataFrames need it

        return pd.DataFrame(values, columns=list(feature_names))
    return np.array(values)


def predict_outputs(model: Any, matrix: Any) -> Any:
    """`model.predict(matrix)`. PredictionRefused for ValueError and TypeError (the model
    refused these values); anything else propagates."""
    try:
        return model.predict(matrix)
    except (ValueError, TypeError) as exc:
        raise PredictionRefused(type(exc).__name__) from None


def as_values(outputs: Any) -> list[Any]:
    return outputs.tolist() if hasattr(outputs, "tolist") else list(outputs)


def predict_values(
    model: Any, values: list[list[Any]], feature_names: Sequence[str] | None
) -> list[Any]:
    """`model.predict` on rows given as values in column order (the model's feature names'
    order when it has them), as JSON-ready values. PredictionRefused for ValueError and
    TypeError; anything else propagates."""
    return as_values(predict_outputs(model, feature_input(values, feature_names)))


# Numeric arrays cross the runner's socket as raw bytes (no float formatting, which costs
# about a microsecond a value both ways): only these kinds, at most 8 bytes an item, in this
# machine's byte order, and only from RAW_FROM values on (below, JSON is cheaper than
# describing the array).
NUMERIC_KINDS = frozenset("biuf")
RAW_FROM = 64
_DTYPES: dict[str, np.dtype[Any]] = {}


def numeric_array_header(array: Any) -> dict[str, Any] | None:
    """The header that describes `array` as raw bytes, or None if it goes as JSON."""
    if (
        isinstance(array, np.ndarray)
        and array.size >= RAW_FROM
        and array.dtype.kind in NUMERIC_KINDS
        and array.dtype.itemsize <= 8
        and array.dtype.isnative
        and 1 <= array.ndim <= 2
    ):
        return {"dtype": array.dtype.str, "shape": list(array.shape)}
    return None


def numeric_array(header: Any, payload: Any) -> np.ndarray[Any, Any]:
    """The array a numeric header and payload describe; ValueError for anything else (a
    peer's header is checked before numpy reads a byte)."""
    name = str(header["dtype"])[:8]
    dtype = _DTYPES.get(name)
    if dtype is None:
        dtype = _DTYPES.setdefault(name, np.dtype(name)) if len(_DTYPES) < 64 else np.dtype(name)
    shape = header["shape"]
    if (
        dtype.kind not in NUMERIC_KINDS
        or dtype.itemsize > 8
        or not dtype.isnative
        or dtype.fields is not None
        or not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        or math.prod(shape) * dtype.itemsize != len(payload)
    ):
        raise ValueError("not a numeric array of the stated shape")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)
