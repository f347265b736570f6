"""The evaluator's CPU priority: below a trainer on the same cores (no TensorFlow here).

Set before TensorFlow starts its thread pools, which then inherit it.
"""

import os


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


def lower_priority(nice, idle=False):
    """Lowers this process's CPU priority by the Unix ``nice`` value (1-19) and, with
    ``idle``, puts it in Linux's ``SCHED_IDLE`` class.

    ``SCHED_IDLE`` threads run only when a core has nothing else to do, and
    the kernel switches to a normal thread the moment one wakes up. A nice
    value alone is not enough beside a TensorFlow trainer, whose threads
    block and wake hundreds of times a step: a low-priority thread that got
    the core in such a gap keeps it for up to a scheduler slice (some
    milliseconds), and the trainer waits each time.

    Linux keeps a nice value per thread, so every current thread is lowered
    (threads started later inherit it). Where the kernel shares the CPU
    between terminals first (``sched_autogroup_enabled``: one group per Unix
    session), a nice value only orders processes within one terminal: an
    evaluator in its own terminal would still take a whole core from a
    trainer in another one. So, when nothing but its own ancestors runs in
    its terminal, the evaluator also lowers that terminal's share
    (``/proc/self/autogroup``;
    docs/speed.md has what each setting took). Where none of this exists,
    nothing changes.
    """
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    if idle and hasattr(os, "SCHED_IDLE"):
        for thread in threads:  # threads started later inherit the class
            try:
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            except OSError:
                pass  # a thread that ended meanwhile
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, thread,
                           max(nice, os.getpriority(os.PRIO_PROCESS, thread)))
        except OSError:
            pass  # a thread that ended meanwhile
    try:
        with open(AUTOGROUP) as f:  # "/autogroup-3 nice 0"
            current = int(f.read().split()[-1])
        if current < nice and alone_in_terminal():
            with open(AUTOGROUP, "w") as f:
                f.write(str(nice))
    except (OSError, ValueError, IndexError):
        pass  # no autogroups here
