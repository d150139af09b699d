"""Running generated code against its unit tests, in a separate, restricted Python process.

`run_tests(solution, tests)` starts `python -I -B` in an empty temporary folder and hands it both sources
on stdin (never as files: the solution can neither read the tests' expected values nor rewrite them). The
harness runs the solution as a module, then the test code in the same namespace (BigCodeBench's layout:
the tests call the solution's functions by name), then the unittest TestCase classes the test code itself
defined, and reports how many tests passed out of how many ran.

What the child process gets, between fork and exec (`_confine`):
- Its own network namespace (no interface up) where the kernel allows it: as root, or inside a new user
  namespace as a regular user holding no capabilities (a user namespace would drop capabilities it may
  need, e.g. to read a root-owned interpreter).
- As root: user and group nobody (65534) with no capabilities; when nobody cannot read the interpreter
  (e.g. pyenv under /root) it keeps one, reading any file (CAP_DAC_READ_SEARCH), while writing, signalling
  other users' processes and going past the process limit stay refused by the kernel.
- `no_new_privs` (setuid binaries give nothing), its own session (the whole group is killed on timeout),
  limits on CPU seconds, address space, file size, open files, and processes and threads (RLIMIT_NPROC: a
  few threads for nobody; for a regular user it counts all of the user's processes, so none can start),
  no core dumps, an environment of a few variables (HOME and TMPDIR are the folder).
Then, before any generated code runs, the harness reads its stdin (replaced by /dev/null afterwards),
replaces `_posixsubprocess.fork_exec` and the pidfd functions with refusals, puts an empty stand-in for
`ctypes` in sys.modules (pandas imports it unused) and installs an audit hook, which Python code cannot
remove. It refuses: loading ctypes or any ctypes event; reloading `_posixsubprocess` or `posix`; sockets
other than local socket pairs (asyncio), and every connect, bind or name lookup; subprocesses,
`os.system`, exec, spawn and fork; `os.kill`/`killpg`; tracing and profiling hooks, `sys._current_frames`,
`gc.get_objects`/`get_referrers`/`get_referents` and new audit hooks; changing resource limits;
symbolic and hard links; memory-mapping files; `chdir`, writes and every other change to the file system
outside the folder (paths with `..`, a dir_fd, or of a type other than exact str/bytes are refused);
reading files outside the folder, the interpreter's installation (sys.prefix, sys.base_prefix: the
standard library and the installed packages), time zones, fonts, /etc/mime.types, /dev/null and
/dev/urandom; opening directories outside the folder. The hook is stateless: what it uses is bound as
keyword defaults when it is made (no module globals or builtins a solution could patch) and it never
calls code the solution controls.

The count cannot be forged by output: the parent sends a random nonce with the sources and only a line
carrying it counts; printing a fake result line, exiting early, closing stdout or flooding it (the
file-size limit stops it) scores nothing.

What it does NOT protect against (it is not a container, VM or seccomp jail):
- Kernel exploits, CPU side channels, and bugs in CPython or in C extensions.
- C extensions that open files themselves, outside Python's audit events (e.g. sqlite's ATTACH): the
  kernel then still limits nobody to world-writable folders such as /tmp, and reading is open to it
  when the read capability was kept.
- Tampering with its own test run: the solution shares the interpreter with unittest, so code that
  patches unittest, or walks the stack (sys._getframe, which the standard library needs, stays allowed)
  to the calling test's expected values or to the harness, can fake passing tests. Reward hacking of that
  kind must be caught by reading samples.
- Resource use within the limits (disk space in files under the size limit, memory within the address
  space, CPU for the whole timeout); listing directories and `os.stat` outside the folder.
- Libraries that need ctypes (e.g. torch) cannot be imported; tests that write to fixed paths outside
  the folder (e.g. /tmp/x) fail.
- As a regular user without user namespaces, or one holding capabilities: no network namespace (the audit
  hook alone refuses sockets).
Run GRPO with code rewards inside a container or VM that holds no credentials when the policy is untrusted.
"""
import ctypes
import functools
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
from typing import NamedTuple

from lancy.errors import LancyError

NOBODY = 65534
TASKS = 16  # processes and threads of the nobody user: room for ordinary threads, not for a fork bomb
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_PR_SET_KEEPCAPS, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 8, 38, 47, 2
_CAP_DAC_READ_SEARCH = 2

HARNESS = r'''
import os, posix, sys


def _make_guard():
    folder = posix.getcwd()
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    # read-only: the interpreter's installation (standard library, installed packages) and harmless system data
    roots = (*{os.path.realpath(p) for p in prefixes}, "/usr/share/zoneinfo", "/usr/share/fonts", "/etc/mime.types",
             "/dev/urandom")
    refused = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
               "os.kill", "os.symlink", "os.link", "pty.", "ctypes.", "_posixsubprocess.", "sys.settrace",
               "sys.setprofile", "sys.addaudithook", "sys._current_frames", "gc.get_", "resource.setrlimit",
               "resource.prlimit", "sqlite3.enable_load_extension", "sqlite3.load_extension", "webbrowser.")
    # events that change the file system: argument positions of their paths (inside the folder only)
    changes = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
               "os.chown": (0,), "os.utime": (0,), "os.truncate": (0,), "os.chflags": (0,), "os.setxattr": (0,),
               "os.removexattr": (0,), "os.chdir": (0,), "shutil.rmtree": (0,), "sqlite3.connect": (0,)}
    # their dir_fd arguments, which must stay unset (a path relative to another folder cannot be checked)
    dir_fds = {"os.remove": (1,), "os.rmdir": (1,), "os.mkdir": (2,), "os.rename": (2, 3), "os.chmod": (2,),
               "os.chown": (3,), "os.utime": (3,), "shutil.rmtree": (1,)}

    def resolve(path, getcwd=posix.getcwd, type=type, str=str, bytes=bytes):
        """The absolute form of an exact str or bytes path, or None (other types, or a '..' in it)."""
        if type(path) is bytes:
            path = path.decode("utf-8", "surrogateescape")
        if type(path) is not str or path.startswith("file:"):
            return None
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        parts = [part for part in path.split("/") if part not in ("", ".")]
        return None if ".." in parts else "/" + "/".join(parts)

    def guard(event, args, *, resolve=resolve, folder=folder, roots=roots, refused=refused, changes=changes,
              dir_fds=dir_fds, stat=posix.stat, type=type, int=int, str=str, any=any, deny=PermissionError,
              missing=ImportError, write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
        if event.startswith(refused):
            if event == "socket.__new__" and args[1] == 1:  # AF_UNIX: asyncio's self-pipe; connect is refused
                return
            raise deny(f"sandbox: {event} is not allowed")
        if event == "import":
            if type(args[0]) is not str or args[0] in ("_posixsubprocess", "posix"):
                raise deny("sandbox: reloading _posixsubprocess or posix is not allowed")
            if args[0] in ("ctypes", "_ctypes") or args[0].startswith("ctypes."):
                raise missing("sandbox: ctypes is not available")
            return
        if event == "mmap.__new__" and args[0] != -1:
            raise deny("sandbox: mapping files is not allowed")
        if event == "open":
            if type(args[0]) is int:  # an open file descriptor, opened under this guard
                return
            path = resolve(args[0])
            if path is not None and (path == folder or path.startswith(folder + "/") or path == "/dev/null"):
                return
            reads = type(args[2]) is int and not args[2] & write_flags
            if reads and path is not None and any(path == root or path.startswith(root + "/") for root in roots):
                if stat(path).st_mode & 0o170000 != 0o040000:  # no directory: no dir_fd to reach outside from
                    return
            raise deny(f"sandbox: opening {path or 'that path'} is not allowed")
        if event in changes:
            if event == "sqlite3.connect" and type(args[0]) is str and args[0] in (":memory:", ""):
                return
            if event == "os.truncate" and type(args[0]) is int:
                return
            for i in changes[event]:
                path = resolve(args[i])
                if path is None or not (path == folder or path.startswith(folder + "/")):
                    raise deny(f"sandbox: {event} outside the sandbox folder is not allowed")
            for i in dir_fds.get(event, ()):
                if args[i] is not None and not (type(args[i]) is int and args[i] == -1):
                    raise deny(f"sandbox: {event} with dir_fd is not allowed")

    return guard


def _run(solution, tests):
    import linecache, unittest

    class Counted(unittest.TestResult):
        passed = 0

        def addSuccess(self, test):
            super().addSuccess(test)
            self.passed += 1

    linecache.cache["solution.py"] = (len(solution), None, solution.splitlines(True), "solution.py")  # tracebacks
    namespace = {"__name__": "__sandbox__", "__file__": posix.getcwd() + "/solution.py"}
    for name, source in (("solution.py", solution), ("tests.py", tests)):
        before = dict(namespace)
        exec(compile(source, name, "exec"), namespace)
    cases = [value for key, value in namespace.items()
             if before.get(key) is not value and isinstance(value, type) and issubclass(value, unittest.TestCase)]
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in cases)
    total, result = suite.countTestCases(), Counted()
    suite.run(result)
    for test, text in result.failures + result.errors:
        print(f"{test.id()}: {text.strip().splitlines()[-1]}", file=sys.stderr)
    return result.passed, total


def _no_ctypes(name):
    raise AttributeError(f"sandbox: ctypes.{name} is not available")


def _main():
    write, exit_ = os.write, os._exit  # bound before the solution runs: it may patch the os module
    import _posixsubprocess, json, signal, traceback, types, unittest  # loaded now: reloading them is refused

    # On stdin, not in the folder: the solution can neither read the tests (their expected values) nor rewrite them.
    nonce = sys.stdin.readline().strip().encode()
    solution, tests = json.loads(sys.stdin.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)

    def refused(*args, **kwargs):
        raise PermissionError("sandbox: starting processes and signalling them is not allowed")

    _posixsubprocess.fork_exec = refused
    sys.modules["ctypes"] = types.ModuleType("ctypes", "sandbox: an empty stand-in (pandas imports ctypes unused)")
    sys.modules["ctypes"].__getattr__ = _no_ctypes
    for module in (os, posix, signal):
        for name in ("pidfd_open", "pidfd_send_signal"):
            if hasattr(module, name):
                setattr(module, name, refused)
    sys.addaudithook(_make_guard())
    try:
        passed, total = _run(solution, tests)
    except BaseException:
        traceback.print_exc()
        passed, total = 0, 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    write(1, b"\n%s %d %d\n" % (nonce, passed, total))
    exit_(0)


_main()
'''


class RunResult(NamedTuple):
    passed: int
    total: int  # 0 when the solution or the test code failed before any test ran, or on a timeout
    output: str  # the end of what the program printed (stdout and stderr), for debugging

    @property
    def share(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


def run_tests(solution: str, tests: str, timeout: float = 10.0, memory_mb: int = 2048) -> RunResult:
    """Run the solution, then the unittest test code, in a sandboxed process: how many tests passed.

    The solution runs as a module before the tests (BigCodeBench's convention: the tests call its functions
    by name); only TestCase classes that the test code itself defines count.
    """
    if _libc is None:
        raise LancyError("running generated code needs the Linux sandbox (lancy/sandbox.py); on this platform set "
                         "grpo.code_execution: false and leave code datasets out of evaluation")
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="lancy-sandbox-") as folder, tempfile.TemporaryDirectory() as logs:
        folder = os.path.realpath(folder)
        if os.getuid() == 0:
            os.chown(folder, NOBODY, NOBODY)
        log = os.path.join(logs, "output")
        env = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder, "MPLCONFIGDIR": folder, "MPLBACKEND": "Agg",
               "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(log, "ab") as out:  # append-only: the child cannot rewrite what it printed before
            try:
                child = subprocess.Popen(
                    [sys.executable, "-I", "-B", "-c", HARNESS], cwd=folder, env=env, stdin=subprocess.PIPE,
                    stdout=out, stderr=out, start_new_session=True,
                    preexec_fn=functools.partial(_confine, int(timeout) + 1, memory_mb << 20, _needs_read_capability(),
                                                 _holds_capabilities()),
                )
            except subprocess.SubprocessError as error:
                raise LancyError(f"the code sandbox could not confine its process ({error}: as root it needs to "
                                 "switch to user nobody); run as a regular user, or in a container") from None
            try:
                child.communicate(f"{nonce}\n{json.dumps([solution, tests])}".encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # its session: whatever it managed to start dies too
                child.wait()
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 65536))
            text = f.read().decode("utf-8", "replace")
    results = re.findall(rf"^{nonce} (\d+) (\d+)$", text, re.MULTILINE)
    passed, total = map(int, results[-1]) if results else (0, 0)
    return RunResult(min(passed, total), total, re.sub(rf"\n{nonce} .*", "", text)[-2000:])


# ----------------------------------------------------------------------------- between fork and exec

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # unshare, prctl, capset


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_READ = 1 << _CAP_DAC_READ_SEARCH
_CAPS = (_CapHeader(0x20080522, 0), (_CapData * 2)(_CapData(_READ, _READ, _READ), _CapData(0, 0, 0)))


def _confine(cpu_seconds: int, memory_bytes: int, read_everything: bool, capabilities: bool) -> None:
    """In the child before exec: its own network, the nobody user when root, no new privileges, limits."""
    if os.getuid() == 0:
        _libc.unshare(_CLONE_NEWNET)  # fails without CAP_SYS_ADMIN (e.g. Docker): the audit hook still refuses sockets
        switch_user(NOBODY, read_everything)
    elif not capabilities:
        _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET)  # where unprivileged user namespaces are allowed
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_bytes),
                         (resource.RLIMIT_FSIZE, 16 << 20), (resource.RLIMIT_NOFILE, 256),
                         (resource.RLIMIT_NPROC, TASKS), (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(limit)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # never above a stricter limit
        resource.setrlimit(limit, (value, value))


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
def _holds_capabilities() -> bool:
    """Whether this process has effective capabilities (/proc/self/status CapEff)."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("CapEff")), 16) != 0


@functools.cache
def _needs_read_capability() -> bool:
    """Whether nobody needs the read capability to start this interpreter (e.g. pyenv under /root)."""
    if os.getuid() != 0:
        return False
    try:
        probe = subprocess.run([sys.executable, "-I", "-c", "import encodings"], capture_output=True, timeout=30,
                               preexec_fn=functools.partial(switch_user, NOBODY, False), cwd="/")
    except (OSError, subprocess.SubprocessError):
        return True
    return probe.returncode != 0
