"""A process that forks after building tables (worker pools, data loaders): the child gets its
own copy of every array, and can go on using embtable."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embtable.memory import LAZY_BYTES, aligned_zeros

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")


def test_large_zeros_are_the_forked_childs_own_copy():
    state = aligned_zeros((LAZY_BYTES // 8 + 1,), np.float64)  # large: its own mapping
    pid = os.fork()
    if pid == 0:
        state[5] = 123.0
        os._exit(0 if state[5] == 123.0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not state.any()


def test_a_child_forked_after_a_table_was_built_can_look_rows_up():
    """GNU OpenMP cannot run a parallel region in a child forked after one ran in the
    parent: building a table must not run one (its values are drawn on plain threads)."""
    script = textwrap.dedent("""
        import os, sys
        import numpy as np
        import embtable as et
        table = et.nn.Embedding(100000, 64)
        expected = table.weight.numpy()[:5].copy()
        pid = os.fork()
        if pid == 0:
            rows = table(np.arange(50000)).numpy()
            os._exit(0 if np.array_equal(rows[:5], expected) else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
