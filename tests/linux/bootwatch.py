# SPDX-License-Identifier: MIT
"""Shared by the host-driven Linux boot tests (tests/linux/virtio-boot,
tests/linux/net-boot): where the VMM's threads are when a guest's console
goes quiet."""
import os
import time


class StallWatch:
    """When the console has not grown for 60 s, record where each thread
    of the VMM is (wait channel, syscall, kernel stack): a stalled guest
    and a stuck VMM look alike from the console alone."""

    def __init__(self, pid: int, after: float = 60.0):
        self.pid, self.after = pid, after
        self.size, self.since = -1, time.monotonic()
        self.lines = []

    def check(self, size: int) -> None:
        now = time.monotonic()
        if size != self.size:
            self.size, self.since = size, now
            return
        if self.lines or now - self.since < self.after:
            return
        self.lines.append(f"console silent for {now - self.since:.0f} s at {size} bytes")
        try:
            tids = sorted(os.listdir(f"/proc/{self.pid}/task"), key=int)
        except OSError:
            return
        for tid in tids:
            t = f"/proc/{self.pid}/task/{tid}"
            def rd(name: str) -> str:
                try:
                    with open(f"{t}/{name}") as f:
                        return f.read().strip()
                except OSError:
                    return "?"
            self.lines.append(f"task {tid} {rd('comm')} wchan={rd('wchan')} "
                              f"syscall={rd('syscall').split(' ')[0]} "
                              f"stat={rd('stat').rsplit(')', 1)[-1].split()[0:1]}")
            self.lines += ["    " + x for x in rd("stack").splitlines()[:8]]

    def report(self, log) -> None:
        for line in self.lines:
            log(f"stall: {line}")
