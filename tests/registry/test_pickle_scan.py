"""The static walk of a pickle (what it would import, nothing run) and the restricted
unpickler (imports nothing else), against hand-made evasions: protocols 0 to 5, names built
on the stack or taken from the memo, nested pickles, INST/OBJ/NEWOBJ, extension codes,
persistent ids, out-of-band buffers, BUILD on a class, dtypes that lie, data after the end,
compression bombs, and random corruption. Pure: no database."""

from __future__ import annotations

import contextlib
import copyreg
import io
import os
import pickle
import struct
import zlib
from typing import Any

import joblib
import joblib.numpy_pickle
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression

from apps.registry.artifacts.errors import ArtifactRejected, Reason, UntrustedGlobals
from apps.registry.artifacts.pickle_load import load_joblib
from apps.registry.artifacts.pickle_scan import joblib_globals
from apps.registry.artifacts.trusted import DEFAULT_TRUSTED_GLOBALS

LIMIT = 1 << 26
DEFAULT = frozenset(DEFAULT_TRUSTED_GLOBALS)
CALLED: list[Any] = []


def sentinel(*args: Any) -> str:
    """A global with a side effect the tests can see; on no allow-list."""
    CALLED.append(args)
    return "ran"


SENTINEL = f"{__name__}.sentinel"


def unicode(text: str) -> bytes:  # SHORT_BINUNICODE
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def walk(data: bytes) -> frozenset[str]:
    return joblib_globals(data, limit=LIMIT)


def refusal(data: bytes) -> ArtifactRejected:
    with pytest.raises(ArtifactRejected) as refused:
        walk(data)
    return refused.value


def load(data: bytes, allowed: frozenset[str] = DEFAULT) -> Any:
    return load_joblib(data, allowed=allowed, limit=LIMIT)


def load_refusal(data: bytes, allowed: frozenset[str] = DEFAULT) -> ArtifactRejected:
    with pytest.raises(ArtifactRejected) as refused:
        load(data, allowed)
    return refused.value


@pytest.fixture(autouse=True)
def _nothing_called() -> Any:
    CALLED.clear()
    yield
    assert CALLED == [], "a global outside the allow-list ran"


class CallsSentinel:
    def __reduce__(self) -> Any:
        return (sentinel, ("boom",))


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_names_the_call(protocol):
    data = pickle.dumps(CallsSentinel(), protocol=protocol)
    assert walk(data) == {SENTINEL}
    refused = load_refusal(data)
    assert isinstance(refused, UntrustedGlobals) and refused.names == [SENTINEL]


@pytest.mark.parametrize("protocol", range(6))
def test_a_model_carrying_a_call_in_any_protocol_and_compression_is_caught(protocol):
    model = LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0])
    model.extra = CallsSentinel()
    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        buffer = io.BytesIO()
        joblib.dump(model, buffer, protocol=protocol, compress=compress)
        found = walk(buffer.getvalue())
        assert SENTINEL in found and found - {SENTINEL} <= DEFAULT
        assert load_refusal(buffer.getvalue()).names == [SENTINEL]  # type: ignore[attr-defined]


def test_text_opcodes_global_inst_and_obj_name_their_targets():
    module, name = __name__.encode(), b"sentinel"
    cases = {
        "GLOBAL+REDUCE": b"c" + module + b"\n" + name + b"\n(S'x'\ntR.",
        "INST": b"(S'x'\ni" + module + b"\n" + name + b"\n.",
        "OBJ": b"(c" + module + b"\n" + name + b"\nS'x'\no.",
    }
    for label, data in cases.items():
        assert walk(data) == {SENTINEL}, label
        assert isinstance(load_refusal(data), UntrustedGlobals), label


def test_newobj_of_a_class_outside_the_list_is_named():
    data = proto(2) + b"csubprocess\nPopen\n)\x81."
    assert walk(data) == {"subprocess.Popen"}
    assert load_refusal(data).names == ["subprocess.Popen"]  # type: ignore[attr-defined]


def test_stack_global_names_from_the_memo_are_resolved():
    data = (
        proto(4)
        + unicode("builtins")
        + b"\x94"  # MEMOIZE -> 0
        + unicode("eval")
        + b"\x94"  # MEMOIZE -> 1
        + b"00"  # POP POP
        + b"h\x00h\x01"  # BINGET 0, BINGET 1
        + b"\x93"  # STACK_GLOBAL
        + b"."
    )
    assert walk(data) == {"builtins.eval"}
    assert load_refusal(data).names == ["builtins.eval"]  # type: ignore[attr-defined]


def test_a_memo_slot_written_twice_is_followed_as_the_unpickler_would():
    data = (
        proto(4)
        + unicode("numpy")
        + b"q\x00"  # BINPUT 0 = "numpy"
        + b"0"
        + unicode("os")
        + b"q\x00"  # BINPUT 0 = "os": the slot the GET below reads
        + b"0"
        + b"h\x00"
        + unicode("system")
        + b"\x93."
    )
    assert walk(data) == {"os.system"}
    assert load_refusal(data).names == ["os.system"]  # type: ignore[attr-defined]


def test_an_import_name_built_at_load_time_is_refused():
    # STACK_GLOBAL's module is the result of a call (numpy.dtype('f8')), not a constant.
    data = (
        proto(4)
        + unicode("numpy")
        + unicode("dtype")
        + b"\x93"
        + unicode("f8")
        + b"\x85R"  # TUPLE1 REDUCE
        + unicode("system")
        + b"\x93."
    )
    refused = refusal(data)
    assert refused.reason == Reason.UNSAFE_CONTENT and "at load time" in refused.detail
    assert load_refusal(data).reason in {Reason.UNREADABLE, Reason.UNSAFE_CONTENT}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (proto(2) + b"\x82\x01.", "extension code"),  # EXT1 1
        (b"Pfoo\n.", "persistent id"),  # PERSID
        (proto(2) + unicode("x") + b"Q.", "persistent id"),  # BINPERSID
        (proto(5) + b"\x97.", "out-of-band buffer"),  # NEXT_BUFFER
    ],
)
def test_references_the_walk_cannot_follow_are_refused(data, words):
    assert words in refusal(data).detail
    assert words in load_refusal(data).detail


def test_an_extension_code_registered_for_a_dangerous_global_is_refused():
    copyreg.add_extension(__name__, "sentinel", 0x5A)
    try:
        data = proto(2) + b"\x82\x5a)R."  # EXT1 0x5a, (), REDUCE
        assert "extension code" in refusal(data).detail
        assert "extension code" in load_refusal(data).detail
    finally:
        copyreg.remove_extension(__name__, "sentinel", 0x5A)


def test_a_dotted_name_that_walks_attributes_is_refused():
    data = proto(4) + unicode("builtins") + unicode("object.__subclasses__") + b"\x93."
    assert "not a plain attribute" in refusal(data).detail
    assert "not a plain attribute" in load_refusal(data).detail


def test_a_call_on_something_that_is_not_a_global_is_refused():
    # REDUCE whose callable is itself the result of a call.
    data = proto(4) + unicode("numpy") + unicode("dtype") + b"\x93" + unicode("f8") + b"\x85R)R."
    assert "not a named global" in refusal(data).detail
    assert "not a named global" in load_refusal(data).detail


def test_build_on_an_imported_class_is_refused_and_the_class_is_untouched():
    target = "sklearn.linear_model._base.LinearRegression"
    data = (
        proto(4)
        + unicode("sklearn.linear_model._base")
        + unicode("LinearRegression")
        + b"\x93"
        + b"N"  # state: None
        + b"}"  # slotstate: {}
        + unicode("predict")
        + b"N"
        + b"s"  # SETITEM predict=None
        + b"\x86"  # TUPLE2 (None, {...})
        + b"b."  # BUILD
    )
    assert "did not make" in refusal(data).detail
    assert "did not make" in load_refusal(data, DEFAULT | {target}).detail
    assert callable(LinearRegression.predict)


def test_build_on_a_class_handed_back_by_a_call_is_refused():
    # numpy's scalar(dtype('O'), x) returns x: here a class, which BUILD would rewrite for the
    # whole process. The walk cannot know what a call returns; the unpickler refuses.
    data = (
        proto(4)
        + unicode("numpy._core.multiarray")
        + unicode("scalar")
        + b"\x93"
        + unicode("numpy")
        + unicode("dtype")
        + b"\x93"
        + unicode("O")
        + b"\x85R"  # dtype('O')
        + unicode("sklearn.linear_model._base")
        + unicode("LinearRegression")
        + b"\x93"
        + b"\x86R"  # scalar(dtype('O'), LinearRegression)
        + b"N}"
        + unicode("predict")
        + b"Ns\x86b."
    )
    allowed = DEFAULT | {"sklearn.linear_model._base.LinearRegression"}
    refused = load_refusal(data, allowed)
    assert "did not make" in refused.detail or refused.reason == Reason.UNREADABLE
    assert callable(LinearRegression.predict)


class LyingDtype:
    """A structured dtype with an object field whose pickled flags say "no objects": numpy
    would then read raw bytes as object pointers."""

    def __reduce__(self) -> Any:
        honest = np.dtype([("a", "O"), ("b", "<f8")])
        _, args, state = honest.__reduce__()
        return (np.dtype, args, (*state[:7], 0))


def test_a_dtype_whose_flags_lie_is_refused_by_the_unpickler():
    # Refused before numpy reads the state: it is not one numpy writes for these fields.
    data = pickle.dumps(LyingDtype(), protocol=4)
    assert "numpy does not write" in load_refusal(data).detail


def lying_wrapper() -> Any:
    """A NumpyArrayWrapper describing raw data in a lying dtype (joblib would read pointers)."""
    wrapper = joblib.numpy_pickle.NumpyArrayWrapper.__new__(joblib.numpy_pickle.NumpyArrayWrapper)
    wrapper.__dict__.update(
        subclass=np.ndarray,
        shape=(1,),
        order="C",
        dtype=LyingDtype(),
        allow_mmap=False,
        numpy_array_alignment_bytes=None,
    )
    return wrapper


def test_raw_array_data_in_a_lying_dtype_is_refused_by_both():
    stream = pickle.dumps(lying_wrapper(), protocol=2)
    data = stream[:-1] + struct.pack("<Qd", 0x4141414141414141, 1.0) + b"."
    assert "numpy does not write" in refusal(data).detail
    assert "numpy does not write" in load_refusal(data).detail


# A joblib file whose array dtype carries a six-item state ((3, "|", None, -1, -1, 63)):
# numpy's dtype.__setstate__ accepts it and then crashed the scanning process (a segmentation
# fault). 405 bytes, found while refactoring the walk.
CRASHING_DTYPE_STATE = (
    "gAJjam9ibGliLm51bXB5X3BpY2tsZQpOdW1weUFycmF5V3JhcHBlcgpxACmBcQF9cQIoWAgAAABzdWJjbGFzc3EDY251"
    "bXB5Cm5kYXJyYXkKcQRYBQAAAHNoYXBlcQVLA4VxBlgFAAAAb3JkZXJxB1gBAAAAQ3EIWAUAAABkdHlwZXEJY251bXB5"
    "CmR0eXBlCnEKWAIAAABPOHELiYiHcQxScQ0oSwNYAQAAAHxxDk5K/////0r/////Sz90cQ9iWAoAAABhbGxvd19tbWFw"
    "cRCJWBsAAABudW1weV9hcnJheV9hbGlnbm1lbnRfYnl0ZXNxEUsQdWKABZWRAAAAAAAAAIwWbnVtcHkuX2NvcmUubXVs"
    "dGlhcnJheZSMDF9yZWNvbnN0cnVjdJSTlIwFbnVtcHmUjAduZGFycmF5lJOUSwCFlEMBYpSHlFKUKEsBSwOFlGgDjAVk"
    "dHlwZZSTlIwCTziUiYiHlFKUKEsDjAF8lE5OTkr/////Sv////9LP3SUYoldlChLAYwBYZROZXSUYi4u"
)


def test_a_dtype_state_numpy_never_writes_is_refused_and_crashes_nothing():
    # In a child process: were the walk to crash again, this test fails instead of the run.
    import base64
    import subprocess
    import sys

    script = (
        "import base64, sys\n"
        "from apps.registry.artifacts.errors import ArtifactRejected\n"
        "from apps.registry.artifacts.pickle_load import load_joblib\n"
        "from apps.registry.artifacts.pickle_scan import joblib_globals\n"
        "from apps.registry.artifacts.trusted import DEFAULT_TRUSTED_GLOBALS as ALLOWED\n"
        "data = base64.b64decode(sys.argv[1])\n"
        "for step in (\n"
        "    lambda: joblib_globals(data, limit=1 << 20),\n"
        "    lambda: load_joblib(data, allowed=frozenset(ALLOWED), limit=1 << 20),\n"
        "):\n"
        "    try:\n"
        "        step()\n"
        "    except ArtifactRejected as exc:\n"
        "        print(exc.reason.value, exc.detail)\n"
    )
    assert len(base64.b64decode(CRASHING_DTYPE_STATE)) == 405
    done = subprocess.run(
        [sys.executable, "-c", script, CRASHING_DTYPE_STATE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Both the walk at upload and the restricted unpickler refuse it, and nothing crashed.
    assert done.stdout.count("holds a dtype state numpy does not write (O8)") == 2


HONEST_DTYPES = [
    np.dtype("<f8"),
    np.dtype(">i4"),
    np.dtype("|b1"),
    np.dtype("<U3"),
    np.dtype("O"),
    np.dtype([("a", "<i8"), ("b", "<f8")]),
    np.dtype({"names": ["a", "b"], "formats": ["<i8", "u1"], "offsets": [0, 8], "itemsize": 16}),
    np.dtype([("a", "<i8"), ("b", "<f8")], align=True),
    np.dtype(("<f8", (3,))),
    # Packed, with offsets no aligned layout has (scikit-learn's histogram-boosting nodes).
    np.dtype({"names": ["a", "b"], "formats": ["u4", "<i8"], "offsets": [0, 4], "itemsize": 12}),
]


@pytest.mark.parametrize("honest", HONEST_DTYPES, ids=str)
def test_every_state_numpy_writes_is_rebuilt_to_the_same_dtype(honest):
    from apps.registry.artifacts.dtypes import dtype_from_state

    _, (description, *_), state = honest.__reduce__()
    rebuilt = dtype_from_state(description, state)
    assert rebuilt == honest and rebuilt.flags == honest.flags
    assert rebuilt.__reduce__() == honest.__reduce__()


@pytest.mark.parametrize(
    "state",
    [
        (3, "|", None, -1, -1, 63),  # six items, as in the file above
        (3, "<", None, None, None, -1, -1),  # seven
        (3, "<", None, None, None, -1, -1, 0, {}),  # nine (metadata)
        (2, "<", None, None, None, -1, -1, 0),  # an older version
        (3, "?", None, None, None, -1, -1, 0),  # no byte order
        (3, "<", None, None, None, -1, -1, 63),  # object flags on a float
        (3, "<", None, None, None, 16, 8, 0),  # a size the description does not have
        [3, "<", None, None, None, -1, -1, 0],  # a list
    ],
    ids=range(8),
)
def test_a_state_numpy_never_writes_is_refused(state):
    from apps.registry.artifacts.dtypes import dtype_from_state

    with pytest.raises(ArtifactRejected, match="numpy does not write"):
        dtype_from_state("f8", state)


def test_a_structured_state_whose_sizes_or_flags_lie_is_refused():
    from apps.registry.artifacts.dtypes import dtype_from_state

    _, (description, *_), state = np.dtype([("a", "O"), ("b", "<f8")]).__reduce__()
    for lie in (
        (*state[:7], 0),  # no "holds objects" flag on an object field
        (*state[:5], 8, *state[6:]),  # an item size smaller than its fields
        (*state[:3], ("a",), state[4], *state[5:]),  # names that do not match the fields
    ):
        with pytest.raises(ArtifactRejected, match="numpy does not write"):
            dtype_from_state(description, lie)


def test_a_wrapper_made_with_arguments_is_refused():
    data = (
        proto(4)
        + unicode("joblib.numpy_pickle")
        + unicode("NumpyArrayWrapper")
        + b"\x93"
        + unicode("x")
        + b"\x85R}b."
    )
    assert refusal(data).reason == Reason.UNSAFE_CONTENT
    assert isinstance(load_refusal(data), ArtifactRejected)


class ObjectArrayCall:
    """An object array holding a call: joblib writes it as a nested pickle."""

    def __reduce__(self) -> Any:
        return (sentinel, ("nested",))


def test_a_call_inside_an_object_arrays_nested_pickle_is_named():
    model = LinearRegression().fit(np.eye(2), [1.0, 2.0])
    model.extra = np.array([ObjectArrayCall(), 1], dtype=object)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    found = walk(buffer.getvalue())
    assert SENTINEL in found
    assert load_refusal(buffer.getvalue()).names == [SENTINEL]  # type: ignore[attr-defined]
    # Allowed everything the walk found but the call: still refused, nothing ran.
    assert isinstance(
        load_refusal(buffer.getvalue(), frozenset(found - {SENTINEL})), UntrustedGlobals
    )


def test_a_plain_object_array_loads():
    model = LinearRegression().fit(np.eye(2), [1.0, 2.0])
    model.extra = np.array(["a", 1, None], dtype=object)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    loaded = load(buffer.getvalue(), walk(buffer.getvalue()))
    assert loaded.extra.tolist() == ["a", 1, None]


def test_data_after_the_end_is_refused():
    good = pickle.dumps(np.arange(3), protocol=4)
    for tail in (b"x", pickle.dumps(CallsSentinel(), protocol=4)):
        assert "after the end" in refusal(good + tail).detail
        assert "after the end" in load_refusal(good + tail).detail


def test_a_truncated_stream_is_refused():
    good = pickle.dumps(np.arange(3), protocol=4)
    for cut in (1, len(good) // 2, len(good) - 1):
        assert refusal(good[:cut]).reason == Reason.UNREADABLE
        assert load_refusal(good[:cut]).reason == Reason.UNREADABLE


def test_a_compression_bomb_stops_at_the_limit():
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)
    assert len(bomb) < 1 << 20
    with pytest.raises(ArtifactRejected) as refused:
        joblib_globals(bomb, limit=1 << 20)
    assert "more than the limit" in refused.value.detail


def test_lz4_and_old_joblib_files_are_refused_with_a_reason():
    assert "lz4" in refusal(b"\x04\x22\x4d\x18" + os.urandom(16)).detail
    assert "older than 0.10" in refusal(b"ZF" + os.urandom(16)).detail


def test_codecs_encode_serves_only_latin1_byte_strings():
    rot13 = proto(2) + b"c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    assert walk(rot13) == {"_codecs.encode"}
    assert "latin-1" in load_refusal(rot13).detail
    latin1 = proto(2) + b"c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00latin1\x86R."
    assert load(latin1) == b"abc"


def test_numpy_dtype_never_hands_out_a_shared_dtype():
    # copy=False would return numpy's own float64 dtype, which BUILD would then rewrite.
    data = (
        proto(4)
        + unicode("numpy")
        + unicode("dtype")
        + b"\x93"
        + unicode("f8")
        + b"\x89\x88\x87R."  # ('f8', False, True)... built as (f8, NEWFALSE, NEWTRUE)
    )
    loaded = load(data)
    assert loaded == np.dtype("f8") and loaded is not np.dtype("f8")


SEED = io.BytesIO()
joblib.dump(LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0]), SEED)
SEED_BYTES = SEED.getvalue()
ATTACK = pickle.dumps(CallsSentinel(), protocol=4)[2:-1]  # the call, without PROTO and STOP


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(SEED_BYTES) - 1), st.integers(0, 255)), max_size=6),
    st.integers(0, len(SEED_BYTES)),
    st.booleans(),
)
def test_corrupted_streams_are_refused_cleanly_and_never_run_a_call(flips, at, insert):
    data = bytearray(SEED_BYTES)
    for position, value in flips:
        data[position] = value
    if insert:
        data[at:at] = ATTACK
    try:
        found = walk(bytes(data))
    except ArtifactRejected:
        found = None
    with contextlib.suppress(ArtifactRejected):
        load(bytes(data), DEFAULT if found is None else frozenset(found) & DEFAULT)
    assert CALLED == []


def _global(module: str, name: str) -> bytes:
    return unicode(module) + unicode(name) + b"\x93"


@pytest.mark.parametrize(
    "data",
    [
        # numpy.ndarray((100000,)): uninitialised memory, which a model's outputs could carry out
        proto(4) + _global("numpy", "ndarray") + b"J\xa0\x86\x01\x00\x85\x85R.",
        proto(4) + _global("numpy", "ndarray") + b"J\xa0\x86\x01\x00\x85\x85\x81.",  # NEWOBJ
        # _reconstruct(ndarray, (100000,), b'b') with no BUILD to fill it
        proto(4)
        + _global("numpy._core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + b"J\xa0\x86\x01\x00\x85C\x01b\x87R.",
        # copyreg._reconstructor(ndarray, ndarray, (100000,))
        proto(4)
        + _global("copyreg", "_reconstructor")
        + _global("numpy", "ndarray")
        + _global("numpy", "ndarray")
        + b"J\xa0\x86\x01\x00\x85\x87R.",
    ],
    ids=["ndarray-call", "ndarray-newobj", "reconstruct-shape", "reconstructor-base"],
)
def test_no_call_hands_out_uninitialised_memory(data):
    assert walk(data) <= DEFAULT  # every name is trusted: only how they are called is wrong
    assert load_refusal(data).reason == Reason.UNSAFE_CONTENT
