"""Release 1.0's CUD: the DUS recipe's registered defaults (lam_ce=0, tau_gate=0.5, rho=0.1, beta=2) on every task.

Kept beside the default ``cud`` (per-task settings) so that release 1.0's verdicts can be
compared with the faithful teacher's; docs/cud-method.md, section 7.1, shows that this
setting puts the teacher's median confidence in the paper's band on 2 of 7 tasks.
"""

import dataclasses

from cud_bench.method_defs.cud import cud
from cud_bench.methods import MethodSpec, register_method


@register_method("cud-lamce0")
def cud_lamce0() -> MethodSpec:
    return dataclasses.replace(
        cud(), name="cud-lamce0", teacher_by_task=(),
        description="CUD with release 1.0's inferred DUS setting on every task (lam_ce=0, tau_gate=0.5, rho=0.1, beta=2)",
    )
