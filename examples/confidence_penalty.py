"""A new method in one file: KD from a confidence-penalty teacher (Pereyra et al. 2017).

Register it by importing this module, or from your own package with an entry point:

    [project.entry-points."cud_bench.methods"]
    confidence-penalty = "confidence_penalty:confidence_penalty"
"""

import torch.nn.functional as F

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component, teacher_recipes


@teacher_recipes.register("confidence-penalty")
def confidence_penalty_teacher(beta: float = 0.1):
    """Cross-entropy minus beta times the predictive entropy: penalises over-confident teachers."""

    def loss(logits, labels, targets):
        log_p = F.log_softmax(logits, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(dim=-1)
        return F.nll_loss(log_p, labels) - beta * entropy.mean()

    return loss


@register_method("confidence-penalty")
def confidence_penalty() -> MethodSpec:
    return MethodSpec(
        name="confidence-penalty",
        teacher=component("teacher", "confidence-penalty", beta=0.1),
        transform=component("transform", "identity"),
        student=component("student", "kd"),
        description="confidence-penalty teacher (beta=0.1), raw targets, KD student",
    )
