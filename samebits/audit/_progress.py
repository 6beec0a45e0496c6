"""A progress bar on stderr for long audits: tqdm when installed and stderr is a
terminal, nothing otherwise (so pipes, JSON output and tests stay clean)."""

from __future__ import annotations

import sys


class Progress:
    def __init__(
        self, total: int, quiet: bool, desc: str = "samebits audit", unit: str = "run"
    ) -> None:
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=total or None, desc=desc, unit=unit, file=sys.stderr, leave=False
                )
            except ImportError:
                pass

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
