"""What a joblib artifact would import, found by walking its pickle opcodes without running
any of them.

The walk is a small symbolic pickle machine over `pickletools.genops` (the standard library's
own opcode decoder): strings, numbers, tuples and dicts are followed as values, so a
`STACK_GLOBAL` whose names come from the stack or the memo is resolved; every global
(`GLOBAL`, `STACK_GLOBAL`, `INST`) is recorded; a call (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`,
`OBJ`, `INST`) must target a named global and a `BUILD` an object the stream itself made.
Anything the walk cannot prove is refused rather than guessed: a name that is not a constant
string, an extension code, a persistent id, an out-of-band buffer, a memo slot that was
never written, data after the end.

joblib writes each numpy array's bytes into the file right after the `NumpyArrayWrapper` that
describes it, and an array of Python objects as a nested pickle there: the walk reads the
wrapper's shape and dtype to step over raw data (numpy itself interprets the dtype
description, so the walk and the loader agree on its size), and walks a nested pickle as one
more stream.

Why not a library: fickling and modelscan read plain pickles only (joblib's raw array data
stops both), and modelscan judges by a deny-list where an allow-list is wanted; skops lists
types for its own format only. The restricted unpickler (`pickle_load`) enforces the same
list at every load, so a gap here can only refuse a load, never run code.
"""

from __future__ import annotations

import io
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.registry.artifacts.buffers import BufferFile
from apps.registry.artifacts.dtypes import checked_dtype
from apps.registry.artifacts.errors import ArtifactRejected, Reason
from apps.registry.artifacts.joblib_container import (
    ARRAY_SUBCLASS,
    RECONSTRUCTOR,
    WRAPPER,
    WRAPPER_KEYS,
    WRAPPER_REQUIRED,
    pickle_stream,
)
from apps.registry.artifacts.names import global_name

# Bounds on what the walk keeps, so a crafted stream cannot make the walk itself the attack.
MAX_VALUES = 5_000_000  # values kept on the symbolic stack, memo and containers
MAX_DEPTH = 2  # joblib's own nesting: an object array's pickle inside the file


def _refuse(message: str) -> ArtifactRejected:
    return ArtifactRejected(Reason.UNSAFE_CONTENT, detail=message)


def _unreadable(message: str) -> ArtifactRejected:
    return ArtifactRejected(Reason.UNREADABLE, detail=message)


class _Mark:
    __repr__ = lambda self: "MARK"  # noqa: E731


_MARK = _Mark()


@dataclass(eq=False)
class Global:
    """A global the stream imports, by its `module.name`."""

    name: str


@dataclass(eq=False)
class Made:
    """An object the stream makes by calling a global; `state` is what BUILD gave it."""

    callee: Global
    args: tuple[Any, ...]
    built: bool = False
    state: Any = None


class _Opaque:
    """A container whose content the walk does not need (lists and sets: no opcode reads
    an element back), kept as a count only."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


@dataclass
class Walk:
    globals: set[str] = field(default_factory=set)
    values: int = 0

    def count(self, n: int = 1) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise _refuse(f"holds more than {MAX_VALUES} values")


def _pop_mark(stack: list[Any]) -> list[Any]:
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is _MARK:
            items = stack[index + 1 :]
            del stack[index:]
            return items
    raise _unreadable("is not a valid pickle (MARK missing)")


def _pop(stack: list[Any]) -> Any:
    if not stack or stack[-1] is _MARK:
        raise _unreadable("is not a valid pickle (stack underflow)")
    return stack.pop()


def _constant_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _refuse(f"builds the {what} of an imported name at load time")
    return value


def _callee(value: Any, opcode: str) -> Global:
    if not isinstance(value, Global):
        raise _refuse(f"{opcode} calls something that is not a named global")
    return value


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise _unreadable("is not a valid pickle (unhashable key)") from None
    return value


def concrete(value: Any, *, depth: int = 0) -> Any:
    """A symbolic value as a plain Python value, for the few places the walk must know one
    (an array's shape and dtype); dtypes are made by numpy from their constant description."""
    if depth > 16:
        raise _refuse("nests an array description too deeply")
    if isinstance(value, Made):
        if value.callee.name not in {"numpy.dtype"} or len(value.args) not in {1, 2, 3}:
            raise _refuse(f"describes an array with {value.callee.name}")
        description = concrete(value.args[0], depth=depth + 1)
        if not isinstance(description, str):
            raise _refuse("describes an array's dtype with something other than a string")
        try:
            dtype = np.dtype(description, False, True)  # a copy: never numpy's singletons
            if value.built:
                dtype.__setstate__(concrete(value.state, depth=depth + 1))  # type: ignore[attr-defined]  # not in numpy's stubs
        except (TypeError, ValueError) as exc:
            raise _refuse(f"holds a dtype numpy does not accept ({type(exc).__name__})") from None
        checked_dtype(dtype)
        return dtype
    if isinstance(value, tuple):
        return tuple(concrete(item, depth=depth + 1) for item in value)
    if isinstance(value, dict):
        return {
            concrete(key, depth=depth + 1): concrete(item, depth=depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, Global | _Opaque):
        raise _refuse("describes an array with an object where a value is expected")
    return value


@dataclass(frozen=True)
class ArrayLayout:
    """What follows a NumpyArrayWrapper in the file."""

    nested_pickle: bool  # an object array: a nested pickle, else raw bytes
    aligned: bool  # a padding-length byte and that much padding come first
    nbytes: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str


def array_layout(state: Any) -> ArrayLayout:
    """A NumpyArrayWrapper's state (already concrete) checked and read."""
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise _refuse("describes an array with a state that is not a dict of names")
    keys = set(state)
    if not WRAPPER_REQUIRED <= keys <= WRAPPER_KEYS:
        raise _refuse("describes an array with unexpected fields")
    if state["subclass"] is not np.ndarray:
        raise _refuse("describes an array of a subclass other than numpy.ndarray")
    shape, order, dtype = state["shape"], state["order"], state["dtype"]
    if not isinstance(shape, tuple) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise _refuse("describes an array with a shape that is not non-negative integers")
    if order not in {"C", "F"} or not isinstance(dtype, np.dtype):
        raise _refuse("describes an array with an unknown order or dtype")
    alignment = state.get("numpy_array_alignment_bytes")
    if alignment not in {None, 16}:
        raise _refuse("describes an array with an unexpected alignment")
    count = 1
    for size in shape:
        count *= size
    return ArrayLayout(
        nested_pickle=bool(dtype.hasobject),
        aligned=alignment is not None,
        nbytes=count * dtype.itemsize,
        dtype=dtype,
        shape=shape,
        order=order,
    )


def _skip_raw(stream: io.BytesIO, layout: ArrayLayout, end: int) -> None:
    if layout.aligned:
        padding = stream.read(1)
        if len(padding) != 1:
            raise _unreadable("is truncated inside an array")
        stream.seek(padding[0], io.SEEK_CUR)
    if stream.tell() + layout.nbytes > end:
        raise _unreadable("is truncated inside an array")
    stream.seek(layout.nbytes, io.SEEK_CUR)


def _ops(stream: io.BytesIO) -> Iterator[tuple[pickletools.OpcodeInfo, Any]]:
    try:
        for opcode, arg, _position in pickletools.genops(stream):
            yield opcode, arg
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError) as exc:
        raise _unreadable(f"is not a valid pickle ({exc})") from None


def _walk(stream: io.BytesIO, end: int, walk: Walk, *, depth: int) -> None:
    """One pickle stream from the stream's position to its STOP."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    proto = 0
    for opcode, arg in _ops(stream):
        name = opcode.name
        if name in {"PROTO"}:
            proto = arg
        elif name == "FRAME" or name == "READONLY_BUFFER":
            pass
        elif name == "STOP":
            _pop(stack)
            if stack:
                raise _unreadable("is not a valid pickle (values left at STOP)")
            return
        elif name in {"PERSID", "BINPERSID"}:
            raise _refuse("uses a persistent id (an external object reference)")
        elif name in {"EXT1", "EXT2", "EXT4"}:
            raise _refuse("uses an extension code (an import by number)")
        elif name == "NEXT_BUFFER":
            raise _refuse("expects an out-of-band buffer")
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            _pop(stack)
        elif name == "POP_MARK":
            _pop_mark(stack)
        elif name == "DUP":
            stack.append(stack[-1] if stack else _pop(stack))
        elif name in {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}:
            if not stack or stack[-1] is _MARK:
                raise _unreadable("is not a valid pickle (memo of nothing)")
            index = len(memo) if name == "MEMOIZE" else int(arg)
            if index < 0:
                raise _unreadable("is not a valid pickle (negative memo index)")
            memo[index] = stack[-1]
            walk.count()
        elif name in {"GET", "BINGET", "LONG_BINGET"}:
            index = int(arg)
            if index not in memo:
                raise _unreadable("is not a valid pickle (a memo slot never written)")
            stack.append(memo[index])
        elif name == "GLOBAL" or name == "INST":
            module, _, attribute = arg.partition(" ")
            found = Global(global_name(module, attribute, proto=proto))
            walk.globals.add(found.name)
            if name == "INST":
                stack.append(Made(found, tuple(_pop_mark(stack))))
            else:
                stack.append(found)
        elif name == "STACK_GLOBAL":
            attribute = _constant_text(_pop(stack), "attribute")
            module = _constant_text(_pop(stack), "module")
            found = Global(global_name(module, attribute, proto=proto))
            walk.globals.add(found.name)
            stack.append(found)
        elif name == "REDUCE":
            args = _pop(stack)
            callee = _callee(_pop(stack), "REDUCE")
            if not isinstance(args, tuple):
                raise _unreadable("is not a valid pickle (REDUCE without an argument tuple)")
            stack.append(Made(callee, args))
        elif name == "NEWOBJ":
            args = _pop(stack)
            callee = _callee(_pop(stack), "NEWOBJ")
            if not isinstance(args, tuple):
                raise _unreadable("is not a valid pickle (NEWOBJ without an argument tuple)")
            stack.append(Made(callee, args))
        elif name == "NEWOBJ_EX":
            kwargs, args = _pop(stack), _pop(stack)
            callee = _callee(_pop(stack), "NEWOBJ_EX")
            if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise _unreadable("is not a valid pickle (NEWOBJ_EX arguments)")
            stack.append(Made(callee, args))
        elif name == "OBJ":
            items = _pop_mark(stack)
            if not items:
                raise _unreadable("is not a valid pickle (OBJ without a class)")
            stack.append(Made(_callee(items[0], "OBJ"), tuple(items[1:])))
        elif name == "BUILD":
            state = _pop(stack)
            target = stack[-1] if stack else _pop(stack)
            if not isinstance(target, Made):
                raise _refuse("sets the state of something it did not make (BUILD)")
            if target.built:
                raise _refuse("sets the state of one object twice (BUILD)")
            target.built, target.state = True, state
            if _is_wrapper(target):
                stack.pop()
                stack.append(_array(stream, end, target, walk, depth=depth))
        elif name in {"EMPTY_LIST", "EMPTY_SET"}:
            stack.append(_Opaque(name))
        elif name in {"LIST", "FROZENSET"}:
            walk.count(len(_pop_mark(stack)))
            stack.append(_Opaque(name))
        elif name == "APPEND":
            _pop(stack)
            _container(stack, _Opaque)
            walk.count()
        elif name in {"APPENDS", "ADDITEMS"}:
            walk.count(len(_pop_mark(stack)))
            _container(stack, _Opaque)
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "DICT":
            items = _pop_mark(stack)
            if len(items) % 2:
                raise _unreadable("is not a valid pickle (odd DICT)")
            walk.count(len(items))
            stack.append({_hashable(k): v for k, v in zip(items[::2], items[1::2], strict=True)})
        elif name == "SETITEM":
            value, key = _pop(stack), _pop(stack)
            _container(stack, dict)[_hashable(key)] = value
            walk.count()
        elif name == "SETITEMS":
            items = _pop_mark(stack)
            if len(items) % 2:
                raise _unreadable("is not a valid pickle (odd SETITEMS)")
            target = _container(stack, dict)
            for key, value in zip(items[::2], items[1::2], strict=True):
                target[_hashable(key)] = value
            walk.count(len(items))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "TUPLE":
            items = _pop_mark(stack)
            walk.count(len(items))
            stack.append(tuple(items))
        elif name in {"TUPLE1", "TUPLE2", "TUPLE3"}:
            size = int(name[-1])
            items = [_pop(stack) for _ in range(size)][::-1]
            walk.count(size)
            stack.append(tuple(items))
        elif opcode.stack_before == [] and len(opcode.stack_after) == 1:
            # A constant: NONE, booleans, numbers, strings, bytes, bytearrays.
            stack.append({"NEWTRUE": True, "NEWFALSE": False}.get(name, arg))
            walk.count()
        else:
            raise _unreadable(f"uses the opcode {name}, which Bulwark does not read")
    raise _unreadable("is truncated (no STOP)")


def _container(stack: list[Any], kind: type) -> Any:
    """The container items are added to: `kind`, or an object the stream made (a dict or list
    subclass such as scikit-learn's Bunch; its items are not needed, so they go nowhere)."""
    if not stack or not isinstance(stack[-1], kind | Made):
        raise _unreadable("is not a valid pickle (adds items to a non-container)")
    return stack[-1] if isinstance(stack[-1], kind) else {}


def _is_wrapper(made: Made) -> bool:
    """A NumpyArrayWrapper, made as joblib's pickler makes one: `NEWOBJ` of the class with no
    arguments (protocols 2 to 5) or `copyreg._reconstructor(class, object, None)` (0 and 1).
    A wrapper made any other way is refused: the loader would read an array after it too."""
    if made.callee.name == WRAPPER:
        if made.args:
            raise _refuse("makes a NumpyArrayWrapper other than the way joblib does")
        return True
    if made.callee.name == RECONSTRUCTOR and made.args and isinstance(made.args[0], Global):
        if made.args[0].name != WRAPPER:
            return False
        if len(made.args) != 3 or not isinstance(made.args[1], Global):
            raise _refuse("makes a NumpyArrayWrapper other than the way joblib does")
        if made.args[1].name != "builtins.object" or made.args[2] is not None:
            raise _refuse("makes a NumpyArrayWrapper other than the way joblib does")
        return True
    return False


def _array(stream: io.BytesIO, end: int, wrapper: Made, walk: Walk, *, depth: int) -> Made:
    """Step over the data joblib wrote after a NumpyArrayWrapper; the array as a value."""
    if depth > 0:
        raise _refuse("holds a NumpyArrayWrapper inside a nested pickle")
    if not isinstance(wrapper.state, dict) or not isinstance(wrapper.state.get("subclass"), Global):
        raise _refuse("describes an array without its class")
    subclass = wrapper.state["subclass"].name
    if subclass != ARRAY_SUBCLASS:
        raise _refuse(f"describes an array of the class {subclass}")
    state = dict(wrapper.state, subclass=np.ndarray)
    layout = array_layout(concrete(state))
    if layout.nested_pickle:
        if depth + 1 >= MAX_DEPTH:
            raise _refuse("nests pickles too deeply")
        _walk(stream, end, walk, depth=depth + 1)
    else:
        _skip_raw(stream, layout, end)
    return Made(Global(ARRAY_SUBCLASS), (), built=True)


def joblib_globals(data: bytes | bytearray | memoryview, *, limit: int) -> frozenset[str]:
    """Every global the joblib file `data` would import, as `module.name`, without running
    anything. ArtifactRejected (UNREADABLE or UNSAFE_CONTENT, `detail` in words) for a file
    that is not a joblib pickle or does what the walk cannot prove safe."""
    view = pickle_stream(data, limit=limit)
    stream: Any = BufferFile(view)
    try:
        walk = Walk()
        _walk(stream, len(view), walk, depth=0)
        if stream.tell() != len(view):
            raise _unreadable("has data after the end of its pickle")
    finally:
        # No view of `data` may outlive the call: the caller closes its map.
        stream.close()
        view.release()
    return frozenset(walk.globals)
