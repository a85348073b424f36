"""The one way a joblib (pickle) artifact is ever loaded: a restricted unpickler whose
`find_class` returns only the globals recorded as allowed for that version, so a ciphertext
swapped in storage, a row written straight to the table or a gap in the static walk
(`pickle_scan`) still imports nothing outside the list.

Besides the allow-list, the unpickler holds the stream to what joblib's own pickler writes,
the same rules the walk checks:
- a call (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `OBJ`, `INST`) targets a global it imported;
- `BUILD` sets the state of an object this stream made by such a call, once, never of an
  imported class or function (which would rewrite it for the whole process);
- every dtype that gets a pickled state must get one numpy itself writes (checked before numpy
  reads it: `dtypes.dtype_from_state`) and then equal the dtype numpy builds from its fields
  (`dtypes.checked_dtype`), so raw bytes are never read as object pointers;
- persistent ids, extension codes and out-of-band buffers are refused;
- `numpy.dtype` always makes a copy (never changes numpy's shared dtypes),
  `_codecs.encode` only turns a Python 2 byte string back into bytes (latin-1), and no call
  may allocate an uninitialised array (`numpy.ndarray` is never called; `_reconstruct` and
  `copyreg._reconstructor` only as numpy's and Python's picklers use them), so a model
  cannot carry out what its process's memory held.

It is built on the standard library's pure-Python unpickler (as joblib's is) and reads
joblib's array data itself: the array bytes after a NumpyArrayWrapper, and an object array as
a nested pickle read by another restricted unpickler.
"""

from __future__ import annotations

import codecs
import copyreg
import importlib
import io
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from apps.registry.artifacts.buffers import BufferFile
from apps.registry.artifacts.dtypes import checked_dtype, dtype_from_state
from apps.registry.artifacts.errors import ArtifactRejected, Reason, UntrustedGlobals
from apps.registry.artifacts.joblib_container import WRAPPER, pickle_stream
from apps.registry.artifacts.names import global_name
from apps.registry.artifacts.pickle_scan import array_layout


def _refuse(message: str) -> ArtifactRejected:
    return ArtifactRejected(Reason.UNSAFE_CONTENT, detail=message)


class _ArrayWrapper:
    """Stands in for joblib's NumpyArrayWrapper: a bag for its state, with no behaviour."""


def _dtype(description: Any, align: Any = False, copy: Any = False) -> np.dtype[Any]:
    """`numpy.dtype` as a pickle may call it: from a string description, always a copy."""
    if not isinstance(description, str) or not isinstance(align, bool):
        raise _refuse("makes a dtype from something other than a string description")
    return np.dtype(description, align, True)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's `_reconstruct` as its own pickles call it: an empty array that BUILD then fills.
    Any other shape would hand out uninitialised memory (whatever the process held there)."""
    if subtype is not np.ndarray or shape != (0,):
        raise _refuse("makes an array other than the way numpy's pickles do")
    return np.ndarray.__new__(np.ndarray, (0,), dtype)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg's `_reconstructor` (protocols 0 and 1) for the bases Python's own pickler
    uses for the objects models hold; another base (numpy.ndarray, say) could allocate
    uninitialised memory."""
    if base not in (object, dict, list) or not isinstance(cls, type):
        raise _refuse("rebuilds an object on a base other than object, dict or list")
    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]  # not in typeshed


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """`_codecs.encode` as Python 2 byte strings need it (protocols 0 to 2), and no more."""
    if not isinstance(text, str) or encoding not in {"latin1", "latin-1"}:
        raise _refuse("calls _codecs.encode other than for a latin-1 byte string")
    return codecs.encode(text, "latin1")


# What find_class returns for these names instead of the real object.
SUBSTITUTES: dict[str, Any] = {
    "numpy.dtype": _dtype,
    "_codecs.encode": _latin1,
    "numpy._core.multiarray._reconstruct": _reconstruct,
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "copyreg._reconstructor": _reconstructor,
    WRAPPER: _ArrayWrapper,
}
# Allowed as values (an array wrapper's class), never called: calling them allocates
# uninitialised memory.
NOT_CALLABLE = (np.ndarray,)


def _import(name: str) -> Any:
    module, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        # Allowed, but not in this installation (a library version apart from the uploader's).
        raise ArtifactRejected(
            Reason.UNREADABLE, detail=f"needs {name}, which this installation lacks"
        ) from None


class _Unpickler(pickle._Unpickler):  # the pure-Python one
    # typeshed types the table's handlers as taking the C Unpickler; they take this one.
    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = pickle._Unpickler.dispatch.copy()

    if TYPE_CHECKING:  # the pure-Python unpickler's internals, which typeshed leaves out
        proto: int
        stack: list[Any]
        append: Callable[[Any], None]
        _unframer: Any

    def __init__(self, file: io.BytesIO, *, allowed: frozenset[str], nested: bool) -> None:
        super().__init__(file, fix_imports=True, encoding="ASCII", errors="strict")
        self._file = file
        self._allowed = allowed
        self._nested = nested
        self._imported: set[int] = set()  # ids of what find_class returned
        self._made: dict[int, Any] = {}  # id -> object made by a call (kept alive: ids hold)
        self._built: set[int] = set()

    # -- imports -------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        full = global_name(module, name, proto=self.proto)
        if full not in self._allowed:
            raise UntrustedGlobals({full})
        if full == WRAPPER and self._nested:
            raise _refuse("holds a NumpyArrayWrapper inside a nested pickle")
        found = SUBSTITUTES[full] if full in SUBSTITUTES else _import(full)
        self._imported.add(id(found))
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _refuse("uses a persistent id (an external object reference)")

    def _ext(self) -> None:
        raise _refuse("uses an extension code (an import by number)")

    def _next_buffer(self) -> None:
        raise _refuse("expects an out-of-band buffer")

    # -- calls -----------------------------------------------------------------------------

    def _callee(self, target: Any, opcode: str) -> Any:
        if id(target) not in self._imported:
            raise _refuse(f"{opcode} calls something that is not a named global")
        if any(target is forbidden for forbidden in NOT_CALLABLE):
            raise _refuse(f"{opcode} calls a global that only describes values")
        return target

    def _made_now(self, obj: Any) -> Any:
        # What a call returned may be an object it was given (or a global): only what is
        # new to this stream may have its state set.
        if id(obj) not in self._imported and not isinstance(obj, type):
            self._made.setdefault(id(obj), obj)
        return obj

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = self._callee(stack[-1], "REDUCE")
        if func is _ArrayWrapper or not isinstance(args, tuple):
            raise _refuse("calls a global in a way joblib's files never do (REDUCE)")
        stack[-1] = self._made_now(func(*args))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self._callee(self.stack.pop(), "NEWOBJ")
        if not isinstance(cls, type) or not isinstance(args, tuple):
            raise _refuse("makes an object of something that is not a class (NEWOBJ)")
        if cls is _ArrayWrapper and args:
            raise _refuse("makes a NumpyArrayWrapper other than the way joblib does")
        self.append(self._made_now(cls.__new__(cls, *args)))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self._callee(self.stack.pop(), "NEWOBJ_EX")
        if (
            not isinstance(cls, type)
            or cls is _ArrayWrapper
            or not isinstance(args, tuple)
            or not isinstance(kwargs, dict)
        ):
            raise _refuse("makes an object in a way joblib's files never do (NEWOBJ_EX)")
        self.append(self._made_now(cls.__new__(cls, *args, **kwargs)))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        self._callee(klass, "OBJ")
        if klass is _ArrayWrapper:
            raise _refuse("makes a NumpyArrayWrapper other than the way joblib does")
        super()._instantiate(klass, args)  # type: ignore[misc]  # not in typeshed
        self._made_now(self.stack[-1])

    # -- state -----------------------------------------------------------------------------

    def load_build(self) -> None:
        inst = self.stack[-2] if len(self.stack) >= 2 else None
        key = id(inst)
        if key not in self._made or self._made[key] is not inst or key in self._imported:
            raise _refuse("sets the state of something it did not make (BUILD)")
        if key in self._built:
            raise _refuse("sets the state of one object twice (BUILD)")
        self._built.add(key)
        if isinstance(inst, np.dtype):
            # Before numpy reads it: a state numpy never writes can crash its C code.
            dtype_from_state(inst.__reduce__()[1][0], self.stack[-1])
        super().load_build()  # type: ignore[misc]  # not in typeshed
        if isinstance(inst, np.dtype):
            checked_dtype(inst)
        elif isinstance(inst, _ArrayWrapper):
            self.stack[-1] = self._read_array(inst)

    def _read_array(self, wrapper: _ArrayWrapper) -> np.ndarray[Any, Any]:
        """The array joblib wrote after `wrapper`: raw bytes, or a nested pickle."""
        state = dict(vars(wrapper))
        if state.get("subclass") is not np.ndarray:
            raise _refuse("describes an array of a subclass other than numpy.ndarray")
        layout = array_layout(state)
        checked_dtype(layout.dtype)
        frame = self._unframer.current_frame
        if frame is not None and frame.tell() != len(frame.getbuffer()):
            raise _refuse("puts array data inside a pickle frame")
        self._unframer.current_frame = None
        if layout.nested_pickle:
            inner = _Unpickler(self._file, allowed=self._allowed, nested=True)
            array = inner.load()
            if (
                not isinstance(array, np.ndarray)
                or array.dtype != layout.dtype
                or array.shape != layout.shape
            ):
                raise _refuse("holds an object array that does not match its description")
            return array
        if layout.aligned:
            padding = self._file.read(1)
            if len(padding) != 1 or len(self._file.read(padding[0])) != padding[0]:
                raise ArtifactRejected(Reason.UNREADABLE, detail="is truncated inside an array")
        count = layout.nbytes // layout.dtype.itemsize if layout.dtype.itemsize else 0
        array = np.empty(count, dtype=layout.dtype)
        if layout.nbytes and self._file.readinto(array.view(np.uint8)) != layout.nbytes:  # type: ignore[arg-type]  # an ndarray is a buffer
            raise ArtifactRejected(Reason.UNREADABLE, detail="is truncated inside an array")
        if layout.order == "F":
            array = array.reshape(layout.shape[::-1]).transpose()
        else:
            array = array.reshape(layout.shape)
        if not array.dtype.isnative:
            array = array.byteswap().view(array.dtype.newbyteorder("="))
        return array

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    for _code in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_code[0]] = _ext
    dispatch[pickle.NEXT_BUFFER[0]] = _next_buffer


def load_joblib(
    data: bytes | bytearray | memoryview, *, allowed: frozenset[str], limit: int
) -> Any:
    """The object in the joblib file `data`, importing only the globals in `allowed`
    (`module.name`). ArtifactRejected for anything else: UntrustedGlobals naming the first
    global outside the list, UNSAFE_CONTENT or UNREADABLE for a stream the walk would refuse;
    nothing outside the list is imported or called on the way."""
    view = pickle_stream(data, limit=limit)
    stream: Any = BufferFile(view)
    try:
        loaded = _Unpickler(stream, allowed=allowed, nested=False).load()
        if stream.tell() != len(view):
            raise ArtifactRejected(Reason.UNREADABLE, detail="has data after the end of its pickle")
    except ArtifactRejected:
        raise
    except RecursionError:
        raise _refuse("nests objects too deeply") from None
    except MemoryError:
        raise ArtifactRejected(Reason.UNREADABLE, detail="needs more memory than allowed") from None
    except Exception as exc:  # an untrusted stream may fail anywhere: refuse, name the kind
        raise ArtifactRejected(
            Reason.UNREADABLE, detail=f"is not a loadable joblib file ({type(exc).__name__})"
        ) from None
    finally:
        # No view of `data` may outlive the call: the caller closes its map. Arrays were
        # copied out of it.
        stream.close()
        view.release()
    return loaded
