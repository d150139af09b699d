"""Running generated code for rewards: a separate, isolated Python process that cannot do harm.

The child runs `python -I` (no site, no environment, no user paths) in an empty temporary folder, with
resource limits (CPU seconds, memory, file size, no new processes) and a wall-clock timeout. Before the
code runs, an audit hook (which Python code cannot remove) refuses network sockets, subprocesses,
`os.system`/exec and opening files for writing outside that folder.
"""
import os
import resource
import subprocess
import sys
import tempfile

GUARD = r'''
import os, sys
_root = os.getcwd()
def _guard(event, args):
    if event.startswith(("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.fork", "pty.")):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
        writes = (set(mode) & set("wax+")) if isinstance(mode, str) else (flags or 0) & write_flags
        if writes and not os.path.realpath(os.fsdecode(path) if path is not None else "/").startswith(_root):
            raise PermissionError(f"sandbox: writing {path!r} is not allowed")
    if event in ("os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.chmod", "os.mkdir"):
        if not os.path.realpath(args[0]).startswith(_root):
            raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")
sys.addaudithook(_guard)
del _guard
'''


def _limits(cpu_seconds: int, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    if os.getuid() != 0:  # root is exempt from NPROC; the audit hook still refuses new processes
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def run_code(code: str, timeout: float = 5.0, memory_mb: int = 512) -> tuple[bool, str]:
    """(whether the code ran to completion without an error, its last output lines)."""
    with tempfile.TemporaryDirectory(prefix="lancy-sandbox-") as folder:
        program = os.path.join(folder, "program.py")
        with open(program, "w") as f:
            f.write(GUARD + "\n" + code)
        try:
            result = subprocess.run(
                [sys.executable, "-I", program], cwd=folder, capture_output=True, text=True, timeout=timeout,
                env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                preexec_fn=lambda: _limits(int(timeout) + 1, memory_mb << 20),
            )
        except subprocess.TimeoutExpired:
            return False, "timeout"
    return result.returncode == 0, (result.stdout + result.stderr)[-500:]
