"""Thread pools whose every wait by the main thread is timed, so Ctrl-C always stops a command.

Python runs a signal handler only in the main thread, and only between bytecodes; the kernel
hands a SIGINT to any thread that does not block it. When it lands in a worker (a hashing
thread, fsspec's event loop), the main thread, if blocked in an untimed wait on that worker
(`Future.result()`, `Executor.map`, `Queue.get()`, the `with` block's shutdown), never returns to
run the handler: the command ignores Ctrl-C until the work ends (hostile pass 9, K3). Waits of
STEP seconds in a loop return to the interpreter that often, so the handler runs within STEP.
"""

import queue
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

#: The longest the main thread waits on a worker before letting a signal handler run.
STEP = 0.25


def result(future: Future):
    """The future's result (or its exception raised), waited for in STEP-second steps."""
    while not wait([future], timeout=STEP).done:
        pass
    return future.result()


def take(items: queue.Queue):
    """The next item of a queue, waited for in STEP-second steps."""
    while True:
        try:
            return items.get(timeout=STEP)
        except queue.Empty:
            continue


class Workers:
    """A ThreadPoolExecutor used as one: `submit`, `map` (a list, in order) and a `with` block
    whose end cancels the tasks not begun and waits for the running ones in STEP steps (the
    executor's own shutdown joins its threads untimed)."""

    def __init__(self, count: int | None = None):
        self._pool = ThreadPoolExecutor(count)
        self._pending: list[Future] = []  # not done when submitted; done ones are dropped

    def submit(self, fn: Callable, *args) -> Future:
        self._pending = [f for f in self._pending if not f.done()]
        future = self._pool.submit(fn, *args)
        self._pending.append(future)
        return future

    def map(self, fn: Callable, *iterables: Iterable) -> list:
        """`fn` over the iterables' items on the pool, in order; the first failure is raised as
        soon as it happens, not when the items before it are done."""
        futures = [self.submit(fn, *args) for args in zip(*iterables, strict=True)]
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=STEP, return_when=FIRST_EXCEPTION)
            for future in done:
                if not future.cancelled() and future.exception() is not None:
                    raise future.exception()
        return [f.result() for f in futures]

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *_exc) -> None:
        for future in self._pending:
            future.cancel()
        while wait(self._pending, timeout=STEP).not_done:
            pass
        self._pool.shutdown()  # every task has ended: the threads exit at once
