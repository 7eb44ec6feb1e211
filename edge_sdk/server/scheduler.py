"""One generation at a time: a thread that owns the model, fed from a bounded queue of `Job`s.

The event loop never runs the model. Each generation request becomes a `Job`: a function the model thread
calls with the job, which reports back through `emit` (events put on an asyncio queue of the request's event
loop). At most `queue_max` jobs wait behind the running one; `submit` refuses the next with a 503 whose
Retry-After is the recent mean job time times the jobs ahead. A job whose client left is `abandon`ed: taken
out of the queue if it still waits, or cancelled (its `cancel` event is the `threading.Event` the model
checks before every token) if it runs, so the model is free again within one token.

`close(grace)` (SIGTERM): waiting jobs are refused with 503, the running one gets `grace` seconds to finish
before it is cancelled (marked `cut_by_shutdown`), and the thread ends.

Example::

    sched = Scheduler(queue_max=8)
    job = Job(lambda j: j.emit("end", model.generate("Hi", cancel=j.cancel)), asyncio.get_running_loop())
    sched.submit(job)                 # or APIError(503) when 1 + 8 jobs are already in
    kind, value = await job.next()    # ("end", "...")
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from typing import Any, Callable

from .errors import unavailable

log = logging.getLogger("edge_sdk.server")

RECENT_JOBS = 8  # job times the Retry-After estimate averages


class ClientGone(Exception):
    """The client of a job disconnected before it ended."""


class Job:
    """One request's work for the model thread, and the events it sends back to its event loop."""

    def __init__(self, work: Callable[["Job"], None], loop: asyncio.AbstractEventLoop | None) -> None:
        """`loop`: the event loop of the request to report to; None for work no request waits for."""
        self.work = work
        self.loop = loop
        self.cancel = threading.Event()  # set: stop within one token
        self.cut_by_shutdown = False
        self.state = "new"  # new -> waiting -> running -> done | abandoned | refused
        self.finished = threading.Event()  # the model thread is done with it (the model is free of it)
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def emit(self, kind: str, value: Any = None) -> None:
        """Send an event to the request (from any thread); a loop that is gone cancels the job."""
        if self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:
            self.cancel.set()

    async def next(self) -> tuple[str, Any]:
        return await self._events.get()


class Scheduler:
    """A model thread running one `Job` at a time, with at most `queue_max` waiting."""

    def __init__(self, queue_max: int) -> None:
        self.queue_max = queue_max
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self.running: Job | None = None
        self.closing = False
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT_JOBS)
        self._thread = threading.Thread(target=self._run, name="edge-sdk-model", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting (not the running one)."""
        return len(self._waiting)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the recent mean job time for each job ahead, 1..60."""
        mean = sum(self._recent) / len(self._recent) if self._recent else 1.0
        return int(min(60, max(1, math.ceil(mean * (len(self._waiting) + 1)))))

    def submit(self, job: Job) -> None:
        with self._cond:
            if self.closing:
                raise unavailable("the server is shutting down", "shutting_down")
            if len(self._waiting) + (self.running is not None) >= 1 + self.queue_max:
                raise unavailable(f"the server is busy: {len(self._waiting)} requests are waiting (the queue holds "
                                  f"{self.queue_max}); retry later", "queue_full", self.retry_after())
            job.state = "waiting"
            self._waiting.append(job)
            self._cond.notify_all()

    def abandon(self, job: Job) -> None:
        """The client left: drop the job from the queue, or cancel it if it runs."""
        job.cancel.set()
        with self._cond:
            if job.state == "waiting":
                self._waiting.remove(job)
                job.state = "abandoned"
                job.finished.set()
                job.emit("error", ClientGone())

    def close(self, grace: float) -> None:
        """Refuse what waits, give the running job `grace` seconds, then cancel it; the thread then ends."""
        with self._cond:
            if self.closing:
                return
            self.closing = True
            refused = list(self._waiting)
            self._waiting.clear()
            running = self.running
            self._cond.notify_all()
        for job in refused:
            job.state = "refused"
            job.finished.set()
            job.emit("error", unavailable("the server is shutting down", "shutting_down"))
        if running is not None:
            def cut() -> None:
                if not running.finished.is_set():
                    running.cut_by_shutdown = True
                    running.cancel.set()

            timer = threading.Timer(grace, cut)
            timer.daemon = True
            timer.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the model thread to end (after `close`); whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self.closing:
                    self._cond.wait()
                if not self._waiting:
                    return
                job = self._waiting.popleft()
                job.state = "running"
                self.running = job
            t0 = time.perf_counter()
            try:
                job.work(job)
            except BaseException as e:  # noqa: BLE001 - every failure goes back to its request, none kills the thread
                if not isinstance(e, Exception):
                    log.error("generation thread: %r", e)
                job.emit("error", e)
            finally:
                with self._cond:
                    self.running = None
                    job.state = "done"
                    self._recent.append(time.perf_counter() - t0)
                job.finished.set()
