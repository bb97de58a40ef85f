"""float32 in means float32 throughout: no float64 arithmetic in the compiled float32 kernels.

A float64 constant or accumulator inside a float32 loop (``x * 0.5``, ``s = 0.0``) shows up in the LLVM IR as
``fpext``/``double``. Cached code cannot be inspected, so a subprocess compiles into an empty cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, re
    import numpy as np
    import fastbp
    from fastbp.kernels import dense, dropout, epoch, optimizers

    assert os.environ["FASTBP_KERNELS"] == "shared"  # loss_and_gradient below compiles every branch
    f = np.float32
    p = np.ones(10, f); Z = np.ones((3, 4), f)
    model = dense.Model(
        np.array([[0, 4, 2, 8]], dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, f), np.zeros(0, np.int64),
        np.zeros(0, f), np.zeros(0, f), 0, f(0.5),
    )
    step = optimizers.Step(1, f(.5), f(.5), True, f(.5), f(.5), f(.5), f(.5))
    net = fastbp.Network([4, 5, 3], "gelu", "softmax", np.float32, dropout=0.2)
    net.initialize(0)
    net.loss_and_gradients(Z, np.eye(3, dtype=f)[[0, 1, 2]], dropout_seed=1)
    calls = [  # every branch of each dispatcher is compiled, whichever code the call takes
        (optimizers.update_range, (p, p.copy(), p.copy(), p.copy(), 0, 5, f(0), step)),
        (dropout.dropout_backward, (Z, Z.copy(), 1000, f(1.25), f(0.8), 7)),
        (dense.network_forward, (dense.ALL, Z, p, tuple(model), np.ones(6, f), 3)),
        (epoch.loss_and_gradient, None),  # compiled above: every activation, loss and dropout, forward and back
    ]
    for kernel, args in calls:
        if args is not None:
            kernel(*args)
        for ir in kernel.inspect_llvm().values():
            body, keep = [], False
            for line in ir.splitlines():
                if line.startswith("define"):  # skip the CPython wrappers that box and unbox Python floats
                    keep = "cpython" not in line and "cfunc" not in line
                if keep:
                    body.append(line)
            # float->double widening, or arithmetic/math in double (integer size checks in np.dot are fine)
            f64 = re.compile(r"fpext|\b(fadd|fsub|fmul|fdiv|frem)\b.*\bdouble\b|call .*double @(llvm|exp|log|tanh)")
            bad = [l.strip() for l in body if f64.search(l)]
            print(kernel.__name__, len(bad), bad[:2])
    """
)


def test_float32_kernels_have_no_float64_arithmetic(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4, out.stdout
    for line in lines:
        name, count = line.split()[:2]
        assert count == "0", f"float64 arithmetic in float32 {name}: {line}"
