"""A numpy dtype from a pickle, checked against what numpy would build from its description.

numpy takes a structured dtype's flags from the pickled state as they are: a dtype with an
object field whose flags claim "no objects" makes numpy (and joblib) read raw bytes as object
pointers, which is memory corruption on the loader's side. Every dtype a stream sets the state
of is therefore rebuilt from its names, fields, offsets and item size, and refused unless the
rebuilt one is equal to it, flags included.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from apps.registry.artifacts.errors import ArtifactRejected, Reason

MAX_DTYPE_DEPTH = 8


def _refuse(message: str) -> ArtifactRejected:
    return ArtifactRejected(Reason.UNSAFE_CONTENT, detail=message)


def _rebuilt(dtype: np.dtype[Any], depth: int) -> np.dtype[Any]:
    if depth > MAX_DTYPE_DEPTH:
        raise _refuse("nests a dtype too deeply")
    if dtype.fields is not None:
        names = dtype.names or ()
        fields = [dtype.fields[name] for name in names]
        if any(len(field) != 2 for field in fields):
            raise _refuse("holds a dtype with field titles")
        spec = {
            "names": list(names),
            "formats": [_rebuilt(field[0], depth + 1) for field in fields],
            "offsets": [field[1] for field in fields],
            "itemsize": dtype.itemsize,
        }
        return np.dtype(spec, align=dtype.isalignedstruct)  # type: ignore[call-overload]  # a dict spec is valid
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return np.dtype((_rebuilt(base, depth + 1), shape))
    return np.dtype(dtype.str)


def checked_dtype(dtype: Any) -> np.dtype[Any]:
    """`dtype` if numpy builds the same dtype, flags included, from its description;
    ArtifactRejected(UNSAFE_CONTENT) otherwise."""
    if not isinstance(dtype, np.dtype):
        raise _refuse("holds something that is not a dtype where a dtype is expected")
    try:
        fresh = _rebuilt(dtype, 0)
    except (TypeError, ValueError, KeyError):
        raise _refuse("holds a dtype numpy does not build from its own description") from None
    if fresh != dtype or fresh.flags != dtype.flags or fresh.itemsize != dtype.itemsize:
        raise _refuse(f"holds a dtype whose pickled flags do not match its fields ({dtype})")
    return dtype


# numpy writes a dtype's state as (3, byte order, subarray, names, fields, item size,
# alignment, flags); any other shape is one numpy reads but never writes.
_STATE_VERSION, _STATE_LENGTH = 3, 8
_BYTE_ORDERS = frozenset({"<", ">", "|"})


def dtype_from_state(description: str, state: Any) -> np.dtype[Any]:
    """The dtype a pickle describes with `numpy.dtype(description)` and then `state`, built by
    numpy's public constructors and never by `dtype.__setstate__` on the file's state: numpy
    accepts states it never writes (another length, sizes or flags that disagree with the
    fields) and some of them crash its C code, which would take down the process that scans
    the upload. So the state must be exactly the one numpy writes for the dtype rebuilt from
    it; ArtifactRejected(UNSAFE_CONTENT) otherwise. `state`'s nested dtypes are already built
    (and checked) this way."""
    try:
        base = np.dtype(description, False, True)
        for candidate in _candidates(base, state):
            if candidate.__reduce__()[2] == state:
                return candidate
    except (TypeError, ValueError, KeyError, IndexError):
        pass
    raise _refuse(f"holds a dtype state numpy does not write ({description})")


def _candidates(base: np.dtype[Any], state: Any) -> list[np.dtype[Any]]:
    if not (
        isinstance(state, tuple)
        and len(state) == _STATE_LENGTH
        and state[0] == _STATE_VERSION
        and state[1] in _BYTE_ORDERS
    ):
        return []
    _version, order, subarray, names, fields, itemsize, _alignment, _flags = state
    if subarray is not None:
        if not (isinstance(subarray, tuple) and len(subarray) == 2):
            return []
        inner, shape = subarray
        if not isinstance(inner, np.dtype) or not isinstance(shape, tuple):
            return []
        return [np.dtype((inner, shape))]
    if names is None and fields is None:
        return [base.newbyteorder(order)] if order != "|" else [base]
    if not (
        isinstance(names, tuple)
        and isinstance(fields, dict)
        and isinstance(itemsize, int)
        and all(isinstance(name, str) for name in names)
        and set(names) == set(fields)
        and all(isinstance(fields[name], tuple) and len(fields[name]) == 2 for name in names)
    ):
        return []
    spec = {
        "names": list(names),
        "formats": [fields[name][0] for name in names],
        "offsets": [fields[name][1] for name in names],
        "itemsize": itemsize,
    }
    built = []
    for align in (False, True):  # a packed layout cannot be aligned: numpy refuses, fine
        try:
            built.append(np.dtype(spec, align=align))  # type: ignore[call-overload]  # a dict spec is valid
        except (TypeError, ValueError):
            continue
    return built
