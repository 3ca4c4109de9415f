"""Child processes that say on stderr when they are ready (``hopline up``'s processors).

Contract:

* :meth:`Children.start` runs each command with its stderr on a pipe, in a process
  group of its own (a terminal's Ctrl-C reaches only us: we decide when and how the
  children stop); a thread per child reads its stderr. Lines before the child's
  ready line are kept back (the last one becomes the reason if the child exits
  during start-up); after it, every line is passed on to our stderr as it comes.
* :meth:`Children.wait_ready` returns once every child printed its ready line, raises
  :class:`ChildFailed` as soon as one exits before, and ``TimeoutError`` at the deadline.
* A child that exits after it was ready, while we are not stopping, is reported in
  one ``hopline: warning:`` line.
* :meth:`Children.stop` sends SIGTERM, waits up to ``timeout`` and kills what is
  left (a Ctrl-C meanwhile kills at once); :meth:`Children.kill` kills without waiting.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time

__all__ = ["ChildFailed", "Children"]


class ChildFailed(RuntimeError):
    """A child exited during start-up; the message names it and gives its last line."""


class Children:
    """A set of child processes started together. See the module docstring."""

    def __init__(self, ready_prefix: str) -> None:
        self.ready_prefix = ready_prefix
        self.procs: list[subprocess.Popen[bytes]] = []
        self._threads: list[threading.Thread] = []
        self._ready: list[bool] = []
        self._last: list[str] = []
        self._exited: list[int | None] = []
        self._changed = threading.Condition()
        self._stopping = False

    def start(self, commands: list[list[str]], env: dict[str, str]) -> None:
        """Start one child per command, with ``env`` added to our environment."""
        for command in commands:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, **env},
                process_group=0,
            )
            index = len(self.procs)
            self.procs.append(proc)
            self._ready.append(False)
            self._last.append("")
            self._exited.append(None)
            thread = threading.Thread(target=self._watch, args=(index, proc), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._changed:
                if not self._ready[index]:
                    if line.startswith(self.ready_prefix):
                        self._ready[index] = True
                        self._changed.notify_all()
                    elif line.strip():
                        self._last[index] = line
                    continue
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        code = proc.wait()
        with self._changed:
            self._exited[index] = code
            self._changed.notify_all()
            if self._ready[index] and not self._stopping:
                sys.stderr.write(
                    f"hopline: warning: processor {index + 1} exited with code {code}\n"
                )

    def wait_ready(self, timeout: float) -> None:
        """Until every child is ready.

        Raises:
            ChildFailed: a child exited first (``"<n> exited with code <c> during
                start-up: <its last line>"``).
            TimeoutError: not all ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index, code in enumerate(self._exited):
                    if code is not None and not self._ready[index]:
                        reason = self._last[index].removeprefix("hopline: error: ")
                        raise ChildFailed(
                            f"{index + 1} exited with code {code} during start-up: "
                            f"{reason or 'no message'}"
                        )
                if all(self._ready):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._changed.wait(remaining)

    def stop(self, timeout: float) -> None:
        """SIGTERM every child, wait up to ``timeout`` seconds, then kill the rest."""
        self._stopping = True
        try:
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            deadline = time.monotonic() + timeout
            for proc in self.procs:
                try:
                    proc.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        except KeyboardInterrupt:
            self.kill()
            raise
        for thread in self._threads:  # they end with the children's stderr
            thread.join(2.0)

    def kill(self) -> None:
        """SIGKILL every child now."""
        self._stopping = True
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
