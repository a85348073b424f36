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
