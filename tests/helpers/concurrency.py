"""Running steps at the same moment: each call in its own thread, released together by a barrier."""
from __future__ import annotations

import threading


def run_together(*calls):
    """Call each of ``calls`` in its own thread, all released at once; their results, in order.
    Any error in a thread fails the test after all have finished."""
    barrier = threading.Barrier(len(calls))
    errors, results = [], [None] * len(calls)

    def run(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except BaseException as error:       # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results
