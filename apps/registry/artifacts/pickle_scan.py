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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.registry.artifacts.buffers import BufferFile
from apps.registry.artifacts.dtypes import checked_dtype, dtype_from_state
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
            if value.built:
                # Never numpy's __setstate__ on the file's state (apps.registry.artifacts.dtypes).
                dtype = dtype_from_state(description, concrete(value.state, depth=depth + 1))
            else:
                dtype = np.dtype(description, False, True)  # a copy: never numpy's singletons
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
    machine = _Machine(stream=stream, end=end, walk=walk, depth=depth)
    for opcode, arg in _ops(stream):
        _step(machine, opcode, arg)
        if machine.stopped:
            return
    raise _unreadable("is truncated (no STOP)")


@dataclass
class _Machine:
    """The symbolic pickle machine walking one stream: what every opcode's handler reads and
    changes."""

    stream: io.BytesIO
    end: int
    walk: Walk
    depth: int
    stack: list[Any] = field(default_factory=list)
    memo: dict[int, Any] = field(default_factory=dict)
    proto: int = 0
    stopped: bool = False


def _step(machine: _Machine, opcode: pickletools.OpcodeInfo, arg: Any) -> None:
    """One opcode: its handler by name; else a constant; else refused as unread."""
    name = opcode.name
    handler = _HANDLERS.get(name)
    if handler is not None:
        handler(machine, name, arg)
    elif opcode.stack_before == [] and len(opcode.stack_after) == 1:
        # A constant: NONE, booleans, numbers, strings, bytes, bytearrays.
        machine.stack.append({"NEWTRUE": True, "NEWFALSE": False}.get(name, arg))
        machine.walk.count()
    else:
        raise _unreadable(f"uses the opcode {name}, which Bulwark does not read")


def _proto(machine: _Machine, name: str, arg: Any) -> None:
    machine.proto = arg


def _ignored(machine: _Machine, name: str, arg: Any) -> None:
    """FRAME and READONLY_BUFFER change nothing the walk follows."""


def _stop(machine: _Machine, name: str, arg: Any) -> None:
    _pop(machine.stack)
    if machine.stack:
        raise _unreadable("is not a valid pickle (values left at STOP)")
    machine.stopped = True


def _persistent_id(machine: _Machine, name: str, arg: Any) -> None:
    raise _refuse("uses a persistent id (an external object reference)")


def _extension(machine: _Machine, name: str, arg: Any) -> None:
    raise _refuse("uses an extension code (an import by number)")


def _next_buffer(machine: _Machine, name: str, arg: Any) -> None:
    raise _refuse("expects an out-of-band buffer")


def _mark(machine: _Machine, name: str, arg: Any) -> None:
    machine.stack.append(_MARK)


def _pop_top(machine: _Machine, name: str, arg: Any) -> None:
    _pop(machine.stack)


def _pop_to_mark(machine: _Machine, name: str, arg: Any) -> None:
    _pop_mark(machine.stack)


def _dup(machine: _Machine, name: str, arg: Any) -> None:
    stack = machine.stack
    stack.append(stack[-1] if stack else _pop(stack))


def _memo_put(machine: _Machine, name: str, arg: Any) -> None:
    stack, memo = machine.stack, machine.memo
    if not stack or stack[-1] is _MARK:
        raise _unreadable("is not a valid pickle (memo of nothing)")
    index = len(memo) if name == "MEMOIZE" else int(arg)
    if index < 0:
        raise _unreadable("is not a valid pickle (negative memo index)")
    memo[index] = stack[-1]
    machine.walk.count()


def _memo_get(machine: _Machine, name: str, arg: Any) -> None:
    index = int(arg)
    if index not in machine.memo:
        raise _unreadable("is not a valid pickle (a memo slot never written)")
    machine.stack.append(machine.memo[index])


def _global(machine: _Machine, name: str, arg: Any) -> None:
    """GLOBAL and INST: the name is the opcode's argument; INST also calls it."""
    module, _, attribute = arg.partition(" ")
    found = Global(global_name(module, attribute, proto=machine.proto))
    machine.walk.globals.add(found.name)
    if name == "INST":
        machine.stack.append(Made(found, tuple(_pop_mark(machine.stack))))
    else:
        machine.stack.append(found)


def _stack_global(machine: _Machine, name: str, arg: Any) -> None:
    attribute = _constant_text(_pop(machine.stack), "attribute")
    module = _constant_text(_pop(machine.stack), "module")
    found = Global(global_name(module, attribute, proto=machine.proto))
    machine.walk.globals.add(found.name)
    machine.stack.append(found)


def _call(machine: _Machine, name: str, arg: Any) -> None:
    """REDUCE and NEWOBJ: a named global called with an argument tuple."""
    args = _pop(machine.stack)
    callee = _callee(_pop(machine.stack), name)
    if not isinstance(args, tuple):
        raise _unreadable(f"is not a valid pickle ({name} without an argument tuple)")
    machine.stack.append(Made(callee, args))


def _newobj_ex(machine: _Machine, name: str, arg: Any) -> None:
    stack = machine.stack
    kwargs, args = _pop(stack), _pop(stack)
    callee = _callee(_pop(stack), "NEWOBJ_EX")
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise _unreadable("is not a valid pickle (NEWOBJ_EX arguments)")
    stack.append(Made(callee, args))


def _obj(machine: _Machine, name: str, arg: Any) -> None:
    items = _pop_mark(machine.stack)
    if not items:
        raise _unreadable("is not a valid pickle (OBJ without a class)")
    machine.stack.append(Made(_callee(items[0], "OBJ"), tuple(items[1:])))


def _build(machine: _Machine, name: str, arg: Any) -> None:
    stack = machine.stack
    state = _pop(stack)
    target = stack[-1] if stack else _pop(stack)
    if not isinstance(target, Made):
        raise _refuse("sets the state of something it did not make (BUILD)")
    if target.built:
        raise _refuse("sets the state of one object twice (BUILD)")
    target.built, target.state = True, state
    if _is_wrapper(target):
        stack.pop()
        stack.append(_array(machine.stream, machine.end, target, machine.walk, depth=machine.depth))


def _empty_opaque(machine: _Machine, name: str, arg: Any) -> None:
    machine.stack.append(_Opaque(name))


def _opaque(machine: _Machine, name: str, arg: Any) -> None:
    """LIST and FROZENSET: the items up to the mark, counted and dropped."""
    machine.walk.count(len(_pop_mark(machine.stack)))
    machine.stack.append(_Opaque(name))


def _append(machine: _Machine, name: str, arg: Any) -> None:
    _pop(machine.stack)
    _container(machine.stack, _Opaque)
    machine.walk.count()


def _append_many(machine: _Machine, name: str, arg: Any) -> None:
    """APPENDS and ADDITEMS."""
    machine.walk.count(len(_pop_mark(machine.stack)))
    _container(machine.stack, _Opaque)


def _empty_dict(machine: _Machine, name: str, arg: Any) -> None:
    machine.stack.append({})


def _dict(machine: _Machine, name: str, arg: Any) -> None:
    items = _pop_mark(machine.stack)
    if len(items) % 2:
        raise _unreadable("is not a valid pickle (odd DICT)")
    machine.walk.count(len(items))
    machine.stack.append({_hashable(k): v for k, v in zip(items[::2], items[1::2], strict=True)})


def _setitem(machine: _Machine, name: str, arg: Any) -> None:
    value, key = _pop(machine.stack), _pop(machine.stack)
    _container(machine.stack, dict)[_hashable(key)] = value
    machine.walk.count()


def _setitems(machine: _Machine, name: str, arg: Any) -> None:
    items = _pop_mark(machine.stack)
    if len(items) % 2:
        raise _unreadable("is not a valid pickle (odd SETITEMS)")
    target = _container(machine.stack, dict)
    for key, value in zip(items[::2], items[1::2], strict=True):
        target[_hashable(key)] = value
    machine.walk.count(len(items))


def _empty_tuple(machine: _Machine, name: str, arg: Any) -> None:
    machine.stack.append(())


def _tuple(machine: _Machine, name: str, arg: Any) -> None:
    items = _pop_mark(machine.stack)
    machine.walk.count(len(items))
    machine.stack.append(tuple(items))


def _small_tuple(machine: _Machine, name: str, arg: Any) -> None:
    """TUPLE1, TUPLE2 and TUPLE3."""
    size = int(name[-1])
    items = [_pop(machine.stack) for _ in range(size)][::-1]
    machine.walk.count(size)
    machine.stack.append(tuple(items))


# Every opcode the walk reads by name (any other is read only if it pushes a constant).
_HANDLERS: dict[str, Callable[[_Machine, str, Any], None]] = {
    "PROTO": _proto,
    "FRAME": _ignored,
    "READONLY_BUFFER": _ignored,
    "STOP": _stop,
    "PERSID": _persistent_id,
    "BINPERSID": _persistent_id,
    "EXT1": _extension,
    "EXT2": _extension,
    "EXT4": _extension,
    "NEXT_BUFFER": _next_buffer,
    "MARK": _mark,
    "POP": _pop_top,
    "POP_MARK": _pop_to_mark,
    "DUP": _dup,
    "PUT": _memo_put,
    "BINPUT": _memo_put,
    "LONG_BINPUT": _memo_put,
    "MEMOIZE": _memo_put,
    "GET": _memo_get,
    "BINGET": _memo_get,
    "LONG_BINGET": _memo_get,
    "GLOBAL": _global,
    "INST": _global,
    "STACK_GLOBAL": _stack_global,
    "REDUCE": _call,
    "NEWOBJ": _call,
    "NEWOBJ_EX": _newobj_ex,
    "OBJ": _obj,
    "BUILD": _build,
    "EMPTY_LIST": _empty_opaque,
    "EMPTY_SET": _empty_opaque,
    "LIST": _opaque,
    "FROZENSET": _opaque,
    "APPEND": _append,
    "APPENDS": _append_many,
    "ADDITEMS": _append_many,
    "EMPTY_DICT": _empty_dict,
    "DICT": _dict,
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "EMPTY_TUPLE": _empty_tuple,
    "TUPLE": _tuple,
    "TUPLE1": _small_tuple,
    "TUPLE2": _small_tuple,
    "TUPLE3": _small_tuple,
}


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
