"""What the kernel enforces on the sandbox's child process (lancy.sandbox), before any generated code runs.

In the child, between fork and exec (`confine`), in this order:
- Its own mount and network namespaces where the kernel allows it (as root; as a regular user holding no
  capabilities, inside a new user namespace mapping only its own ids): the sandbox folder becomes a tmpfs of
  DISK_MB (disk exhaustion stops there, and whatever was written vanishes with the process); no network
  interface is up.
- As root: user and group nobody with no capabilities, except CAP_DAC_READ_SEARCH when nobody cannot read the
  interpreter (e.g. pyenv under /root); Landlock below still limits reading to the listed trees.
- `no_new_privs`, its own session, resource limits (CPU seconds, address space, file size, open files,
  processes and threads, no core dumps).
- **Landlock** (ABI 6 or later, Linux 6.12+): read-only access to the interpreter's installation, the shared
  libraries and a few system data files (READ_ROOTS); executing only the interpreter and its ELF loader;
  read-write (but no executing) only in the sandbox folder; /dev/null readable and writable; nothing else,
  /proc and /sys included. TCP bind and connect are refused, and signals and abstract UNIX sockets are scoped
  to the sandbox's own processes (the parent cannot be signalled). Landlock also keeps ptrace from reaching
  any process outside the sandbox.
Then the harness, first thing after the interpreter starts, reads SECCOMP_BPF's program on stdin and loads it
(it needs the exec above, so it cannot come earlier). **seccomp** refuses: exec, fork and new processes (clone
without CLONE_THREAD; clone3 answers ENOSYS so that threads fall back to clone, whose flags a filter can
read), creating sockets (socketpair stays: asyncio), debugging other processes (ptrace, process_vm_*, kcmp,
pidfd_*), namespaces and mounts, raising resource limits, BPF, perf events, keys, io_uring, userfaultfd,
kernel modules, kexec, handles by inode, and clock and host settings. Other architectures' system call ABIs
(i386, x32) kill the process (libseccomp's default for a foreign architecture).

Libraries: seccomp through `pyseccomp` (a ctypes binding of the system's libseccomp with the API of
libseccomp's own Python bindings, which are not on PyPI); Landlock through a binding of its three system
calls here (`Ruleset`), because the `landlock` package on PyPI handles file access only, not TCP ports or
scopes.

Where the kernel lacks Landlock ABI 6, or seccomp filters, or libseccomp is missing, `check()` refuses with one
line naming what is missing: lancy never runs generated code under weaker confinement. Namespaces are taken
where possible (not in Docker's default profile, nor for a regular user with capabilities): without them the
network is still closed by Landlock and seccomp, but disk use is bounded per file (RLIMIT_FSIZE), not in total.

Not protected: kernel exploits (Landlock and seccomp shrink the attack surface, they do not remove it), CPU side
channels (timing, caches), the CPU and memory the limits allow, and what lives inside the child itself (the
test run it reports on: see lancy.sandbox).
"""
import ctypes
import errno
import functools
import os
import resource
import struct
import sys

from lancy.errors import LancyError

NOBODY = 65534
TASKS = 16  # processes and threads of the nobody user: room for ordinary threads, not for a fork bomb
DISK_MB = 64  # the tmpfs that replaces the sandbox folder
LANDLOCK_ABI = 6  # scoped signals and abstract UNIX sockets
READ_ROOTS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/etc/localtime",
              "/usr/share/zoneinfo", "/usr/share/fonts", "/etc/mime.types", "/dev/urandom")

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET, _CLONE_THREAD = 0x20000, 0x10000000, 0x40000000, 0x10000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
_PR_SET_KEEPCAPS, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 8, 38, 47, 2
_CAP_DAC_READ_SEARCH = 2


# ----------------------------------------------------------------------------- Landlock

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same number on every architecture
_RULE_PATH_BENEATH = 1
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, TRUNCATE = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 14
MAKE_CHAR, MAKE_BLOCK, IOCTL_DEV = 1 << 6, 1 << 11, 1 << 15
ALL_FS = (1 << 16) - 1  # every file-system right up to ABI 5, including REFER, TRUNCATE and IOCTL_DEV
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # what a rule on a file (not a folder) takes
FOLDER = ALL_FS & ~(EXECUTE | MAKE_CHAR | MAKE_BLOCK | IOCTL_DEV)
NET_TCP = 0b11  # bind and connect
SCOPES = 0b11  # abstract UNIX sockets and signals


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(number: int, *args) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where it has none (or it is disabled)."""
    if _libc is None:
        return 0
    try:
        return _syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # ..._CREATE_RULESET_VERSION
    except OSError:
        return 0


class Ruleset:
    """A Landlock ruleset that handles every file right, TCP bind/connect and both scopes: what is not added is
    refused once `restrict_self` ran. Built in the parent; the child adds its folder and restricts itself."""

    def __init__(self):
        attr = _RulesetAttr(ALL_FS, NET_TCP, SCOPES)
        self.fd = _syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))

    def allow(self, path: str, access: int) -> None:
        """Allow `access` beneath `path` (on the file itself when it is one). Missing paths are skipped."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            if not os.path.isdir(f"/proc/self/fd/{fd}"):
                access &= FILE_RIGHTS
            rule = _PathBeneath(access, fd)
            _syscall(_ADD_RULE, self.fd, ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
        finally:
            os.close(fd)

    def restrict_self(self) -> None:
        _syscall(_RESTRICT_SELF, self.fd, ctypes.c_uint32(0))

    def close(self) -> None:
        os.close(self.fd)


def elf_interpreter(path: str) -> str | None:
    """The program interpreter (dynamic loader) named in an ELF executable's PT_INTERP header, if any."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit only
            return None
        end = "<" if header[5] == 1 else ">"
        phoff, = struct.unpack_from(end + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", header, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            kind, _, offset, _, _, size = struct.unpack(end + "IIQQQQ", f.read(40))
            if kind == 3:  # PT_INTERP
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode()
    return None


def ruleset() -> Ruleset:
    """The sandbox's ruleset, without its folder (the child adds it once its tmpfs is mounted)."""
    rules = Ruleset()
    for root in {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}:
        rules.allow(root, READ_FILE | READ_DIR)
    for root in READ_ROOTS:
        rules.allow(root, READ_FILE | READ_DIR)
    for program in _programs():
        rules.allow(program, EXECUTE | READ_FILE)
    rules.allow(os.devnull, READ_FILE | WRITE_FILE | TRUNCATE)
    return rules


@functools.cache
def _programs() -> tuple[str, ...]:
    executable = os.path.realpath(sys.executable)
    loader = elf_interpreter(executable)
    return (executable,) + ((loader,) if loader else ())


# ----------------------------------------------------------------------------- seccomp

DENIED = (
    "execve", "execveat", "fork", "vfork",  # clone and clone3: below
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "mount", "umount2", "unshare", "setns", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "setrlimit",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "userfaultfd", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "name_to_handle_at", "open_by_handle_at", "fanotify_init", "lookup_dcookie",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "personality",
    "uselib",
)


@functools.cache
def seccomp_bpf() -> bytes:
    """The sandbox's seccomp filter as a BPF program (struct sock_filter[]), for the harness to load."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError) as error:  # pyseccomp raises RuntimeError when libseccomp is missing
        raise LancyError(f"running generated code needs libseccomp ({error}); install it (Debian/Ubuntu: apt install "
                         "libseccomp2), or set grpo.code_execution: false and leave code datasets out") from None
    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(denied, name)
        except (OSError, ValueError):  # a call this architecture does not have
            pass
    rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))  # a process, not a thread
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags sit behind a pointer: glibc falls back to clone
    rules.add_rule(seccomp.ERRNO(errno.EACCES), "socket")
    rules.add_rule(denied, "prlimit64", seccomp.Arg(2, seccomp.NE, 0))  # reading limits (new limit NULL) stays
    read, write = os.pipe()
    try:
        rules.export_bpf(os.fdopen(write, "wb", closefd=False))
        os.close(write)
        write = None
        with os.fdopen(read, "rb") as program:
            read = None
            return program.read()
    finally:
        for fd in (read, write):
            if fd is not None:
                os.close(fd)


def check() -> None:
    """Refuse, in one line, where the kernel cannot confine generated code (no weaker fallback)."""
    if _libc is None:
        raise LancyError("running generated code needs Linux (Landlock and seccomp); set grpo.code_execution: false "
                         "and leave code datasets out of evaluation, or run inside a Linux container or VM")
    abi = landlock_abi()
    if abi < LANDLOCK_ABI:
        raise LancyError(f"running generated code needs Landlock ABI {LANDLOCK_ABI} (Linux 6.12 or later, with "
                         f"landlock in the lsm= boot list); this kernel has {abi or 'none'}: run on such a kernel "
                         "(e.g. in a VM), or set grpo.code_execution: false and leave code datasets out")
    with open("/proc/self/status") as status:
        if not any(line.startswith("Seccomp_filters:") for line in status):
            raise LancyError("running generated code needs seccomp filters (CONFIG_SECCOMP_FILTER), which this "
                             "kernel lacks: run on another kernel (e.g. in a VM), or set grpo.code_execution: false")
    seccomp_bpf()


# ----------------------------------------------------------------------------- between fork and exec


def confine(folder: str, rules: Ruleset, cpu_seconds: int, memory_bytes: int) -> None:
    """In the child before exec (see the module docstring): namespaces, user, limits, then Landlock."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        private = _libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET) == 0  # fails without CAP_SYS_ADMIN (e.g. Docker)
    else:
        private = not holds_capabilities() and _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET) == 0
        if private:  # map only its own ids, so that its files on the tmpfs have an owner
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
    if private:
        owner = NOBODY if uid == 0 else uid
        _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
        options = f"size={DISK_MB}m,nr_inodes=4096,mode=0700,uid={owner},gid={owner}".encode()
        _check(_libc.mount(b"tmpfs", folder.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options),
               "mount tmpfs")
    os.chdir(folder)  # the tmpfs now, not the folder beneath it
    if uid == 0:
        switch_user(NOBODY, needs_read_capability())
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_bytes),
                         (resource.RLIMIT_FSIZE, 16 << 20), (resource.RLIMIT_NOFILE, 256),
                         (resource.RLIMIT_NPROC, TASKS), (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(limit)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # never above a stricter limit
        resource.setrlimit(limit, (value, value))
    rules.allow(".", FOLDER)
    rules.restrict_self()


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_READ = 1 << _CAP_DAC_READ_SEARCH
_CAPS = (_CapHeader(0x20080522, 0), (_CapData * 2)(_CapData(_READ, _READ, _READ), _CapData(0, 0, 0)))


def switch_user(uid: int, read_everything: bool) -> None:
    """setuid to `uid` (with its group, no others); keeping only CAP_DAC_READ_SEARCH across exec when that user
    cannot read the interpreter. The tests also start pytest itself as a regular user this way."""
    if read_everything and _libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if read_everything and (_libc.capset(ctypes.byref(_CAPS[0]), _CAPS[1])
                            or _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _CAP_DAC_READ_SEARCH, 0, 0)):
        raise OSError(ctypes.get_errno(), "capset(CAP_DAC_READ_SEARCH)")


@functools.cache
def holds_capabilities() -> bool:
    """Whether this process has effective capabilities (/proc/self/status CapEff)."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("CapEff")), 16) != 0


@functools.cache
def needs_read_capability() -> bool:
    """Whether nobody needs the read capability to start this interpreter (e.g. pyenv under /root)."""
    if os.getuid() != 0:
        return False
    import subprocess
    try:
        probe = subprocess.run([sys.executable, "-I", "-c", "import encodings"], capture_output=True, timeout=30,
                               preexec_fn=functools.partial(switch_user, NOBODY, False), cwd="/")
    except (OSError, subprocess.SubprocessError):
        return True
    return probe.returncode != 0
