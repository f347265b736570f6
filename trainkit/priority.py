"""The evaluator's CPU share beside other work, and a watch that says when it gets none
(no TensorFlow here).

Set before TensorFlow starts its thread pools, which then inherit it.
"""

import os
import threading
import time


AUTOGROUP = "/proc/self/autogroup"


def _stat(pid):
    """(parent pid, Unix session id as setsid sets it) of a process, from /proc; None if it
    is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def alone_in_terminal():
    """True when every other process of our terminal's Unix session (``getsid``) is one
    of our ancestors (the shell that started us, ``make``...): nothing else runs there."""
    ancestors, pid = set(), os.getppid()
    while pid > 1 and pid not in ancestors:
        ancestors.add(pid)
        stat = _stat(pid)
        pid = stat[0] if stat else 0
    terminal = os.getsid(0)
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid() or int(name) in ancestors:
            continue
        stat = _stat(name)
        if stat and stat[1] == terminal and stat[0] != os.getpid():
            return False
    return True


NICE = 19  # the lowest Unix priority: what idle and low set
STARVED_SECS = 30.0  # a busy evaluator that got no CPU for this long says why
STARVED_SHARE = 0.05  # "no CPU": under this share of one core over that time


def lower_priority(priority, exclude=()):
    """Gives this process the CPU share ``priority`` names (``config.PRIORITIES``):
    ``idle``: Linux's ``SCHED_IDLE`` class and nice 19; ``low``: nice 19; ``normal``:
    unchanged. Threads whose native ids are in ``exclude`` keep their priority.

    Every current thread is lowered (Linux keeps a nice value per thread; later ones
    inherit it), and where the kernel shares the CPU between terminals first
    (``sched_autogroup_enabled``) so is the terminal's share when nothing else runs in
    it. A nice value alone is not enough beside a trainer whose threads block and wake
    hundreds of times a step: a thread that got the core in such a gap keeps it for a
    scheduler slice.
    """
    if priority == "normal":
        return
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    threads = [thread for thread in threads if thread not in exclude]
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        for thread in threads:  # threads started later inherit the class
            try:
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            except OSError:
                pass  # a thread that ended meanwhile
    if not hasattr(os, "setpriority"):
        return
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, thread,
                           max(NICE, os.getpriority(os.PRIO_PROCESS, thread)))
        except OSError:
            pass  # a thread that ended meanwhile
    try:
        with open(AUTOGROUP) as f:  # "/autogroup-3 nice 0"
            current = int(f.read().split()[-1])
        if current < NICE and alone_in_terminal():
            with open(AUTOGROUP, "w") as f:
                f.write(str(NICE))
    except (OSError, ValueError, IndexError):
        pass  # no autogroups here


def cpu_pressure():
    """(load average over the last minute, cores this process may use)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return load, cores


def why_starved(priority):
    """Why a process at ``priority`` gets little CPU, and the remedy, in words."""
    load, cores = cpu_pressure()
    busy = (f"other processes hold the cores (load average {load:.1f} on {cores} "
            f"core{'s' if cores > 1 else ''})")
    if priority == "idle":
        return (f"{busy}, and --priority=idle runs the evaluator only on cores nothing else "
                "wants; pass --priority=low (a small share no busy process takes away) or "
                "--priority=normal, or stop the other work")
    if priority == "low":
        return f"{busy}, and --priority=low gives it a small share; pass --priority=normal"
    return f"{busy}; stop the other work, or score on a GPU of its own (--device=gpu:N)"


class CpuWatch:
    """Says when a busy process gets no CPU: called every few seconds (``check``) while
    ``busy`` is set, it reports once it has had under ``share`` of a core for ``window``
    seconds, then again only once the CPU came back and went again. The clocks are
    injectable, so tests need no sleep."""

    def __init__(self, report, window=STARVED_SECS, share=STARVED_SHARE,
                 clock=time.monotonic, cpu_time=time.process_time):
        self._report, self.window, self.share = report, window, share
        self._clock, self._cpu_time = clock, cpu_time
        self.busy = False
        self._since = None  # (wall, cpu) where the current window began
        self._reported = False

    def check(self):
        if not self.busy:
            self._since, self._reported = None, False
            return
        now, cpu = self._clock(), self._cpu_time()
        if self._since is None:
            self._since = (now, cpu)
            return
        elapsed = now - self._since[0]
        if elapsed < self.window:
            return
        used = (cpu - self._since[1]) / elapsed
        if used < self.share and not self._reported:
            self._report(elapsed, used)
            self._reported = True
        elif used >= self.share:
            self._reported = False
        self._since = (now, cpu)

    def start(self, every=5.0):
        """Runs ``check`` every ``every`` seconds in a daemon thread of its own (made before
        the process lowers its priority, and left out of it, so that it gets the CPU to
        speak); returns the thread's native id."""
        started = threading.Event()
        ids = []

        def loop():
            ids.append(threading.get_native_id())
            started.set()
            while not self._stop.wait(every):
                self.check()

        self._stop = threading.Event()
        threading.Thread(target=loop, name="cpu-watch", daemon=True).start()
        started.wait()
        return ids[0]

    def stop(self):
        if getattr(self, "_stop", None):
            self._stop.set()
