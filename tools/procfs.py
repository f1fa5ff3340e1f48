"""Local processes and ports for the benchmarks and tests.

What /proc says about a process, a free loopback port, and stopping a process we started.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_mib(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field)) / 1024
    )


def peak_rss_mib(pid: int) -> float:
    """The largest resident set of a running process so far (VmHWM)."""
    return _status_mib(pid, "VmHWM:")


def rss_mib(pid: int) -> float:
    """The resident set of a running process now (VmRSS)."""
    return _status_mib(pid, "VmRSS:")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM a process we started, wait for it, SIGKILL it if it lingers past `timeout`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
