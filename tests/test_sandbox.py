"""lancy.sandbox: a completion runs against its unit tests in a restricted process; the score cannot be forged by
printing, and escape attempts fail without a trace (no marker file, no secret printed, the parent alive)."""
import errno
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from lancy import confinement, sandbox
from lancy.errors import LancyError
from lancy.sandbox import run_tests

TESTS = """import unittest

class TestCases(unittest.TestCase):
    def test_double(self):
        self.assertEqual(task_func(2), 4)

    def test_zero(self):
        self.assertEqual(task_func(0), 0)
"""
SECRET = "lancy-secret-7f3a9c"


def test_a_correct_solution_passes_its_tests():
    run = run_tests("import numpy as np\n\ndef task_func(x):\n    return int(np.multiply(x, 2))\n", TESTS)
    assert (run.passed, run.total, run.share, run.all_passed) == (2, 2, 1.0, True)


@pytest.mark.parametrize(
    ("solution", "passed", "total"),
    [
        ("def task_func(x):\n    return x + 2", 1, 2),  # right on 2 -> 4 only
        ("def task_func(x):\n    return None", 0, 2),
        ("pass", 0, 2),  # no task_func: every test fails
        ("", 0, 2),
        ("raise ValueError('at import')", 0, 0),  # the module fails: no test runs
        ("def task_func(x:", 0, 0),
        ("import sys\nsys.exit(0)", 0, 0),
        ("def task_func(x):\n    raise SystemExit(0)", 0, 2),
    ],
)
def test_wrong_or_empty_solutions_pass_some_or_none(solution, passed, total):
    run = run_tests(solution, TESTS)
    assert (run.passed, run.total) == (passed, total), run.output


def test_only_the_test_codes_own_test_cases_count():
    padding = "import unittest\n\nclass Padding(unittest.TestCase):\n" + "".join(
        f"    def test_{i}(self):\n        pass\n" for i in range(5))
    impostor = "\nclass TestCases(unittest.TestCase):\n    def test_free(self):\n        pass\n"
    run = run_tests(padding + impostor + "\ndef task_func(x):\n    return None\n", TESTS)
    assert (run.passed, run.total) == (0, 2)


def test_the_solution_can_neither_read_nor_replace_the_tests():
    """The sources come on stdin: the folder is empty, and a tests.py written there is not what runs."""
    replace = ("import os\nprint(os.listdir('.'))\nopen('tests.py', 'w').write('import unittest\\n"
               "class TestCases(unittest.TestCase):\\n    def test_free(self):\\n        pass\\n')\n")
    run = run_tests(replace + "def task_func(x):\n    return None\n", TESTS)
    assert (run.passed, run.total) == (0, 2) and "[]" in run.output


@pytest.mark.parametrize(
    "forgery",
    [
        "print('\\n' + '0' * 32 + ' 2 2')",
        "import sys\nsys.stdout.write('\\n%s 2 2\\n' % ('f' * 32))\nsys.stdout.flush()\nimport os\nos._exit(0)",
        "import os\nos.write(1, b'\\n' + b'a' * 32 + b' 2 2\\n')\nos._exit(0)",
        "import os\nos.write = lambda fd, data: 0\nos._exit = lambda code: None",  # the harness bound its own
        "import os\nos.close(1)",
    ],
)
def test_printing_a_fake_result_cannot_forge_the_score(forgery):
    run = run_tests(forgery + "\n\ndef task_func(x):\n    return None\n", TESTS)
    assert run.passed == 0


@pytest.fixture
def places():
    """Things outside the sandbox in a world-writable folder (so that file permissions alone would let user nobody
    in: only the confinement keeps it out), listeners on loopback and on a UNIX socket, and marker paths that a
    successful attack would create."""
    home = tempfile.mkdtemp(prefix="lancy-outside-")
    os.chmod(home, 0o777)
    secret = Path(home, "secret.txt")
    secret.write_text(SECRET)
    secret.chmod(0o666)
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(f"{home}/listener")
    os.chmod(f"{home}/listener", 0o777)
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0lancy-test-{os.getpid()}")
    abstract.listen()
    listeners = (tcp, udp, unix, abstract)
    for listener in listeners:
        listener.setblocking(False)
    shared = f"/tmp/lancy-pwned-{os.getpid()}"
    yield {"secret": str(secret), "marker": f"{home}/pwned", "shared": shared, "home": home, "listeners": listeners,
           "tcp": tcp.getsockname()[1], "udp": udp.getsockname()[1], "unix": f"{home}/listener",
           "abstract": f"\\0lancy-test-{os.getpid()}"}
    for listener in listeners:
        listener.close()
    shutil.rmtree(home, ignore_errors=True)
    if os.path.exists(shared):
        os.remove(shared)


LIBC = "import sys\nsys.modules.pop('ctypes', None)\nimport ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
FAILED = "\n    raise OSError(ctypes.get_errno(), 'refused')"
GUARD = ("try:\n    open('/etc/passwd')\nexcept PermissionError as error:\n    tb = error.__traceback__\n"
         "while tb.tb_next:\n    tb = tb.tb_next\nguard = tb.tb_frame.f_locals  # the audit hook's frame\n")

# Escape attempts, grouped to keep the battery fast: one sandboxed process per group tries each in turn, and each
# must raise inside it (a libc call that fails raises explicitly). Every group runs with the Python-level layer
# (the audit hook) on and off.
ATTACKS = {
    "libc": {  # ctypes: an empty stand-in, the real module refused by the audit hook; without it, the kernel
        "ctypes_system": LIBC + "if libc.system(b'touch {marker}; touch {shared}'):" + FAILED,
        "ctypes_open": LIBC + "if libc.open(b'{secret}', 0) < 0:" + FAILED,
        "ctypes_unlink": LIBC + "if libc.unlink(b'{secret}'):" + FAILED,
        "ctypes_creat": LIBC + "if libc.creat(b'{shared}', 0o644) < 0:" + FAILED,
        "ptrace_parent": LIBC + "if libc.ptrace(16, os.getppid(), 0, 0):" + FAILED,  # PTRACE_ATTACH
        "syscall_kill": LIBC + "if libc.syscall(62, os.getppid(), 15):" + FAILED,  # kill(2)
        "process_vm_readv": LIBC + "if libc.process_vm_readv(os.getppid(), 0, 0, 0, 0, 0) < 0:" + FAILED,
        "unshare_user": LIBC + "if libc.unshare(0x10000000):" + FAILED,
        "mount": LIBC + "if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None):" + FAILED,
        "bpf": LIBC + "if libc.syscall(321, 0, 0, 0) < 0:" + FAILED,
        "io_uring": LIBC + "if libc.syscall(425, 8, ctypes.create_string_buffer(120)) < 0:" + FAILED,
    },
    "processes": {
        "os_system": "import os\nif os.system('touch {marker} {shared}'):\n    raise OSError('refused')",
        "subprocess": "import subprocess\nsubprocess.run(['touch', '{marker}', '{shared}'])",
        "posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{shared}'], {{}})",
        "exec": "import os\nos.execv('/usr/bin/touch', ['touch', '{shared}'])",
        "exec_python": "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'open(\"{shared}\", \"w\")'])",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "multiprocessing": "import multiprocessing\n"
                           "multiprocessing.Process(target=open, args=('{shared}', 'w')).start()",
        "fork_exec_reload": "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess, os\n"
                            "_posixsubprocess.fork_exec([b'/usr/bin/touch', b'{shared}'], [b'/usr/bin/touch'], True, "
                            "(), None, None, -1, -1, -1, -1, -1, -1, *os.pipe(), False, False, -1, None, None, None, "
                            "-1, None, False)",
    },
    "threads": {
        "threads": "import threading, time\nfor _ in range(64):\n"
                   "    threading.Thread(target=time.sleep, args=(3,)).start()",
    },
    "network": {  # to the listeners this test opens
        "tcp": "import socket\nsocket.create_connection(('127.0.0.1', {tcp}), timeout=2)",
        "udp": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {udp}))",
        "unix": "import socket\nsocket.socket(socket.AF_UNIX).connect('{unix}')",
        "abstract_unix": "import socket\nsocket.socket(socket.AF_UNIX).connect('{abstract}')",
        "dns": "import socket\nsocket.getaddrinfo('example.com', 80)",
    },
    "writes": {  # writing, creating, renaming and deleting outside the folder
        "write": "open('{shared}', 'w').write('x')",
        "os_open_write": "import os\nos.open('{shared}', os.O_CREAT | os.O_WRONLY)",
        "pathlib_write": "import pathlib\npathlib.Path('{marker}').write_text('x')",
        "append_secret": "open('{secret}', 'a').write('x')",
        "truncate_secret": "import os\nos.truncate('{secret}', 0)",
        "mkdir": "import os\nos.mkdir('{shared}')",
        "rename_out": "open('mine', 'w').close()\nimport os\nos.rename('mine', '{marker}')",
        "rename_in": "import os\nos.rename('{secret}', 'mine')",
        "sqlite_file": "import sqlite3\nsqlite3.connect('{shared}').execute('create table t(a)')",
        "rmtree": "import shutil\nshutil.rmtree('{home}')",
        "remove_secret": "import os\nos.remove('{secret}')",
        "dir_fd": "import os\nd = os.open('{home}', os.O_RDONLY)\nos.open('x', os.O_CREAT | os.O_WRONLY, dir_fd=d)",
        "symlink_write": "import os\nos.symlink('{marker}', 'link')\nopen('link', 'w').write('x')",
        "hardlink_out": "open('mine', 'w').close()\nimport os\nos.link('mine', '{marker}')",
        "proc_self_fd": "open('/proc/self/fd/1', 'w').write('x')",  # its own output log, outside the folder
    },
    "reads": {  # reading outside the folder
        "read_secret": "print(open('{secret}').read())",
        "read_passwd": "print(open('/etc/passwd').read())",
        "os_read": "import os\nprint(os.read(os.open('{secret}', os.O_RDONLY), 100))",
        "open_code": "import io\nprint(io.open_code('{secret}').read())",
        "dotdot": "print(open('../../../../../../..{secret}').read())",
        "symlink": "import os\nos.symlink('{secret}', 'link')\nprint(open('link').read())",
        "hardlink": "import os\nos.link('{secret}', 'hard')\nprint(open('hard').read())",
        "list_outside": "import os\nprint(os.listdir('{home}'))",
        "proc_mem": "open('/proc/self/mem', 'r+b')",
        "proc_root": "print(open('/proc/self/root{secret}').read())",
        "parent_environ": "import os\nprint(open(f'/proc/{{os.getppid()}}/environ').read())",
        "parent_cmdline": "import os\nprint(open(f'/proc/{{os.getppid()}}/cmdline').read())",
        "str_subclass": "class P(str):\n    def startswith(self, *a):\n        return True\n"
                        "print(open(P('{secret}')).read())",
        "chdir": "import os\nos.chdir('/')\nprint(open('{secret}'[1:]).read())",
    },
    "signals": {  # to the parent, this test process
        "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)",
        "killpg_parent": "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGTERM)",
        "pidfd_parent": "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGTERM)",
    },
    "interpreter": {  # through the interpreter's own objects, against the Python-level layer
        "gc_state": "import gc\nfor o in gc.get_objects():\n    if isinstance(o, dict) and 'os.remove' in o:\n"
                    "        o.clear()\nimport os\nos.remove('{secret}')",
        "add_hook": "import sys\nsys.addaudithook(lambda *a: None)\nopen('{shared}', 'w')",
        "settrace": "import sys\nsys.settrace(lambda *a: None)\nopen('{shared}', 'w')",
        "raise_limits": "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))",
    },
    # These three defeat the audit hook (each alone: it stays defeated): the kernel stops what they then try.
    "hook_frame": {  # the hook's own state, from a traceback's frame
        "frame_state": GUARD + "guard['changes'].clear()  # os.remove is no longer checked\n"
                               "import os\nos.remove('{secret}')",
    },
    "hook_code": {  # its path check's code and defaults replaced: every path lies inside the folder
        "function_code": GUARD + "resolve = guard['resolve']\nresolve.__defaults__ = (guard['folder'],)\n"
                                 "resolve.__code__ = (lambda path, folder=None: folder + '/x').__code__\n"
                                 "print(open('{secret}').read())",
    },
    "hook_defaults": {  # its bound builtins replaced, and a str subclass that lies about its parts
        "defaults_and_str_subclass": GUARD + "folder = guard['folder']\n"
                                             "class P(str):\n    def startswith(self, prefix, *a):\n"
                                             "        return prefix == '/'\n    def split(self, sep):\n"
                                             "        return folder.split('/') + ['x']\n"
                                             "resolve = guard['resolve']\n"
                                             "resolve.__defaults__ = (resolve.__defaults__[0], lambda x: str, str, "
                                             "bytes)\nprint(open(P('{secret}')).read())",
    },
    "memory": {
        "memory": "x = bytearray(8 << 30)",
    },
}


def attempts(attacks: dict, places: dict) -> str:
    """A solution that tries each attack in turn and prints whether, and by what, it was stopped."""
    blocks = [f"try:\n{textwrap.indent(code.format(**places), '    ')}\n    print('ESCAPED {name}')\n"
              f"except BaseException as error:\n    print('stopped {name}', type(error).__name__, error)\n"
              for name, code in attacks.items()]
    return "\n".join(blocks) + "\n\ndef task_func(x):\n    return 2 * x\n"


def run_attacks(attacks: dict, places: dict) -> sandbox.RunResult:
    """Run the attempts; assert each was stopped inside the process and left no trace outside it."""
    terminated = []
    previous = signal.signal(signal.SIGTERM, lambda *args: terminated.append(args))
    try:
        run = run_tests(attempts(attacks, places), TESTS)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "ESCAPED" not in run.output, run.output
    for name in attacks:
        assert f"stopped {name} " in run.output, run.output
    assert run.all_passed, run.output  # the sandboxed process went on: every attempt raised inside it
    assert not os.path.exists(places["marker"]) and not os.path.exists(places["shared"])
    assert SECRET not in run.output and "root:x:0:0" not in run.output and "PYTEST" not in run.output
    assert Path(places["secret"]).read_text() == SECRET and sorted(os.listdir(places["home"])) == ["listener",
                                                                                                   "secret.txt"]
    for listener in places["listeners"]:
        with pytest.raises(BlockingIOError):
            listener.accept() if listener.type == socket.SOCK_STREAM else listener.recvfrom(10)
    assert not terminated
    return run


@pytest.fixture(params=[True, False], ids=["python-layer", "kernel-only"])
def python_layer(request, monkeypatch):
    """With and without the Python-level layer (audit hook, replaced functions): the kernel must hold alone."""
    monkeypatch.setattr(sandbox, "PYTHON_LAYER", request.param)
    return request.param


@pytest.mark.parametrize("group", ATTACKS)
def test_escape_attempts_fail_without_a_trace(group, places, python_layer):
    run = run_attacks(ATTACKS[group], places)
    if group.startswith("hook_") and python_layer:  # past the audit hook: what stopped them is the kernel
        assert "PermissionError [Errno 13]" in run.output and "sandbox:" not in run.output, run.output


def private_folder() -> bool:
    """Whether the sandbox gets its own mount namespace here (the folder a tmpfs of confinement.DISK_MB)."""
    if os.getuid() == 0:
        with open("/proc/self/status") as status:  # CAP_SYS_ADMIN (not in Docker's default profile)
            return int(next(line.split()[1] for line in status if line.startswith("CapEff")), 16) >> 21 & 1 == 1
    return not confinement.holds_capabilities()


@pytest.mark.skipif(not private_folder(), reason="no mount namespace: disk use is bounded per file only")
def test_disk_exhaustion_stops_at_the_folders_size(places, python_layer):
    fill = ("import os\nfor i in range(1000):\n    with open(f'f{{i}}', 'wb') as f:\n"
            "        f.write(b'x' * (1 << 20))\n")
    run = run_attacks({"disk": fill}, places)
    assert f"stopped disk OSError [Errno {errno.ENOSPC}]" in run.output, run.output


@pytest.mark.skipif(os.getuid() != 0, reason="the switch to nobody happens when started as root")
def test_root_runs_the_code_as_nobody_in_its_own_namespaces(monkeypatch):
    seen = {}

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)  # returns once the child has exec'd: confined
            with open(f"/proc/{self.pid}/status") as status:
                seen["status"] = status.read()
            own = f"/proc/{self.pid}/ns"
            seen["namespaces"] = {name: os.readlink(f"{own}/{name}") != os.readlink(f"/proc/self/ns/{name}")
                                  for name in ("net", "mnt")}

    monkeypatch.setattr(sandbox.subprocess, "Popen", Recorded)
    run = run_tests("import os\nprint('ids', os.getuid(), os.getgid(), os.getgroups())", TESTS)
    assert "ids 65534 65534 []" in run.output
    assert "NoNewPrivs:\t1" in seen["status"]
    assert not private_folder() or seen["namespaces"] == {"net": True, "mnt": True}


REGULAR_USER = 4242  # no passwd entry needed: a uid of its own, so RLIMIT_NPROC counts only this test's processes


@pytest.mark.skipif(os.getuid() != 0, reason="starting a process as another user needs root")
def test_every_sandbox_test_also_passes_for_a_regular_user():
    """The regular user's path of the sandbox (a user namespace where allowed, no switch to nobody, RLIMIT_NPROC
    over all of the user's processes): this whole file, run by pytest as uid 4242. Where that user cannot read
    the interpreter (pyenv under /root) it keeps CAP_DAC_READ_SEARCH, as the sandbox does for nobody, and so
    does the sandboxed process: reads outside the folder are then refused by the audit hook alone."""
    home = tempfile.mkdtemp(prefix="lancy-regular-user-")
    try:
        os.chown(home, REGULAR_USER, REGULAR_USER)
        env = {**os.environ, "HOME": home, "HF_HOME": f"{home}/hf", "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", f"{home}/t", __file__],
            cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=900,
            preexec_fn=functools.partial(confinement.switch_user, REGULAR_USER, confinement.needs_read_capability()))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0 and " passed" in summary and "failed" not in summary, result.stdout[-3000:]


def test_a_process_that_cannot_be_confined_is_a_clear_error(monkeypatch):
    def fail(*args):
        raise OSError("no")

    monkeypatch.setattr(confinement, "confine", fail)
    with pytest.raises(LancyError, match="code sandbox could not confine"):
        run_tests("x = 1", TESTS)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (("landlock_abi", lambda: 4), "needs Landlock ABI 6 .* this kernel has 4"),
        (("landlock_abi", lambda: 0), "needs Landlock ABI 6 .* this kernel has none"),
        (("_libc", None), "needs Linux"),
    ],
)
def test_a_kernel_that_cannot_confine_is_refused_in_one_line(patch, message, monkeypatch, places):
    monkeypatch.setattr(confinement, *patch)
    with pytest.raises(LancyError, match=message) as error:
        run_tests(f"open('{places['marker']}', 'w')", TESTS)
    assert "\n" not in str(error.value) and not os.path.exists(places["marker"])


def test_missing_libseccomp_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # import fails, as where libseccomp is not installed
    confinement.seccomp_bpf.cache_clear()
    try:
        with pytest.raises(LancyError, match="needs libseccomp"):
            run_tests("x = 1", TESTS)
    finally:
        confinement.seccomp_bpf.cache_clear()


def test_no_generated_code_runs_when_the_seccomp_filter_does_not_load(monkeypatch, places):
    monkeypatch.setattr(confinement, "seccomp_bpf", lambda: b"\0" * 8)  # not a valid program: prctl refuses it
    with pytest.raises(LancyError, match="did not start confined .*seccomp"):
        run_tests(f"open('{places['marker']}', 'w')", TESTS)
    assert not os.path.exists(places["marker"])


def test_the_interpreter_and_its_loader_are_the_only_programs():
    programs = confinement._programs()
    assert programs[0] == os.path.realpath(sys.executable) and all(os.path.isfile(p) for p in programs)
    assert len(programs) == 2 and "ld-" in programs[1]  # a dynamically linked interpreter names its loader


def test_the_folder_is_writable_and_the_standard_library_readable():
    solution = ("import csv, json, os, sqlite3, tempfile\n"
                "def task_func(x):\n"
                "    with open('data.csv', 'w') as f:\n"
                "        csv.writer(f).writerow([x])\n"
                "    sqlite3.connect('db.sqlite').execute('create table if not exists t(a)')\n"
                "    os.makedirs('out/sub', exist_ok=True)\n"
                "    tempfile.mkstemp()\n"
                "    return 2 * int(open('data.csv').read())\n")
    assert run_tests(solution, TESTS).all_passed


@pytest.mark.parametrize(
    ("solution", "error"),
    [
        ("import time\ntime.sleep(60)", None),  # the wall-clock timeout kills its session
        ("while True:\n    pass", None),
        ("x = bytearray(8 << 30)", "MemoryError"),
        ("print('x' * (64 << 20))", None),  # the file-size limit stops it
    ],
)
def test_limits(solution, error):
    start = time.monotonic()
    run = run_tests(solution, TESTS, timeout=1)
    assert time.monotonic() - start < 10
    assert (run.passed, run.total) == (0, 0)
    assert error is None or error in run.output
    assert len(run.output) <= 2000
