"""What a worker does to itself before any student code runs: what the operating system permits
of namespaces, private mounts, cgroups, resource limits and privileges. Each step reports what
held; the grader records it in the results (`extra.isolation`).

On Linux as root (a grading machine, a Gradescope container, CI):
- its own PID namespace (it cannot see or signal any process outside) and network namespace (no
  network; abstract Unix sockets are per network namespace too);
- its own mount namespace in which the whole file system is read-only, the course's hidden
  folders are empty, and /tmp, /dev/shm and /dev are its own: /tmp and /dev/shm are small private
  tmpfs (nothing written there outlives the worker or is seen by another), /dev holds only null,
  zero, full, random and urandom (and the NVIDIA nodes for a CUDA worker);
- a /proc of copied files (cpuinfo, meminfo, ...), so that no process's memory or file
  descriptors are reachable through /proc/<pid>/ (a CUDA worker gets a real /proc of its own PID
  namespace: the driver reads it);
- a pids and a memory cgroup of its own; rlimits; no capabilities; no new privileges.
Elsewhere it keeps what it can (rlimits) and says what did not hold.

Standard library only (ctypes for the system calls).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import shutil
import signal

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 8192, 16384, 1 << 18)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

SCRATCH = "/tmp/work"  # the worker's working directory and HOME, inside its private /tmp
DEVICES = ("null", "zero", "full", "random", "urandom")
CUDA_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
PROC_FILES = ("cpuinfo", "meminfo", "version", "uptime", "loadavg", "stat", "filesystems", "swaps",
              "sys/kernel/ostype", "sys/kernel/osrelease", "sys/kernel/pid_max", "sys/vm/overcommit_memory")


def _bytes(value):
    return value.encode() if isinstance(value, str) else value


def mount(source, target, fstype=None, flags=0, data=None) -> bool:
    return LIBC.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) == 0


def die_with_parent() -> bool:
    """SIGKILL this process when its parent ends (it is forked from a single-threaded parent)."""
    parent = os.getppid()
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent  # the parent did not end before the request took effect


# cgroups (joined by the worker before it enters its namespaces) --------------------------------

def cgroup_paths(name: str) -> list[str]:
    """The folders of a worker's cgroups, under each hierarchy it may have joined."""
    return [os.path.join(base, "autograder", name) for base in
            ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")]


def join_cgroups(name: str, limits: dict) -> dict:
    """Put this process in its own pids (and memory) cgroup, v1 or v2, where /sys/fs/cgroup is
    writable: a fork bomb then stops at pids.max instead of filling the machine's process table."""
    joined = {}
    candidates = [("pids", "/sys/fs/cgroup/pids", {"pids.max": str(limits["processes"])}),
                  ("memory", "/sys/fs/cgroup/memory", {"memory.limit_in_bytes": str(limits["memory_bytes"])}),
                  ("unified", "/sys/fs/cgroup/unified", {"pids.max": str(limits["processes"])}),
                  ("v2", "/sys/fs/cgroup", {"pids.max": str(limits["processes"]),
                                            "memory.max": str(limits["memory_bytes"])})]
    for label, base, settings in candidates:
        if not os.path.isdir(base) or (label == "v2" and not os.path.exists(base + "/cgroup.controllers")):
            continue
        path = os.path.join(base, "autograder", name)
        try:
            os.makedirs(path, exist_ok=True)
            written = []
            for key, value in settings.items():
                if os.path.exists(os.path.join(path, key)):
                    with open(os.path.join(path, key), "w") as handle:
                        handle.write(value)
                    written.append(key)
            if not written:
                continue
            with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))
            joined[label] = written
        except OSError:
            continue
    return joined


# namespaces -----------------------------------------------------------------------------------

def enter_namespaces() -> dict:
    """New mount, PID and network namespaces (all three, or the network one alone)."""
    if LIBC.unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID) == 0:
        return {"namespaces": True, "network": True}
    return {"namespaces": False, "network": LIBC.unshare(CLONE_NEWNET) == 0}


# the file system (process 1 of the new PID namespace, still with its capabilities) ------------

def _tmpfs(target: str, size: str, mode: str = "755") -> bool:
    return mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")


def _private_dev(cuda: bool) -> bool:
    """/dev with the few device nodes a worker needs and a private /dev/shm."""
    stage = "/tmp/.dev"
    os.makedirs(stage)
    if not _tmpfs(stage, "1m"):
        return False
    names = list(DEVICES)
    if cuda:
        names += [n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()] + list(CUDA_DEVICES)
    for name in names:
        if not os.path.exists("/dev/" + name):
            continue
        open(os.path.join(stage, name), "w").close()
        if not mount("/dev/" + name, os.path.join(stage, name), None, MS_BIND):
            return False
    os.makedirs(stage + "/shm")
    if not _tmpfs(stage + "/shm", "64m", "1777"):
        return False
    if not mount(stage, "/dev", None, MS_MOVE):
        return False
    os.rmdir(stage)
    return mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def _copied_proc() -> str | None:
    """A tmpfs holding copies of a few /proc files, ready to be moved over /proc."""
    stage = "/tmp/.proc"
    os.makedirs(stage)
    if not _tmpfs(stage, "4m"):
        return None
    for name in PROC_FILES:
        try:
            with open("/proc/" + name, "rb") as source:
                data = source.read()
        except OSError:
            continue
        os.makedirs(os.path.dirname(os.path.join(stage, name)), exist_ok=True)
        with open(os.path.join(stage, name), "wb") as target:
            target.write(data)
    return stage


def isolate_filesystem(hide: list[str], cuda: bool) -> dict:
    """Private /tmp, /dev, /dev/shm and /proc; hidden folders; everything else read-only."""
    held = {}
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    held["private_tmp"] = _tmpfs("/tmp", "512m", "1777")
    if not held["private_tmp"]:
        return held
    held["private_dev"] = _private_dev(cuda)
    proc = None if cuda else _copied_proc()
    hidden = []
    for path in hide:
        if os.path.isdir(path):
            ok = mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=000")
        elif os.path.exists(path):
            ok = mount("/dev/null", path, None, MS_BIND)
        else:
            ok = True
        if ok:
            hidden.append(path)
    held["hidden"] = sorted(hidden)
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    writable = ("/tmp", "/dev/shm", "/dev", "/proc")
    failed = [p for p in points if not p.startswith(writable)
              and not mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)]
    held["read_only"] = not failed
    if proc is not None:
        held["proc"] = "copied files" if mount(proc, "/proc", None, MS_MOVE) else "host"
        if held["proc"] == "copied files":
            os.rmdir(proc)
            mount(None, "/proc", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    else:
        held["proc"] = ("own PID namespace" if mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                        else "host")
    os.makedirs(SCRATCH)
    return held


def fallback_scratch(scratch: str) -> None:
    """Without a mount namespace: the scratch folder the grader made, emptied."""
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch, exist_ok=True)


# limits and privileges ------------------------------------------------------------------------

def limit_resources(limits: dict, pids_cgroup: bool) -> dict:
    held = {}
    settings = [("RLIMIT_AS", limits["memory_bytes"]), ("RLIMIT_CPU", limits["cpu_seconds"]),
                ("RLIMIT_FSIZE", limits["file_bytes"]), ("RLIMIT_CORE", 0)]
    if not pids_cgroup:
        # RLIMIT_NPROC counts every process of the user on the machine (all of root's, as root),
        # so it is a coarse fallback, set well above what is running now.
        running = sum(name.isdigit() for name in os.listdir("/proc")) if os.path.isdir("/proc") else 0
        settings.append(("RLIMIT_NPROC", running + limits["processes"]))
    for name, value in settings:
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            held[name] = value
        except (ValueError, OSError):
            held[name] = None
    return held


def drop_privileges() -> dict:
    """As root: keep uid 0 (the Python installation may be readable by root alone, as under /root)
    but without any capability, so no remount, unmount, chmod of others' files or kill outside the
    PID namespace; then no new privileges (no setuid binary can give them back)."""
    held = {}
    if os.geteuid() == 0:
        for capability in range(64):
            LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        held["user"] = "root without capabilities" if LIBC.capset(header, data) == 0 else "root"
    else:
        held["user"] = f"uid {os.getuid()}"
    held["no_new_privileges"] = LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no core file, no ptrace from outside
    return held
