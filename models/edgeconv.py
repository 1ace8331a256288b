"""EdgeConv building blocks shared by the DGCNN encoders.

The plain formulation (``impl="plain"``) is the one of the original DGCNN/CrossPoint code: it
materializes the (B, 2C, N, k) edge tensor ``concat(x_j - x_i, x_i)``, applies a 1x1 conv,
BatchNorm and LeakyReLU, and takes the max over the k neighbours. It is kept as the reference
for tests and benchmarks.

The fast formulation (``impl="fast"``) computes the same function without any (B, C, N, k) tensor:

- Weight split: W [x_j - x_i; x_i] = W1 x_j + (W2 - W1) x_i, so with per-point A = W1 x and
  B = (W2 - W1) x (+ bias) every edge value is y_ij = A_nbr(i,j) + B_i.
- BatchNorm statistics over all (batch, i, j) edges follow from per-point sums:
  sum y = sum_p indeg(p) A_p + k sum_i B_i and
  sum y^2 = sum_p indeg(p) A_p^2 + 2 sum_i B_i S_i + k sum_i B_i^2, with S_i = sum_j A_nbr(i,j),
  evaluated on centred A and B for numerical stability.
- BN affine + LeakyReLU is monotonic per channel with the sign of gamma, so
  max_j f(y_ij) = f(max_j A_nbr(i,j) + B_i) for gamma >= 0 and f(min_j ...) for gamma < 0: one
  max over sign(gamma) * A gives every channel.
- A custom autograd function saves the selected neighbour slot per (point, channel) and scatters
  gradients through it; the terms through the batch statistics use the same per-point sums.
- Neighbour sums are bag sums (``embedding_bag``), not a sparse matrix: duplicate neighbours would
  break the CSR rule of sorted, distinct columns per row. Nothing in the forward or backward waits
  for the device: no data-dependent branch, shape or .item().
- With a sync BatchNorm (:mod:`models.sync_bn`, ``--sync_bn``) in training mode under a process
  group, the per-rank moments are pooled by one all-reduce in the forward pass and the per-channel
  gradient sums by one all-reduce in the backward pass, as ``nn.SyncBatchNorm`` does.

:func:`knn` (used by both) computes the original neighbour choice without autograd, in chunks of
clouds, with a faster CPU top-k; :func:`knn_plain` is the original expression.
"""

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from models.sync_bn import combine_moments, gather_rows, running_update_factor, sync_group, update_running_stats


def knn_plain(x: torch.Tensor, k: int) -> torch.Tensor:
    """kNN as written in the original DGCNN code (reference for tests and benchmarks), in float32.

    Under autocast the distances are still computed in float32 (or float64 for float64 input).

    Args:
        x: (B, C, N) point features.
        k: number of neighbours.
    Returns:
        (B, N, k) int64 indices into the N points, nearest first.
    """
    # Differs from the original (which never ran under autocast): the distances are computed in
    # at least float32 under autocast, as in knn; half precision changes ~10% of neighbour sets.
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        inner = -2 * torch.matmul(x.transpose(2, 1), x)  # (B, N, N)
        xx = torch.sum(x**2, dim=1, keepdim=True)  # (B, 1, N)
        neg_sq_dist = -xx - inner - xx.transpose(2, 1)  # (B, N, N)
        return neg_sq_dist.topk(k=k, dim=-1)[1]  # (B, N, k)


_KNN_CHUNK_ELEMS = 1 << 22  # at most this many (i, j) scores (16 MiB in float32) exist at once on CPU
_KNN_CHUNK_ELEMS_ACCEL = 1 << 26  # on GPUs (256 MiB): fewer, larger launches
_KNN_BLOCK = 8  # candidates per block of the CPU block-max preselection


def _topk_blocked(score: torch.Tensor, k: int) -> torch.Tensor:
    """Row-wise top-k indices of score (R, N) via a block-max preselection (exact up to ties).

    The N columns form G = N / T blocks of T columns (block g = columns g, g + G, g + 2G, ...).
    Every one of a row's k largest values lies in one of the k blocks with the largest block
    maxima (a block outside them has k blocks with larger maxima, i.e. k larger values), so the
    top-k over those k * T candidates is the top-k of the row. Two small top-ks replace one over N
    columns, which PyTorch's CPU top-k does at a high per-row cost.

    Args:
        score: (R, N) scores with N divisible by T and N / T >= k.
        k: number of indices per row.
    Returns:
        (R, k) int64 column indices, largest score first.
    """
    num_rows, num_cols = score.shape
    groups = num_cols // _KNN_BLOCK
    block_max = score.view(num_rows, _KNN_BLOCK, groups).amax(dim=1)  # (R, G)
    top_blocks = block_max.topk(k=k, dim=-1, sorted=False)[1]  # (R, k)
    offsets = groups * torch.arange(_KNN_BLOCK, device=score.device)  # (T,)
    cand = (top_blocks.unsqueeze(-1) + offsets).view(num_rows, k * _KNN_BLOCK)  # (R, k*T) columns
    best = score.gather(1, cand).topk(k=k, dim=-1)[1]  # (R, k) positions in cand
    return cand.gather(1, best)  # (R, k)


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k nearest neighbours of every point, the point itself included.

    Same choice as :func:`knn_plain` (top-k of the negative squared distance), computed without
    autograd and with one score buffer per chunk of clouds: the row constant -|x_i|^2 does not
    change the ranking of row i, so the score is 2 x_i.x_j - |x_j|^2 (one bmm). Rounding can
    differ from :func:`knn_plain` in the last bits, so exact near-ties may be ordered differently.
    Under autocast the scores are still computed in float32 (or float64 for float64 input).

    On CPU the top-k is accelerated: with N divisible by 8 and N >= 16 k by a block-max
    preselection (:func:`_topk_blocked`), otherwise by padding rows shorter than 64 k with -inf
    (PyTorch's CPU top-k switches from a per-row nth_element to a faster partial sort at that
    length). Both select the same neighbours (up to exact ties).

    Args:
        x: (B, C, N) point features.
        k: number of neighbours.
    Returns:
        (B, N, k) int64 indices into the N points, nearest first.
    """
    batch_size, _, num_points = x.shape
    if not 1 <= k <= num_points:
        raise ValueError(f"models/edgeconv.py: knn needs 1 <= k <= N, got k={k} and N={num_points}.")
    on_cpu = x.device.type == "cpu"
    blocked = on_cpu and num_points % _KNN_BLOCK == 0 and num_points // _KNN_BLOCK >= 2 * k
    # Differs from the original: the same ranking (top-k of -|x_i - x_j|^2) up to rounding; the
    # original builds it from several (B, N, N) temporaries with autograd recording.
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        # Scores in at least float32 even under autocast: half precision would blur the ranking.
        x = x.detach().to(torch.promote_types(x.dtype, torch.float32))
        # score_ij = [x_i; 1] . [2 x_j; -|x_j|^2]: one bmm, no broadcast copy of |x_j|^2.
        queries = torch.cat((x, torch.ones_like(x[:, :1])), dim=1).transpose(2, 1)  # (B, N, C+1)
        keys = torch.cat((2 * x, -x.square().sum(dim=1, keepdim=True)), dim=1)  # (B, C+1, N)
        row_len = num_points
        if on_cpu and not blocked and 64 * k > num_points:
            # Pad the candidates with [0; -inf] columns: score -inf, never selected.
            row_len = 64 * k
            keys = F.pad(keys, (0, row_len - num_points))  # (B, C+1, L)
            keys[:, -1, num_points:] = float("-inf")
        chunk_elems = _KNN_CHUNK_ELEMS if on_cpu else _KNN_CHUNK_ELEMS_ACCEL
        clouds = min(batch_size, max(1, chunk_elems // (num_points * row_len)))
        idx = torch.empty(batch_size, num_points, k, dtype=torch.long, device=x.device)
        top_scores = x.new_empty(clouds, num_points, k)  # (b, N, k) unused top-k values
        for start in range(0, batch_size, clouds):
            stop = min(start + clouds, batch_size)
            score = torch.bmm(queries[start:stop], keys[start:stop])  # (b, N, L)
            if blocked:
                rows = score.view((stop - start) * num_points, num_points)  # (b*N, N)
                idx[start:stop] = _topk_blocked(rows, k).view(stop - start, num_points, k)  # (b, N, k)
            else:
                torch.topk(score, k=k, dim=-1, out=(top_scores[: stop - start], idx[start:stop]))  # (b, N, k)
        return idx


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Neighbour features x_j for every (point i, neighbour slot j).

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
    Returns:
        (B, C, N, k) tensor with out[b, :, i, j] = x[b, :, idx[b, i, j]].
    """
    batch_size, num_dims, num_points = x.shape
    k = idx.shape[-1]
    base = torch.arange(batch_size, device=x.device).view(-1, 1, 1) * num_points  # (B, 1, 1)
    flat_idx = (idx + base).reshape(-1)  # (B*N*k,)
    x_t = x.transpose(2, 1).reshape(batch_size * num_points, num_dims)  # (B*N, C)
    nbr = x_t[flat_idx].view(batch_size, num_points, k, num_dims)  # (B, N, k, C)
    return nbr.permute(0, 3, 1, 2)  # (B, C, N, k)


def graph_feature(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Edge features concat(x_j - x_i, x_i) of the original DGCNN.

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
    Returns:
        (B, 2C, N, k) edge features.
    """
    k = idx.shape[-1]
    nbr = gather_neighbors(x, idx)  # (B, C, N, k)
    center = x.unsqueeze(-1).expand(-1, -1, -1, k)  # (B, C, N, k)
    return torch.cat((nbr - center, center), dim=1)  # (B, 2C, N, k)


def edge_conv_plain(
    x: torch.Tensor,
    idx: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """Reference EdgeConv: max_j LeakyReLU(BN(conv(concat(x_j - x_i, x_i)))).

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
        conv: 1x1 ``nn.Conv2d(2C, C_out, bias=False)``.
        bn: ``nn.BatchNorm2d(C_out)``; train/eval mode is taken from the module.
        negative_slope: LeakyReLU slope (original: 0.2).
    Returns:
        (B, C_out, N) features.
    """
    edge = graph_feature(x, idx)  # (B, 2C, N, k)
    y = F.leaky_relu(bn(conv(edge)), negative_slope)  # (B, C_out, N, k)
    return y.max(dim=-1)[0]  # (B, C_out, N)


_MAX_CHUNK_ELEMS = 1 << 20  # gathered neighbour values held at once by the fast max on CPU (4 MiB in float32)
_MAX_CHUNK_ELEMS_ACCEL = 1 << 24  # on GPUs (64 MiB in float32): fewer, larger launches


def _check_modules(x: torch.Tensor, idx: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> None:
    """Raise a clear error when conv/bn/idx do not describe a 1x1 EdgeConv on x."""
    if x.dim() != 3 or idx.dim() != 3 or idx.shape[:2] != (x.shape[0], x.shape[2]):
        raise ValueError(
            f"models/edgeconv.py: expected x (B, C, N) and idx (B, N, k), got x {tuple(x.shape)} and "
            f"idx {tuple(idx.shape)}."
        )
    if not isinstance(conv, nn.Conv2d) or (
        conv.kernel_size != (1, 1)
        or conv.stride != (1, 1)
        or conv.padding not in ((0, 0), "valid")
        or conv.dilation != (1, 1)
        or conv.groups != 1
        or conv.in_channels != 2 * x.shape[1]
    ):
        raise ValueError(
            "models/edgeconv.py: the fast EdgeConv needs a 1x1 nn.Conv2d(2C, C_out) with stride 1, no "
            f"padding and groups=1 on C={x.shape[1]} input channels, got {conv!r}; use impl='plain' for "
            "other layers."
        )
    if bn is not None and (not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.num_features != conv.out_channels):
        raise ValueError(
            f"models/edgeconv.py: the fast EdgeConv needs a BatchNorm over the {conv.out_channels} conv "
            f"outputs, got {bn!r}."
        )


def _split_conv(x: torch.Tensor, conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point halves of the EdgeConv conv: A = W1 x and B = (W2 - W1) x (+ bias).

    Args:
        x: (B, C, N) point features.
        conv: 1x1 ``nn.Conv2d(2C, C_out)`` acting on concat(x_j - x_i, x_i).
    Returns:
        a, b: (B*N, C_out) each, rows ordered (batch, point).
    """
    batch_size, num_dims, num_points = x.shape
    weight = conv.weight.reshape(conv.out_channels, 2 * num_dims)  # (C_out, 2C)
    w1 = weight[:, :num_dims]  # (C_out, C)
    w21 = weight[:, num_dims:] - w1  # (C_out, C)
    rows = x.transpose(2, 1).reshape(batch_size * num_points, num_dims)  # (B*N, C)
    a = rows @ w1.t()  # (B*N, C_out)
    b = rows @ w21.t()  # (B*N, C_out)
    if conv.bias is not None:
        b = b + conv.bias
    return a, b


def _flat_neighbors(idx: torch.Tensor, num_points: int) -> torch.Tensor:
    """(B, N, k) per-cloud indices -> (B*N, k) row indices into the (B*N, C) per-point tables."""
    batch_size, _, k = idx.shape
    base = torch.arange(batch_size, device=idx.device).view(-1, 1, 1) * num_points  # (B, 1, 1)
    return (idx + base).reshape(batch_size * num_points, k)  # (B*N, k)


def _neighbor_max(
    a_signed: torch.Tensor, nbr: torch.Tensor, need_slot: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Max over each point's neighbours of a_signed and the first slot reaching it.

    Works in chunks of points so that the gathered (chunk, k, C) block stays small (in cache). The
    slot is found without torch.max's slow index reduction: with d_j = g_j - max_j g_j (exactly
    +0.0 at the maxima given no -0.0 in a_signed, negative elsewhere), the sign bit of d_j as an
    integer, OR-ed with the code k - j, has its largest value at the first maximum.

    Args:
        a_signed: (P, C) per-point values without -0.0 (add 0.0 first).
        nbr: (P, k) row indices into a_signed.
        need_slot: also return the slot.
    Returns:
        vals (P, C) = max_j a_signed[nbr[i, j]]; slot (P, C) uint8 (int64 if k > 255), the lowest j
        reaching the max (the tie rule of torch.max), or None.
    """
    num_rows, channels = a_signed.shape
    k = nbr.shape[1]
    flat = nbr.reshape(-1)  # (P*k,)
    int_dtype = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a_signed.element_size()]
    sign_shift = 8 * a_signed.element_size() - 1
    codes = torch.arange(k, 0, -1, dtype=int_dtype, device=a_signed.device).view(1, k, 1)  # (1, k, 1)
    vals = a_signed.new_empty(num_rows, channels)
    slot_dtype = torch.uint8 if k <= 255 else torch.long
    slot = torch.empty(num_rows, channels, dtype=slot_dtype, device=a_signed.device) if need_slot else None
    chunk_elems = _MAX_CHUNK_ELEMS if a_signed.device.type == "cpu" else _MAX_CHUNK_ELEMS_ACCEL
    chunk = max(1, chunk_elems // (k * channels))
    for start in range(0, num_rows, chunk):
        stop = min(start + chunk, num_rows)
        gathered = a_signed.index_select(0, flat[start * k : stop * k]).view(stop - start, k, channels)  # (c, k, C)
        best = torch.amax(gathered, dim=1, out=vals[start:stop])  # (c, C)
        if slot is not None:
            key = torch.sub(gathered, best.unsqueeze(1), out=gathered).view(int_dtype)  # (c, k, C) 0 at maxima
            key.bitwise_right_shift_(sign_shift).bitwise_or_(codes)  # (c, k, C) k - j at maxima, -1 elsewhere
            slot[start:stop] = k - torch.amax(key, dim=1)  # (c, C) first maximal j
    return vals, slot


def _neighbor_sum(values: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """S_i = sum_j values[nbr[i, j]]: each point's sum over its neighbours (one bag of k rows per point).

    Args:
        values: (P, C) per-point values.
        nbr: (P, k) row indices into values (duplicates allowed).
    Returns:
        (P, C) sums.
    """
    return F.embedding_bag(nbr, values, mode="sum")  # (P, C)


def _sum_to_neighbors(values: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """T_p = sum over the edges (i, j) with nbr[i, j] = p of values[i].

    The edges sorted by target point (stable, so sources stay in ascending order) form one bag per
    point; a sum over bags needs no atomics, so the result does not depend on scheduling.

    Args:
        values: (P, C) per-point values.
        nbr: (P, k) row indices (duplicates allowed).
    Returns:
        (P, C) sums (zero for points that are nobody's neighbour).
    """
    num_rows, k = nbr.shape
    targets, order = torch.sort(nbr.reshape(-1), stable=True)  # (P*k,) each, edges grouped by target point
    points = torch.arange(num_rows, dtype=targets.dtype, device=nbr.device)  # (P,)
    offsets = torch.searchsorted(targets, points)  # (P,) first edge of each target point
    return F.embedding_bag(order // k, values, offsets, mode="sum")  # (P, C)


def _in_degree(nbr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(P, k) neighbour rows -> (P,) number of edges pointing at each point, without a host sync."""
    flat = nbr.reshape(-1)  # (P*k,)
    ones = torch.ones(flat.shape[0], dtype=dtype, device=nbr.device)  # (P*k,)
    return torch.zeros(nbr.shape[0], dtype=dtype, device=nbr.device).index_add_(0, flat, ones)  # (P,)


def _edge_batch_stats(a: torch.Tensor, b: torch.Tensor, nbr: torch.Tensor, group) -> dict[str, torch.Tensor]:
    """BatchNorm statistics over the edges y_ij = A_nbr(i,j) + B_i, from per-point sums.

    With a process group (sync BatchNorm), every rank computes its own moments, one all-reduce
    gathers them and each rank pools them exactly (:func:`models.sync_bn.combine_moments`); the
    centred tables are then shifted to the global means.

    Args:
        a, b: (P, C) per-point tables.
        nbr: (P, k) neighbour rows.
        group: process group to pool the statistics over, or None (this process only).
    Returns:
        dict with indeg (P,), a_c, b_c, s_c (P, C) (tables centred on the edge means of A_nbr and B,
        S_i = sum_j a_c[nbr(i,j)]), mean_a, mean (C,) (edge means of A_nbr and of y), var (C,)
        (biased) and count (the number of edges: an int, or a () tensor when pooled over ranks).
    """
    num_rows, k = nbr.shape
    num_edges = num_rows * k
    indeg = _in_degree(nbr, a.dtype)  # (P,) in-degrees
    mean_a = (indeg @ a) / num_edges  # (C,) edge mean of A_nbr
    mean_b = b.mean(dim=0)  # (C,) edge mean of B_i
    a_c = a - mean_a  # (P, C)
    b_c = b - mean_b  # (P, C)
    s_c = _neighbor_sum(a_c, nbr)  # (P, C) S_i = sum_j a_c[nbr(i,j)]
    sq_sum = indeg @ a_c.square() + 2 * (b_c * s_c).sum(dim=0) + k * b_c.square().sum(dim=0)  # (C,)
    count = num_edges
    if group is not None:
        channels = a.shape[1]
        local = torch.cat((a.new_full((1,), num_edges), mean_a, mean_b, sq_sum))  # (1 + 3C,)
        table = gather_rows(local, group, differentiable=False)  # (W, 1 + 3C)
        counts, means_a, means_b = table[:, 0], table[:, 1 : 1 + channels], table[:, 1 + channels : 1 + 2 * channels]
        count, mean, sq_sum = combine_moments(counts, means_a + means_b, table[:, 1 + 2 * channels :])
        global_a = (counts.unsqueeze(1) * means_a).sum(dim=0) / count  # (C,)
        shift_a, shift_b = global_a - mean_a, (mean - global_a) - mean_b  # (C,) each
        a_c.sub_(shift_a)
        b_c.sub_(shift_b)
        s_c.sub_(shift_a, alpha=k)
        mean_a, mean_b = global_a, mean - global_a
    var = (sq_sum / count).clamp_(min=0)  # (C,) biased variance, used for normalization
    return {"indeg": indeg, "a_c": a_c, "b_c": b_c, "s_c": s_c, "mean_a": mean_a, "mean": mean_a + mean_b,
            "var": var, "count": count}


class _EdgeConvBNMax(torch.autograd.Function):
    """out_i = max_j LeakyReLU(BN(A_nbr(i,j) + B_i)) on per-point tables, with an exact backward.

    Notation (per channel): P points, k slots, M = P*k edges, y_ij = A_nbr(i,j) + B_i,
    xhat = (y - mean) * invstd, z = gamma * xhat + beta, s = gamma * invstd, and h = dL/dz, which
    is non-zero only on each point's selected edge. With batch statistics, BatchNorm's backward over
    the M edges is dL/dy_ij = s * (h_ij - m1 - xhat_ij * m2') with m1 = sum(h) / M and
    m2' = sum(h * xhat) / M. Summing over the edges of each point, with m2 = m2' * invstd and the
    centred per-point tables a = A - mean_A, b = B - mean_B (mean = mean_A + mean_B):
        dL/dB_i = s * (h_i - k m1 - m2 (S_i + k b_i)),          S_i = sum_j a_nbr(i,j)
        dL/dA_p = s * (H_p - indeg_p m1 - m2 (indeg_p a_p + T_p)),  T_p = sum_{(i,j): nbr(i,j)=p} b_i
    where H_p sums h over the (point, channel) pairs that selected p. With running statistics only
    the first terms remain. dL/dgamma = sum(h * xhat), dL/dbeta = sum(h).
    """

    @staticmethod
    def forward(
        ctx,
        a: torch.Tensor,
        b: torch.Tensor,
        nbr: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        use_batch_stats: bool,
        update_factor: float | None,
        eps: float,
        negative_slope: float,
        group,
    ) -> torch.Tensor:
        num_rows = a.shape[0]
        k = nbr.shape[1]
        num_edges = num_rows * k
        needs_grad = any(ctx.needs_input_grad[i] for i in (0, 1, 3, 4))

        # BN affine + LeakyReLU is increasing in y where gamma > 0 and decreasing where gamma < 0:
        # one max over sign(gamma) * A selects every channel's edge.
        # No data-dependent branch (it would wait for the device): sign 1 everywhere costs a multiply.
        sign = None if weight is None else torch.sign(weight.detach()).to(a.dtype)  # (C,) in {-1, 0, 1}
        a_signed = a + 0.0 if sign is None else a * sign + 0.0  # (P, C) adding 0.0 turns -0.0 into +0.0
        a_sel, slot = _neighbor_max(a_signed, nbr, need_slot=needs_grad)  # (P, C) max of sign * A
        del a_signed
        if sign is not None:
            a_sel.mul_(sign)  # (P, C) A at the selected neighbour
            # gamma == 0: all edge outputs equal beta; torch.max (plain formulation) returns slot 0,
            # and so does the max over 0 * A; A there is that of neighbour slot 0.
            a_sel = torch.where(sign == 0, a.index_select(0, nbr[:, 0]), a_sel)  # (P, C)

        if use_batch_stats:
            if num_edges <= 1:
                raise ValueError(
                    "models/edgeconv.py: BatchNorm in training mode needs more than 1 value per channel "
                    f"(got B*N*k = {num_edges})."
                )
            st = _edge_batch_stats(a, b, nbr, group)
            if update_factor is not None:
                update_running_stats(running_mean, running_var, st["mean"], st["var"], st["count"], update_factor)
            invstd = torch.rsqrt(st["var"] + eps)  # (C,)
            xhat = a_sel.sub_(st["mean_a"]).add_(st["b_c"]).mul_(invstd)  # (P, C) normalized selected edge
        else:
            invstd = torch.rsqrt(running_var.to(a.dtype) + eps)  # (C,)
            xhat = a_sel.add_(b).sub_(running_mean.to(a.dtype)).mul_(invstd)  # (P, C)

        if weight is None:
            z = xhat if bias is None else xhat + bias  # (P, C)
        else:
            z = torch.addcmul(bias if bias is not None else torch.zeros_like(weight), xhat, weight)  # (P, C)
        out = F.leaky_relu(z, negative_slope)  # (P, C)

        if needs_grad:
            ctx.use_batch_stats = use_batch_stats
            ctx.negative_slope = negative_slope
            ctx.has_weight = weight is not None
            ctx.has_bias = bias is not None
            ctx.group = group
            saved = [nbr, slot, xhat, z > 0, invstd, weight]
            if use_batch_stats:
                ctx.count = st["count"]
                saved += [st["indeg"], st["a_c"], st["b_c"], st["s_c"].add_(st["b_c"], alpha=k)]  # last: S_i + k b_i
            ctx.save_for_backward(*saved)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        nbr, slot, xhat, positive, invstd, weight = ctx.saved_tensors[:6]
        k = nbr.shape[1]
        h = torch.where(positive, grad_out, grad_out * ctx.negative_slope)  # (P, C) dL/dz, selected edges
        sum_h = h.sum(dim=0)  # (C,)
        sum_hx = (h * xhat).sum(dim=0)  # (C,)
        scale = invstd if weight is None else weight * invstd  # (C,) dz/dy

        chosen = nbr.gather(1, slot.long())  # (P, C) row of each (point, channel)'s selected neighbour
        grad_a = torch.zeros_like(h).scatter_add_(0, chosen, h).mul_(scale)  # (P, C) s * H
        grad_b = h.mul_(scale)  # (P, C) s * h (h is not used afterwards)
        if ctx.use_batch_stats:
            indeg, a_c, b_c, r = ctx.saved_tensors[6:]
            total_h, total_hx = sum_h, sum_hx  # (C,) each; over every rank's edges under sync BN
            if ctx.group is not None:
                totals = torch.cat((sum_h, sum_hx))  # (2C,)
                dist.all_reduce(totals, op=dist.ReduceOp.SUM, group=ctx.group)
                total_h, total_hx = totals.chunk(2)  # (C,) each
            m1 = total_h / ctx.count  # (C,)
            m2 = total_hx * invstd / ctx.count  # (C,)
            grad_b.addcmul_(r, -m2 * scale).sub_(k * m1 * scale)
            t_c = _sum_to_neighbors(b_c, nbr)  # (P, C) T_p
            t_c.addcmul_(a_c, indeg.unsqueeze(1))  # (P, C) indeg_p a_p + T_p
            grad_a.addcmul_(t_c, -m2 * scale).addcmul_(indeg.unsqueeze(1), -m1 * scale)
        grad_weight = sum_hx if ctx.has_weight else None
        grad_bias = sum_h if ctx.has_bias else None
        return grad_a, grad_b, None, grad_weight, grad_bias, None, None, None, None, None, None, None


def edge_conv_fast(
    x: torch.Tensor,
    idx: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """EdgeConv equal to :func:`edge_conv_plain` (outputs, gradients, BN running statistics).

    Never materializes a (B, C, N, k) tensor and keeps only per-point tensors for backward.
    BatchNorm follows the module exactly: batch statistics in training mode (and in eval mode
    without running statistics), running-statistic updates with ``momentum`` (or the cumulative
    average when ``momentum`` is None) and ``num_batches_tracked``; running statistics in eval mode.
    A :class:`models.sync_bn.SyncBatchNorm2d` in training mode under a process group uses the
    statistics of every rank's batch (see :func:`models.sync_bn.sync_group`).

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices (duplicates allowed).
        conv: 1x1 ``nn.Conv2d(2C, C_out)`` (bias optional); its weight is used, not its forward.
        bn: ``nn.BatchNorm2d(C_out)`` (affine optional); train/eval mode is taken from the module.
        negative_slope: LeakyReLU slope (original: 0.2).
    Returns:
        (B, C_out, N) features (a permuted view of a (B, N, C_out) tensor).
    """
    _check_modules(x, idx, conv, bn)
    batch_size, _, num_points = x.shape
    a, b = _split_conv(x, conv)  # (B*N, C_out) each
    if a.dtype in (torch.float16, torch.bfloat16):
        # Under autocast the per-point matmuls run in half precision; selection and statistics
        # run in float32 like BatchNorm's own statistics.
        a, b = a.float(), b.float()
    nbr = _flat_neighbors(idx, num_points)  # (B*N, k)

    use_batch_stats = bn.training or bn.running_mean is None
    update_factor = running_update_factor(bn)

    with torch.autocast(device_type=a.device.type, enabled=False):
        out = _EdgeConvBNMax.apply(
            a,
            b,
            nbr,
            bn.weight,
            bn.bias,
            bn.running_mean,
            bn.running_var,
            use_batch_stats,
            update_factor,
            bn.eps,
            negative_slope,
            sync_group(bn),
        )  # (B*N, C_out)
    return out.view(batch_size, num_points, -1).permute(0, 2, 1)  # (B, C_out, N)


def edge_conv_first(x: torch.Tensor, idx: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(graph_feature(x, idx)) without the (B, 2C, N, k) edge tensor, via the weight split.

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
        conv: 1x1 ``nn.Conv2d(2C, C_out)`` (bias optional).
    Returns:
        (B, C_out, N, k) conv outputs, stored channels-last (a permuted view of (B, N, k, C_out)).
    """
    _check_modules(x, idx, conv, None)
    batch_size, _, num_points = x.shape
    k = idx.shape[-1]
    a, b = _split_conv(x, conv)  # (B*N, C_out) each
    nbr = _flat_neighbors(idx, num_points)  # (B*N, k)
    edge = a.index_select(0, nbr.reshape(-1)).view(batch_size, num_points, k, -1)  # (B, N, k, C_out)
    edge = edge + b.view(batch_size, num_points, 1, -1)  # (B, N, k, C_out)
    return edge.permute(0, 3, 1, 2)  # (B, C_out, N, k)


def edge_conv(
    x: torch.Tensor,
    idx: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    negative_slope: float = 0.2,
    impl: str = "fast",
) -> torch.Tensor:
    """EdgeConv max_j LeakyReLU(BN(conv(concat(x_j - x_i, x_i)))) with the chosen implementation.

    Args:
        x: (B, C, N) point features.
        idx: (B, N, k) neighbour indices.
        conv: 1x1 ``nn.Conv2d(2C, C_out, bias=False)``.
        bn: ``nn.BatchNorm2d(C_out)``.
        negative_slope: LeakyReLU slope (original: 0.2).
        impl: "fast" (:func:`edge_conv_fast`) or "plain" (:func:`edge_conv_plain`, the original).
    Returns:
        (B, C_out, N) features.
    """
    if impl == "fast":
        return edge_conv_fast(x, idx, conv, bn, negative_slope)
    if impl == "plain":
        return edge_conv_plain(x, idx, conv, bn, negative_slope)
    raise ValueError(f"models/edgeconv.py: unknown edgeconv impl {impl!r}; use 'fast' or 'plain'.")
