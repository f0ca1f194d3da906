"""Child processes that end with the process that started them."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

#: util-linux's setpriv; absent on systems without it, where children are not tied to us.
SETPRIV = shutil.which("setpriv")


def dies_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` wrapped so the child gets SIGTERM when its parent exits, however it exits.

    setpriv sets the parent-death signal and execs the command under the same pid. We don't use
    `preexec_fn`: Python code between fork and exec is unsafe in a process with other threads
    (gRPC's), and it aborted children (SIGABRT) under load.
    """
    if SETPRIV is None:
        return list(argv)
    return [SETPRIV, "--pdeathsig", "TERM", "--", *argv]
