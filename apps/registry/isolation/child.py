"""The model-runner side: a zygote that forks one runner per loaded model version. Django-free.

The zygote is started by a web or worker process (apps.registry.isolation.client) with an
empty environment (no secret, no settings module, no database or Redis URL), in a directory
of its own, with `python -I`. It imports numpy, scipy, scikit-learn and the loaders once, gives
up root if it has it, and then forks a runner for each request; a fork costs milliseconds and
shares those imports' memory. Each runner locks itself in (apps.registry.isolation.sandbox:
resource limits, Landlock, seccomp), then receives the verified plaintext of one version
once, loads it with the restricted loader, and answers predict calls until its parent closes
the channel. Nothing it sends back is trusted: its parent reads JSON with size limits.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from apps.registry.artifacts.errors import ArtifactRejected
from apps.registry.artifacts.loading import (
    ModelFacts,
    PredictionRefused,
    as_values,
    describe,
    feature_input,
    load_model,
    numeric_array,
    numeric_array_header,
    predict_outputs,
)
from apps.registry.isolation import protocol, sandbox

MAX_REQUEST_HEADER = 256 * 1024 * 1024  # a predict call's rows (the parent is trusted)


def _reap(signum: int, frame: Any) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _preload(modules: list[str]) -> list[str]:
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a trusted name from a library not installed here: load says so
            failed.append(name)
    return failed


def _skip_rechecks() -> None:
    """scikit-learn re-checks on every predict what cannot be wrong here: that the values are
    finite (the strict JSON parser refuses NaN and infinities, and the raw numeric arrays
    are made from those values) and the estimator's parameters (fixed since fit). Its
    checks of shape and dtype stay on."""
    try:
        import sklearn
    except ImportError:
        return
    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)


def zygote_main() -> None:
    """Entry point: `python -I -c "...; zygote_main()" CONFIG_JSON`."""
    config = json.loads(sys.argv[1])
    control = socket.socket(fileno=config["control_fd"])
    hello = protocol.Channel(control)
    os.chdir(config["directory"])
    failed = _preload(config["preload"])
    _skip_rechecks()
    gc.freeze()  # the imports stay shared with every runner instead of being copied
    report: dict[str, Any] = {"pid": os.getpid(), "preload_failed": failed}
    try:
        report["user"] = sandbox.drop_privileges(config["user"])
        sandbox.harden_process(parent_death_signal=False)
        report["landlock_abi"] = sandbox.landlock_abi()
        report["baseline_address_space"] = sandbox.address_space_in_use()
    except (sandbox.SandboxError, OSError, KeyError) as exc:
        hello.send(protocol.HELLO, {"ready": False, "error": str(exc)})
        return
    signal.signal(signal.SIGCHLD, _reap)
    hello.send(protocol.HELLO, {"ready": True, **report})
    # From here on nothing may write to the parent's stderr (a pipe it stops reading).
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 2)
    os.close(devnull)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(control, 4096, 1)
        except OSError:
            return
        if not message or not fds:
            return  # the parent went away: runners die with us (PDEATHSIG)
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _runner(fds[0], control, config, request, report)
            finally:
                os._exit(code)
        os.close(fds[0])
        pidfd = os.pidfd_open(pid)  # the runner is our unreaped child: this pid is still it
        try:
            socket.send_fds(control, [protocol.encode({"pid": pid})], [pidfd])
        finally:
            os.close(pidfd)


def _runner(
    channel_fd: int,
    control: socket.socket,
    config: dict[str, Any],
    request: dict[str, Any],
    report: dict[str, Any],
) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.close()
    channel = protocol.Channel(socket.socket(fileno=channel_fd))
    zygote = report["pid"]
    applied: dict[str, Any] = {}
    try:
        sandbox.harden_process(parent_death_signal=True)
        if os.getppid() != zygote:
            return 0  # the zygote died before PDEATHSIG was set
        sandbox.limit_resources(
            address_space=report["baseline_address_space"] + request["memory"],
            cpu_seconds=request["cpu_seconds"],
            open_files=request["open_files"],
        )
        applied["limits"] = True
        try:
            applied["landlock_abi"] = sandbox.landlock(config["read_paths"])
        except sandbox.SandboxError as exc:
            if config["sandbox"] == "required":
                raise
            applied["landlock_error"] = str(exc)
        try:
            sandbox.seccomp_filter()
            applied["seccomp"] = True
        except sandbox.SandboxError as exc:
            if config["sandbox"] == "required":
                raise
            applied["seccomp_error"] = str(exc)
    except (sandbox.SandboxError, OSError, ValueError) as exc:
        channel.send(protocol.HELLO, {"ready": False, "error": str(exc)})
        return 1
    channel.send(protocol.HELLO, {"ready": True, **applied})
    _serve(channel)
    return 0


def _serve(channel: protocol.Channel) -> None:
    model: Any = None
    facts: ModelFacts | None = None
    while True:
        try:
            kind, header, payload = channel.receive(
                max_header=MAX_REQUEST_HEADER, max_payload=1 << 40
            )
        except protocol.ChannelClosed:
            return
        if kind == protocol.QUIT:
            return
        if kind == protocol.LOAD and model is None:
            try:
                model = load_model(
                    payload,
                    format=header["format"],
                    allowed_globals=header["allowed_globals"],
                    skops_trusted=header["skops_trusted"],
                    limit=header["limit"],
                )
            except ArtifactRejected as exc:
                reply: dict[str, Any] = {"ok": False, "reason": exc.reason.value}
                reply["detail"] = exc.detail
            else:
                facts = describe(model)
                reply = {
                    "ok": True,
                    "feature_names": facts.feature_names,
                    "named_input": facts.named_input,
                    "classifier": facts.classifier,
                }
            del payload
            gc.collect()
        elif kind == protocol.PREDICT and model is not None and facts is not None:
            started = time.perf_counter_ns()
            reply, body = _predict(model, facts, header, payload)
            # The runner's own time and its CPU so far: the parent retires it near its limit
            # and the benchmark tells the model's time from the handoff's.
            reply["us"] = (time.perf_counter_ns() - started) // 1000
            reply["cpu"] = time.process_time()
            try:
                channel.send(protocol.REPLY, reply, body)
            except (TypeError, ValueError):  # outputs JSON cannot carry
                channel.send(protocol.REPLY, {"ok": False, "error": "unserialisable"})
            continue
        else:
            reply = {"ok": False, "error": "unexpected message"}
        channel.send(protocol.REPLY, reply)


def _predict(
    model: Any, facts: ModelFacts, header: Any, payload: bytearray
) -> tuple[dict[str, Any], bytes]:
    """The reply to a predict call: outputs as raw bytes when they are a numeric array,
    else as JSON values."""
    try:
        if isinstance(header, dict):  # rows as a numeric array (raw bytes)
            matrix = numeric_array(header, payload)
        else:  # rows as JSON values
            matrix = feature_input(header, facts.input_names)
        outputs = predict_outputs(model, matrix)
    except PredictionRefused as exc:
        return {"ok": False, "refused": exc.kind}, b""
    except Exception as exc:  # the model's own failure: reported by kind only
        return {"ok": False, "error": type(exc).__name__}, b""
    described = numeric_array_header(outputs)
    if described is not None:
        return {"ok": True, **described}, outputs.tobytes()
    return {"ok": True, "outputs": as_values(outputs)}, b""
