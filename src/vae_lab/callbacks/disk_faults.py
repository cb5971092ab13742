"""Stop a run at its next step once its log file could not be written.

`logging` cannot stop a run: a line its file handler fails to write (a full disk, a
directory turned read-only) is printed to stderr as a traceback, and training goes on.
While a run trains (`vae_lab.run.faults.watched`) that fault is kept instead; this callback
raises it at the end of the next training step, validation or test, where the run stops
with one line like any other fault of its disk, its last good checkpoint kept.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from vae_lab.run.faults import raise_if_met


class DiskFaultGuard(L.Callback):
    """Raises the fault the run's log file met, at the next step, validation or test end."""

    def on_train_batch_end(self, *args: Any) -> None:
        raise_if_met()

    def on_validation_end(self, *args: Any) -> None:
        raise_if_met()

    def on_test_end(self, *args: Any) -> None:
        raise_if_met()
