"""lancy.sandbox: a completion runs against its unit tests in a restricted process; the score cannot be forged by
printing, and escape attempts fail without a trace (no marker file, no secret printed, the parent alive)."""
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

from lancy import sandbox
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
def places(tmp_path):
    """A secret file outside the sandbox, and marker paths that a successful attack would create."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o644)  # world-readable: only the sandbox, not file permissions, keeps it out
    shared = f"/tmp/lancy-pwned-{os.getpid()}"  # world-writable: nobody could create it
    yield {"secret": str(secret), "marker": str(tmp_path / "pwned"), "shared": shared, "home": str(tmp_path)}
    if os.path.exists(shared):
        os.remove(shared)


# Escape attempts, grouped to keep the battery fast: one sandboxed process per group tries each in turn.
# Attempts that would change the process for the others (sys.modules, builtins, threads) run alone.
ATTACKS = {
    "ctypes": {  # ctypes is an empty stand-in, the real module cannot be loaded, its events are refused
        "ctypes_system": "import ctypes\nctypes.CDLL(None).system(b'touch {marker}; touch {shared}')",
        "ctypes_open": "import ctypes\nlibc = ctypes.CDLL('libc.so.6')\nprint(libc.open(b'{secret}', 0))",
        "_ctypes": "import _ctypes\nprint(_ctypes.dlopen(None, 0))",
    },
    "ctypes_reload": {
        "ctypes_reload": "import sys\ndel sys.modules['ctypes']\nimport ctypes\n"
                         "ctypes.CDLL(None).system(b'touch {shared}')",
    },
    "processes": {
        "os_system": "import os\nos.system('touch {marker} {shared}')",
        "subprocess": "import subprocess\nsubprocess.run(['touch', '{marker}', '{shared}'])",
        "posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{shared}'], {{}})",
        "exec": "import os\nos.execv('/usr/bin/touch', ['touch', '{shared}'])",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "multiprocessing": "import multiprocessing\n"
                           "multiprocessing.Process(target=open, args=('{shared}', 'w')).start()",
        "fork_exec": "import _posixsubprocess, os\n_posixsubprocess.fork_exec([b'/usr/bin/touch', b'{shared}'], "
                     "[b'/usr/bin/touch'], True, (), None, None, -1, -1, -1, -1, -1, -1, *os.pipe(), False, False, "
                     "-1, None, None, None, -1, None, False)",
        "fork_exec_from_spec": "import importlib.util\nspec = importlib.util.find_spec('_posixsubprocess')\n"
                               "importlib.util.module_from_spec(spec)",
    },
    "fork_exec_reload": {
        "fork_exec_reload": "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess",
    },
    "threads": {
        "threads": "import threading, time\nfor _ in range(64):\n"
                   "    threading.Thread(target=time.sleep, args=(3,)).start()",
    },
    "network": {
        "dns": "import socket\nsocket.getaddrinfo('example.com', 80)",
        "unix_socket": "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/var/run/docker.sock')",
    },
    "writes": {  # writing, changing and deleting outside the folder
        "write": "open('{shared}', 'w').write('x')",
        "os_open_write": "import os\nos.open('{shared}', os.O_CREAT | os.O_WRONLY)",
        "pathlib_write": "import pathlib\npathlib.Path('{marker}').write_text('x')",
        "mkdir": "import os\nos.mkdir('{shared}')",
        "rename_out": "open('mine', 'w').close()\nimport os\nos.rename('mine', '{shared}')",
        "sqlite_file": "import sqlite3\nsqlite3.connect('{shared}').execute('create table t(a)')",
        "rmtree": "import shutil\nshutil.rmtree('{home}')",
        "remove_secret": "import os\nos.remove('{secret}')",
        "dir_fd": "import os, sys\nd = os.open(sys.prefix, os.O_RDONLY)\n"
                  "os.open('x', os.O_CREAT | os.O_WRONLY, dir_fd=d)",
    },
    "reads": {  # reading outside the folder
        "read_secret": "print(open('{secret}').read())",
        "read_passwd": "print(open('/etc/passwd').read())",
        "os_read": "import os\nprint(os.read(os.open('{secret}', os.O_RDONLY), 100))",
        "open_code": "import io\nprint(io.open_code('{secret}').read())",
        "dotdot": "print(open('../../../../../../..{secret}').read())",
        "symlink": "import os\nos.symlink('{secret}', 'link')\nprint(open('link').read())",
        "hardlink": "import os\nos.link('{secret}', 'hard')\nprint(open('hard').read())",
        "proc_mem": "open('/proc/self/mem', 'r+b')",
        "proc_root": "print(open('/proc/self/root{secret}').read())",
        "mmap": "import mmap, os\nopen('m', 'wb').write(b'x' * 9)\n"
                "mmap.mmap(os.open('m', os.O_RDONLY), 0, prot=mmap.PROT_READ)",
        "str_subclass": "class P(str):\n    def startswith(self, *a):\n        return True\n"
                        "print(open(P('{secret}')).read())",
        "chdir": "import os\nos.chdir('/')\nprint(open('{secret}'[1:]).read())",
    },
    "patched_builtins": {
        "patched_builtins": "import builtins\nreal = builtins.type, builtins.any\nbuiltins.type = lambda x: str\n"
                            "builtins.any = lambda x: True\ntry:\n    print(open('{secret}').read())\n"
                            "finally:\n    builtins.type, builtins.any = real",
    },
    "signals": {  # to the parent, this test process
        "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)",
        "killpg_parent": "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGTERM)",
        "pidfd_parent": "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGTERM)",
    },
    "guard": {  # the audit hook itself
        "add_hook": "import sys\nsys.addaudithook(lambda *a: print('HOOKED'))\nopen('{shared}', 'w')",
        "gc_objects": "import gc\nprint([o for o in gc.get_objects() if callable(o)])",
        "settrace": "import sys\nsys.settrace(lambda *a: None)",
        "current_frames": "import sys\nprint(sys._current_frames())",
        "raise_limits": "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))",
    },
}


def attempts(attacks: dict, places: dict) -> str:
    """A solution that tries each attack in turn and prints whether it was stopped."""
    blocks = [f"try:\n{textwrap.indent(code.format(**places), '    ')}\n    print('ESCAPED {name}')\n"
              f"except BaseException as error:\n    print('stopped {name}', type(error).__name__)\n"
              for name, code in attacks.items()]
    return "\n".join(blocks) + "\n\ndef task_func(x):\n    return 2 * x\n"


@pytest.mark.parametrize("group", ATTACKS)
def test_escape_attempts_fail_without_a_trace(group, places):
    terminated = []
    previous = signal.signal(signal.SIGTERM, lambda *args: terminated.append(args))
    try:
        run = run_tests(attempts(ATTACKS[group], places), TESTS)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "ESCAPED" not in run.output and "HOOKED" not in run.output, run.output
    for name in ATTACKS[group]:
        assert f"stopped {name} " in run.output, run.output
    assert run.all_passed, run.output  # the sandboxed process went on: every attempt raised inside it
    assert not os.path.exists(places["marker"]) and not os.path.exists(places["shared"])
    assert SECRET not in run.output and "root:x:0:0" not in run.output
    assert os.path.exists(places["secret"]) and not terminated


@pytest.mark.skipif(os.getuid() != 0, reason="the switch to nobody happens when started as root")
def test_root_runs_the_code_as_nobody_in_its_own_network_namespace():
    run = run_tests("import os, socket\nprint('ids', os.getuid(), os.getgid(), os.getgroups())\n"
                    "print('interfaces', [name for _, name in socket.if_nameindex()])", TESTS)
    assert "ids 65534 65534 []" in run.output
    with open("/proc/self/status") as status:  # a network namespace needs CAP_SYS_ADMIN (not in Docker)
        admin = int(next(line.split()[1] for line in status if line.startswith("CapEff")), 16) >> 21 & 1
    assert not admin or "interfaces ['lo']" in run.output


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
            preexec_fn=functools.partial(sandbox.switch_user, REGULAR_USER, sandbox._needs_read_capability()))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0 and " passed" in summary and "failed" not in summary, result.stdout[-3000:]


def test_a_process_that_cannot_be_confined_is_a_clear_error(monkeypatch):
    def fail(*args):
        raise OSError("no")

    monkeypatch.setattr(sandbox, "_confine", fail)
    with pytest.raises(LancyError, match="code sandbox could not confine"):
        run_tests("x = 1", TESTS)


def test_network_connections_are_refused():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        run = run_tests(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", TESTS)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert run.total == 0 and "sandbox: socket" in run.output


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
