"""CrossPoint losses: NT-Xent, the combined intra-modal (IMID) + cross-modal (CMID) objective, and the
label-smoothed cross-entropy of the fine-tuning scripts.

Pure functions on embedding batches. The similarity and the softmax are computed in at least
float32 with autocast disabled, so the losses are safe inside fp16/bf16 autocast regions.
"""

import torch
import torch.nn.functional as F


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalized-temperature cross-entropy (SimCLR / lightly ``NTXentLoss``) between paired rows.

    With cosine similarities s(u, v) / t over the 2N embeddings {a_1..a_N, b_1..b_N}, the loss of
    anchor a_i is ``-log(exp(s(a_i, b_i)/t) / sum_{v != a_i} exp(s(a_i, v)/t))``: the denominator
    holds every b_k (the positive included) and every a_k with k != i (2N - 1 terms); symmetrically
    for anchor b_i. The result is the mean over all 2N anchors (both directions).

    Args:
        a: (N, D) embeddings of the first view.
        b: (N, D) embeddings of the second view; row i of ``a`` and ``b`` form the positive pair.
        temperature: softmax temperature t (paper: 0.1).
    Returns:
        Scalar loss in float32 (float64 if the inputs are float64).
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            "models/losses.py: nt_xent needs two (N, D) tensors of equal shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    n = a.shape[0]
    if n < 1:
        raise ValueError("models/losses.py: nt_xent needs at least one pair.")
    # Differs from the original (lightly's NTXentLoss computes in the input dtype): at least float32,
    # autocast off, so fp16/bf16 training cannot overflow the 1/t-scaled logits.
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    with torch.autocast(device_type=a.device.type, enabled=False):
        z = F.normalize(torch.cat((a, b), dim=0).to(dtype), dim=1)  # (2N, D)
        logits = z @ z.t() / temperature  # (2N, 2N)
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # (2N, 2N)
        logits = logits.masked_fill(self_mask, float("-inf"))
        rows = torch.arange(n, device=z.device)  # (N,)
        targets = torch.cat((rows + n, rows))  # (2N,): a_i's positive is b_i and vice versa
        return F.cross_entropy(logits, targets)


def crosspoint_loss(
    z1: torch.Tensor, z2: torch.Tensor, h: torch.Tensor, temperature: float = 0.1
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CrossPoint objective L = L_imid + L_cmid.

    Args:
        z1: (N, D) projected embeddings of the first augmented point cloud.
        z2: (N, D) projected embeddings of the second augmented point cloud.
        h: (N, D) projected embeddings of the rendered images.
        temperature: NT-Xent temperature (paper: 0.1).
    Returns:
        (total, {"imid": nt_xent(z1, z2), "cmid": nt_xent((z1 + z2) / 2, h)}), all scalars.
    """
    imid = nt_xent(z1, z2, temperature)
    cmid = nt_xent((z1 + z2) / 2, h, temperature)
    return imid + cmid, {"imid": imid, "cmid": cmid}


def smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """Label-smoothed cross-entropy of the original ``cal_loss`` (DGCNN / CrossPoint classification and part
    segmentation).

    The target distribution puts ``1 - eps`` on the true class and ``eps / (P - 1)`` on each other
    class (the original's smoothing; ``eps = 0`` is the plain cross-entropy), averaged over all targets.

    Args:
        logits: (B, P) class logits, or (B, P, N) per-point part logits.
        target: (B,) or (B, N) int64 indices in [0, P).
        eps: smoothing (paper: 0.2).
    Returns:
        scalar loss in the logits' dtype (float32 for half-precision logits).
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    num_parts = logits.shape[1]
    log_prob = F.log_softmax(logits, dim=1)  # (B, P[, N])
    nll = -log_prob.gather(1, target.unsqueeze(1)).squeeze(1)  # (B[, N])
    if eps == 0.0:
        return nll.mean()
    # sum_p q_p * -log p_p with q = (1 - eps) on the target and eps / (P - 1) elsewhere.
    others = -log_prob.sum(dim=1) - nll  # (B[, N])
    return ((1.0 - eps) * nll + eps / (num_parts - 1) * others).mean()
