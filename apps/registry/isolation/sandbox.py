"""What a model runner may not do, enforced by the kernel. Django-free (the runner imports it).

Layers, each applied by the process to itself (the zygote once, each runner again after fork):
- privileges: started as root, the zygote becomes `nobody` (no file a root process owns, no
  other process's /proc entries); every process sets no_new_privs and is not dumpable (no
  core dumps, no ptrace or /proc/<pid>/mem by processes of the same user);
- resource limits: address space, CPU seconds, open files, no core files, no file written;
- Landlock (Linux >= 5.13): the filesystem is read-only and limited to the Python
  installation and the packages the runner imports; no /proc, no project directory, no
  `.env`. From ABI 4 no TCP bind or connect; from ABI 6 no signal to a process outside the
  runner's own domain and no abstract unix socket outside it;
- seccomp: no new socket, no exec, no new process (threads only), no ptrace or
  process_vm_*, no io_uring, no namespaces or mounts, no kernel keyring or modules, and
  kill/tgkill only to itself.
A layer the kernel does not offer is reported; the client refuses to start runners without
Landlock and seccomp unless MODEL_RUNNER_SANDBOX=basic (apps.registry.isolation.client).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import struct
from collections.abc import Iterable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2


class SandboxError(Exception):
    pass


def _prctl(option: int, value: int, arg3: int = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(arg3), 0, 0) != 0:
        code = ctypes.get_errno()
        raise SandboxError(f"prctl({option}) failed: {os.strerror(code)}")


def harden_process(*, parent_death_signal: bool) -> None:
    """no_new_privs, not dumpable, and (for a runner) die with the zygote."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_DUMPABLE, 0)
    if parent_death_signal:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_CAPSET = {"x86_64": 126, "aarch64": 91}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4


def drop_capabilities() -> None:
    """No capability left in any set: a process that stays root keeps its user id but none
    of root's powers (reading others' files, tracing, killing, mounting, ...)."""
    for capability in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            if code == errno.EINVAL:
                break  # past the last capability this kernel knows
            if code != errno.EPERM:  # EPERM: not root, nothing in the bounding set to drop
                raise SandboxError(f"PR_CAPBSET_DROP: {os.strerror(code)}")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # effective, permitted, inheritable: zero, twice (64 capabilities)
    if _libc.syscall(_CAPSET[platform.machine()], header, data) != 0:
        raise SandboxError(f"capset: {os.strerror(ctypes.get_errno())}")


def drop_privileges(user: str) -> str:
    """As root with `user` set: become `user` (no supplementary groups). Otherwise the user
    stays; either way every capability goes (drop_capabilities)."""
    if os.geteuid() != 0 or not user:
        drop_capabilities()
        return "unchanged"
    import pwd

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    if os.geteuid() == 0 or os.getegid() == 0:
        raise SandboxError("could not leave root")
    drop_capabilities()
    return user


def address_space_in_use() -> int:
    """Bytes of virtual address space this process maps now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def limit_resources(*, address_space: int, cpu_seconds: int, open_files: int) -> None:
    for limit, value in (
        (resource.RLIMIT_AS, address_space),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_NOFILE, open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, 0),
    ):
        resource.setrlimit(limit, (value, value))


# --- Landlock ---------------------------------------------------------------------------

_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ACCESS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none."""
    version = _libc.syscall(
        _LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION
    )
    return max(0, int(version))


def _fs_access(abi: int) -> int:
    return _FS_ACCESS_BY_ABI[max(level for level in _FS_ACCESS_BY_ABI if level <= abi)]


def landlock(read_only: Iterable[str]) -> int:
    """Restrict this process (and what it forks) to reading `read_only` paths, with no TCP
    and no signals or abstract sockets beyond its own domain where the ABI allows. Returns
    the ABI used; SandboxError if the kernel has no Landlock."""
    abi = landlock_abi()
    if abi < 1:
        raise SandboxError("the kernel offers no Landlock")
    handled_fs = _fs_access(abi)
    handled_net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("Q", handled_fs)
    ruleset = _libc.syscall(_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)), 0)
    if ruleset < 0:
        raise SandboxError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for path in sorted(set(read_only)):
            if not os.path.exists(path):
                continue
            access = _FS_READ_FILE | (_FS_READ_DIR if os.path.isdir(path) else 0)
            descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", access, descriptor)
                done = _libc.syscall(
                    _LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, rule, 0
                )
                if done != 0:
                    raise SandboxError(
                        f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}"
                    )
            finally:
                os.close(descriptor)
        if _libc.syscall(_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise SandboxError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


# --- seccomp ----------------------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Denied outright (EPERM), by architecture: networking, exec, new processes, other
# processes' memory, io_uring, namespaces and mounts, keyrings, modules, kexec, raw devices.
_DENIED = {
    "x86_64": {
        "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50,
        "socketpair": 53, "accept4": 288, "execve": 59, "execveat": 322, "fork": 57,
        "vfork": 58, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "kcmp": 312, "pidfd_open": 434, "pidfd_getfd": 438, "pidfd_send_signal": 424,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "keyctl": 250, "add_key": 248, "request_key": 249, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "kexec_load": 246,
        "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
        "mknod": 133, "mknodat": 259, "open_by_handle_at": 304, "name_to_handle_at": 303,
        "personality": 135, "iopl": 172, "ioperm": 173, "syslog": 103,
        "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
        "sethostname": 170, "setdomainname": 171, "setpriority": 141, "ioprio_set": 251,
        "quotactl": 179, "acct": 163, "vhangup": 153, "capset": 126,
    },
    "aarch64": {
        "socket": 198, "connect": 203, "accept": 202, "bind": 200, "listen": 201,
        "socketpair": 199, "accept4": 242, "execve": 221, "execveat": 281, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_open": 434,
        "pidfd_getfd": 438, "pidfd_send_signal": 424, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "unshare": 97, "setns": 268,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
        "request_key": 218, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "kexec_load": 104, "kexec_file_load": 294, "reboot": 142, "swapon": 224,
        "swapoff": 225, "mknodat": 33, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "personality": 92, "syslog": 116, "settimeofday": 170, "clock_settime": 112,
        "clock_adjtime": 266, "adjtimex": 171, "sethostname": 161, "setdomainname": 162,
        "setpriority": 140, "ioprio_set": 30, "quotactl": 60, "acct": 89, "vhangup": 58,
        "capset": 91,
    },
}  # fmt: skip
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
# Signals: allowed only when the first argument is this process's own pid.
_SIGNALS = {
    "x86_64": (62, 200, 234, 129, 297),  # kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsig...
    "aarch64": (129, 130, 131, 138, 240),
}
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
_JGE_K = 0x35


def _errno(code: int) -> int:
    return 0x00050000 | code


class _Program:
    def __init__(self) -> None:
        self.code: list[tuple[int, int, int, int]] = []

    def add(self, code: int, k: int, jt: int = 0, jf: int = 0) -> None:
        self.code.append((code, jt, jf, k))


def seccomp_filter() -> None:
    """Install the runner's seccomp filter (no_new_privs must already be set)."""
    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        raise SandboxError(f"no seccomp filter for the architecture {machine}")
    denied = sorted(_DENIED[machine].values())
    program = _Program()
    program.add(_LD_W_ABS, 4)  # seccomp_data.arch
    program.add(_JEQ_K, _AUDIT_ARCH[machine], jt=1)
    program.add(_RET_K, _RET_KILL_PROCESS)
    program.add(_LD_W_ABS, 0)  # seccomp_data.nr
    if machine == "x86_64":
        # x32 syscalls are another numbering of the same calls: none of them.
        program.add(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1)
        program.add(_RET_K, _errno(errno.EPERM))
    # clone3 answers ENOSYS, so the C library falls back to clone, whose flags are checked.
    program.add(_JEQ_K, _CLONE3, jf=1)
    program.add(_RET_K, _errno(errno.ENOSYS))
    program.add(_JEQ_K, _CLONE[machine], jf=4)
    program.add(_LD_W_ABS, 16)  # args[0], low word: the clone flags
    program.add(_JSET_K, _CLONE_THREAD, jt=0, jf=1)
    program.add(_RET_K, _RET_ALLOW)
    program.add(_RET_K, _errno(errno.EPERM))
    own_pid = os.getpid()
    for number in _SIGNALS[machine]:
        program.add(_JEQ_K, number, jf=4)
        program.add(_LD_W_ABS, 16)  # args[0], low word: the target pid
        program.add(_JEQ_K, own_pid, jt=0, jf=1)
        program.add(_RET_K, _RET_ALLOW)
        program.add(_RET_K, _errno(errno.EPERM))
    for index, number in enumerate(denied):
        # Jump to the EPERM return after the last comparison and the ALLOW return.
        program.add(_JEQ_K, number, jt=len(denied) - index, jf=0)
    program.add(_RET_K, _RET_ALLOW)
    program.add(_RET_K, _errno(errno.EPERM))

    filters = (ctypes.c_ubyte * (8 * len(program.code)))()
    for index, (code, jt, jf, k) in enumerate(program.code):
        struct.pack_into("=HBBI", filters, 8 * index, code, jt, jf, k)

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _SockFprog(len(program.code), ctypes.addressof(filters))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise SandboxError(f"seccomp: {os.strerror(ctypes.get_errno())}")
