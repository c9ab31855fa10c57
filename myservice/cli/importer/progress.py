"""``myservice-import``'s progress, and its Ctrl-C: a progress bar on a terminal (else a line per
batch), and an interrupt that waits for the batch being stored (``DeferredInterrupt``).
"""

import signal
import sys
from contextlib import contextmanager

from tqdm import tqdm


class DeferredInterrupt:
    """Ctrl-C (SIGINT) that waits for the end of a ``held`` block, where a batch is stored and
    counted: the batch is then stored and counted, or neither, and the summary is exact. (With
    Python's own handler the interrupt could land after the commit and before the count.) A
    second Ctrl-C during the block stops at once."""

    def __init__(self):
        self.holding = False
        self.pending = False

    def __call__(self, signum, frame):
        if not self.holding or self.pending:
            raise KeyboardInterrupt
        self.pending = True

    @contextmanager
    def installed(self):
        """SIGINT handled by this for the block; left ignored when it was (``nohup``, or a
        background job of a shell without job control)."""
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            yield self
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            raise KeyboardInterrupt


def plain_progress(importer, rows):
    totals = importer.totals
    print(f"batch {importer.batches} committed: {totals.summary()}", file=sys.stderr, flush=True)


class Bar:
    """The progress bar on a terminal. When the input's size is known it counts the bytes read
    of it, so it shows a percentage and the time left, the rows beside them; else the rows."""

    def __init__(self, lines, size):
        self.binary = lines.buffer  # its position: how far the CSV or JSON reader has read
        self.sized = size is not None
        if self.sized:
            self.bar = tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                bar_format="{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}{postfix}]",
            )
            self.bar.set_postfix_str("0 rows", refresh=False)
        else:
            self.bar = tqdm(unit=" rows", file=sys.stderr)

    def __call__(self, importer, rows):
        if self.sized:
            self.bar.set_postfix_str(f"{importer.totals.read} rows", refresh=False)
            self.bar.update(self.binary.tell() - self.bar.n)
        else:
            self.bar.update(rows)

    def close(self):
        self.bar.close()
