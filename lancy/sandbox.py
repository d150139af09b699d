"""Running generated code against its unit tests, in a separate process that the kernel confines.

`run_tests(solution, tests)` starts `python -I -B` in an empty temporary folder and hands it both sources
on stdin (never as files: the solution can neither read the tests' expected values nor rewrite them). The
harness runs the solution as a module, then the test code in the same namespace (BigCodeBench's layout:
the tests call the solution's functions by name), then the unittest TestCase classes the test code itself
defined, and reports how many tests passed out of how many ran.

The boundary is the kernel (lancy.confinement): namespaces, user nobody, resource limits and Landlock are
applied between fork and exec; the harness loads the seccomp filter as its first act and acknowledges it on a
pipe before the parent sends any generated code (no acknowledgement: a LancyError, never an unconfined run).
Where the kernel cannot confine (no Landlock ABI 6, no seccomp, no libseccomp), `run_tests` refuses in one line.

A second, Python-level layer stays inside the child, for clearer errors: an audit hook (which Python code
cannot remove) refuses ctypes, sockets, subprocesses, signals, tracing hooks and file access outside the folder
and the interpreter's installation; `_posixsubprocess.fork_exec` and the pidfd functions are replaced with
refusals; `ctypes` is an empty stand-in (pandas imports it unused). The generated code shares that
interpreter, so it can defeat this layer (the tests do, through tracebacks' frames and function defaults);
what it then reaches is still refused by the kernel. The tests run the escape battery with the hook on and
off (`PYTHON_LAYER`, a test-only switch that turns off this whole layer).

The count cannot be forged by output: the parent sends a random nonce with the sources and only a line
carrying it counts; printing a fake result line, exiting early, closing stdout or flooding it (the
file-size limit stops it) scores nothing.

What it does NOT protect (see also lancy.confinement): kernel exploits and CPU side channels; tampering with
its own test run: the solution shares the interpreter with unittest, so code that patches unittest, or walks
the stack to the calling test's expected values or to the harness (and its nonce), can fake passing tests.
Reward hacking of that kind must be caught by reading samples. Libraries that start processes or open sockets
(multiprocessing, a local server) fail; tests that write to fixed paths outside the folder (e.g. /tmp/x) fail.
"""
import functools
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

from lancy import confinement
from lancy.errors import LancyError

PYTHON_LAYER = True  # the audit hook and the replaced functions; the tests switch it off: the kernel holds alone

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


def _load_seccomp(program):
    """Install the parent's BPF program (lancy.confinement.seccomp_bpf) on this process, then forget ctypes."""
    import ctypes

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(22, 2, ctypes.byref(Program(len(program) // 8, program)), 0, 0):  # PR_SET_SECCOMP, MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    for name in [name for name in sys.modules if name in ("ctypes", "_ctypes") or name.startswith("ctypes.")]:
        del sys.modules[name]


def _python_layer():
    import _posixsubprocess, signal, types

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


def _main():
    write, exit_ = os.write, os._exit  # bound before the solution runs: it may patch the os module
    import json, traceback, unittest

    nonce, python_layer, program = sys.stdin.readline().split()
    _load_seccomp(bytes.fromhex(program))
    ready = int(sys.argv[1])
    write(ready, b"confined")  # only now does the parent send the sources
    os.close(ready)
    # On stdin, not in the folder: the solution can neither read the tests (their expected values) nor rewrite them.
    solution, tests = json.loads(sys.stdin.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if python_layer == "1":
        _python_layer()
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
    write(1, b"\n%s %d %d\n" % (nonce.encode(), passed, total))
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
    """Run the solution, then the unittest test code, in a confined process: how many tests passed.

    The solution runs as a module before the tests (BigCodeBench's convention: the tests call its functions
    by name); only TestCase classes that the test code itself defines count.
    """
    confinement.check()
    program = confinement.seccomp_bpf()
    confinement.needs_read_capability(), confinement.holds_capabilities()  # cached now: the child only reads them
    nonce = secrets.token_hex(16)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="lancy-sandbox-") as folder, tempfile.TemporaryDirectory() as logs:
        folder = os.path.realpath(folder)
        if os.getuid() == 0:
            os.chown(folder, confinement.NOBODY, confinement.NOBODY)
        log = os.path.join(logs, "output")
        env = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder, "MPLCONFIGDIR": folder, "MPLBACKEND": "Agg",
               "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        ready, ready_child = os.pipe()
        rules = confinement.ruleset()
        with open(log, "ab") as out:  # append-only: the child cannot rewrite what it printed before
            try:
                child = subprocess.Popen(
                    [sys.executable, "-I", "-B", "-c", HARNESS, str(ready_child)], cwd=folder, env=env,
                    stdin=subprocess.PIPE, stdout=out, stderr=out, start_new_session=True, pass_fds=(ready_child,),
                    preexec_fn=functools.partial(confinement.confine, folder, rules, int(timeout) + 1,
                                                 memory_mb << 20),
                )
            except (OSError, subprocess.SubprocessError) as error:
                raise LancyError(f"the code sandbox could not confine its process ({error}); run as root or a "
                                 "regular user on a Linux kernel with Landlock, or inside a VM") from None
            finally:
                os.close(ready_child)
                rules.close()
            try:
                try:
                    child.stdin.write(f"{nonce} {int(PYTHON_LAYER)} {program.hex()}\n".encode())
                    child.stdin.flush()
                except BrokenPipeError:  # it died starting: the acknowledgement below is missing too
                    pass
                if not select.select([ready], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise subprocess.TimeoutExpired(child.args, timeout)  # a slow start: no code ran, no score
                if os.read(ready, 8) != b"confined":
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    with open(log, "rb") as f:
                        tail = f.read()[-300:].decode("utf-8", "replace").strip().splitlines()
                    raise LancyError("the code sandbox's process did not start confined (its seccomp filter or "
                                     f"interpreter failed: {tail[-1] if tail else 'no output'}); run inside a VM with "
                                     "a recent kernel, or set grpo.code_execution: false")
                child.communicate(json.dumps([solution, tests]).encode(), timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # its session: whatever it managed to start dies too
                child.wait()
            finally:
                os.close(ready)
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 65536))
            text = f.read().decode("utf-8", "replace")
    results = re.findall(rf"^{nonce} (\d+) (\d+)$", text, re.MULTILINE)
    passed, total = map(int, results[-1]) if results else (0, 0)
    return RunResult(min(passed, total), total, re.sub(rf"\n{nonce} .*", "", text)[-2000:])
