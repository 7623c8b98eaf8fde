"""Triton kernels of the NDC update: grouped "same" convolutions with fused prologues/epilogues.

Every tensor is contiguous (B, channels, D, H, W) (2D runs as D = 1 with a (1, kh, kw) filter);
the filter V is contiguous (C, Eg, KD, KH, KW) with Eg = E // G and Cg = C // G. A spatial
position p indexes the flattened D * H * W; tap t the flattened KD * KH * KW, offset
(t_d - KD // 2, t_h - KH // 2, t_w - KW // 2).

:func:`conv_kernel` and :func:`update_kernel` give one program a block of BLOCK positions and
*every* output channel of one group (OPAD rows, the group's count rounded up to a power of two):
each source value a tap gathers is loaded once and multiplied into all the group's outputs. The
taps are unrolled at compile time, so a tap's offset in the flattened volume is one scalar and its
bounds check three comparisons (shared by the taps of a row, plane or slab); the one loop left at
run time is over the group's sources. Products are accumulated in float32 (float64 for float64
filters), whatever the storage dtype.

- :func:`conv_kernel`: ``A(src)`` (outputs c, summing the group's Eg sources) or, with TRANSPOSE,
  ``A^T(src)`` (outputs e, summing the group's Cg channels); optional ReLU of the source
  (RELU_SRC), and the epilogue ``(base - acc)``, times ``(mask_src > 0)`` with MASK, of dL/ds.
- :func:`update_kernel`: ``num = A^T(x) + eps`` and ``den = A^T(y) + eps`` in one pass, then the
  update ``s * num / den`` (forward) or ``q = g * s / den``, ``p = q * num / den`` and
  ``g * num / den`` (backward).
- :func:`weight_grad_kernel`: ``W(q, x) - W(p, y) - W(s, ap)`` for one filter row (c, j) per
  program over a slice of the B * D * H * W positions, added atomically (all KPAD taps, the
  count rounded up to a power of two, gathered at once).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tap_offsets(p, pmask, D, H, W, SIGN: tl.constexpr, KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                 KPAD: tl.constexpr):
    """Flat source positions (KPAD, BLOCK) of every tap at positions p, and where they are valid."""
    t = tl.arange(0, KPAD)
    tz = t // (KH * KW) - KD // 2
    ty = (t // KW) % KH - KH // 2
    tx = t % KW - KW // 2
    z = p // (H * W)
    y = (p // W) % H
    x = p % W
    zz = z[None, :] + SIGN * tz[:, None]
    yy = y[None, :] + SIGN * ty[:, None]
    xx = x[None, :] + SIGN * tx[:, None]
    valid = (t < KD * KH * KW)[:, None] & pmask[None, :]
    valid = valid & (zz >= 0) & (zz < D) & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
    return (zz * H + yy) * W + xx, valid, t


@triton.jit
def _group_block(n_out, n_src, Cg, Eg, D, H, W, TRANSPOSE: tl.constexpr, OPAD: tl.constexpr,
                 BLOCK: tl.constexpr):
    """This program's batch index, group, first output and source channel, outputs per group (and
    the OPAD output rows, which of them exist), sources per group, and its BLOCK positions."""
    S = D * H * W
    blocks = tl.cdiv(S, BLOCK)
    if TRANSPOSE:  # outputs e = g * Eg + j, sources c = g * Cg + i
        per_out = Eg
        per_src = Cg
    else:  # outputs c = g * Cg + j, sources e = g * Eg + i
        per_out = Cg
        per_src = Eg
    groups = n_out // per_out
    bg = tl.program_id(0) // blocks
    b = bg // groups
    g = bg % groups
    p = (tl.program_id(0) % blocks) * BLOCK + tl.arange(0, BLOCK)
    j = tl.arange(0, OPAD)
    return b, g, j, j < per_out, per_out, per_src, p, p < S


@triton.jit
def _gather_taps(acc, acc2, plane, plane2, wtaps, p, pmask, D, H, W, SIGN: tl.constexpr, SECOND: tl.constexpr,
                 RELU_SRC: tl.constexpr, KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                 OPAD: tl.constexpr, ACC: tl.constexpr):
    """acc (OPAD, BLOCK) += sum over taps t of wtaps[t * OPAD + j] * plane[p + SIGN * offset(t)]
    (zero outside the volume); with SECOND, acc2 += the same for plane2 (update: x and y together).
    A tap's OPAD filter values are contiguous: one vector load."""
    j = tl.arange(0, OPAD)
    z = p // (H * W)
    y = (p // W) % H
    x = p % W
    for tz in tl.static_range(KD):
        zz = z + SIGN * (tz - KD // 2)
        in_z = pmask & (zz >= 0) & (zz < D)
        for ty in tl.static_range(KH):
            yy = y + SIGN * (ty - KH // 2)
            in_zy = in_z & (yy >= 0) & (yy < H)
            for tx in tl.static_range(KW):
                xx = x + SIGN * (tx - KW // 2)
                valid = in_zy & (xx >= 0) & (xx < W)
                shift = SIGN * (((tz - KD // 2) * H + (ty - KH // 2)) * W + (tx - KW // 2))
                v = tl.load(wtaps + ((tz * KH + ty) * KW + tx) * OPAD + j).to(ACC)[:, None]
                val = tl.load(plane + p + shift, mask=valid, other=0.0).to(ACC)
                if RELU_SRC:
                    val = tl.maximum(val, 0.0)
                acc += v * val[None, :]
                if SECOND:
                    acc2 += v * tl.load(plane2 + p + shift, mask=valid, other=0.0).to(ACC)[None, :]
    return acc, acc2


@triton.jit
def conv_kernel(src, weight, out, base, mask_src, n_out, n_src, Cg, Eg, D, H, W,
                TRANSPOSE: tl.constexpr, RELU_SRC: tl.constexpr, EPILOGUE: tl.constexpr, MASK: tl.constexpr,
                KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, OPAD: tl.constexpr, BLOCK: tl.constexpr,
                ACC: tl.constexpr):
    """out[b, o] for the outputs o of one group, summing its sources and taps (grid: B * groups *
    position blocks); ``weight`` in the tap-major layout of :func:`update_kernel`'s docstring (A: taps
    at +offset; A^T: taps mirrored)."""
    S = D * H * W
    K = KD * KH * KW
    b, g, j, jmask, per_out, per_src, p, pmask = _group_block(n_out, n_src, Cg, Eg, D, H, W, TRANSPOSE, OPAD, BLOCK)
    acc = tl.zeros([OPAD, BLOCK], dtype=ACC)
    for i in range(per_src):
        plane = src + (b * n_src + g * per_src + i).to(tl.int64) * S
        wtaps = weight + (g * per_src + i) * (K * OPAD)
        acc, _ = _gather_taps(acc, acc, plane, plane, wtaps, p, pmask, D, H, W, -1 if TRANSPOSE else 1, False,
                              RELU_SRC, KD, KH, KW, OPAD, ACC)
    here = (b * n_out + g * per_out + j).to(tl.int64)[:, None] * S + p[None, :]
    valid = jmask[:, None] & pmask[None, :]
    if EPILOGUE:  # (base - acc) * (mask_src > 0)
        acc = tl.load(base + here, mask=valid, other=0.0).to(ACC) - acc
        if MASK:
            raw = tl.load(mask_src + here, mask=valid, other=0.0)
            acc = tl.where(raw > 0, acc, 0.0)
    tl.store(out + here, acc.to(out.dtype.element_ty), mask=valid)


@triton.jit
def update_kernel(x, y, s, grad, weight, out, out_p, out_gs, eps, C, E, Cg, Eg, D, H, W,
                  BACKWARD: tl.constexpr, RECTIFY: tl.constexpr, KD: tl.constexpr, KH: tl.constexpr,
                  KW: tl.constexpr, OPAD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """num and den for the Eg sources e of one group at a block of positions, from one gather of x
    and y per tap; then the update or its backward factors (grid: B * groups * position blocks).

    ``weight`` is the filter tap-major, (G, sources per group, K, OPAD): entry [g, i, t, j] is tap
    t of the filter between the group's source i and output j, zero for j past the outputs (for
    A^T and the update: V[g * Cg + i, j, t]; for A: V[g * Cg + j, i, t])."""
    S = D * H * W
    K = KD * KH * KW
    b, g, j, jmask, per_out, per_src, p, pmask = _group_block(E, C, Cg, Eg, D, H, W, True, OPAD, BLOCK)
    num = tl.zeros([OPAD, BLOCK], dtype=ACC)
    den = tl.zeros([OPAD, BLOCK], dtype=ACC)
    for i in range(Cg):
        plane = (b * C + g * Cg + i).to(tl.int64) * S
        num, den = _gather_taps(num, den, x + plane, y + plane, weight + (g * Cg + i) * (K * OPAD), p, pmask,
                                D, H, W, -1, True, False, KD, KH, KW, OPAD, ACC)
    num += eps
    den += eps
    here = (b * E + g * Eg + j).to(tl.int64)[:, None] * S + p[None, :]
    valid = jmask[:, None] & pmask[None, :]
    sv = tl.load(s + here, mask=valid, other=0.0).to(ACC)
    if RECTIFY:
        sv = tl.maximum(sv, 0.0)
    if BACKWARD:
        gv = tl.load(grad + here, mask=valid, other=0.0).to(ACC)
        q = gv * sv / den
        tl.store(out + here, q.to(out.dtype.element_ty), mask=valid)
        tl.store(out_p + here, (q * num / den).to(out_p.dtype.element_ty), mask=valid)
        tl.store(out_gs + here, (gv * num / den).to(out_gs.dtype.element_ty), mask=valid)
    else:
        tl.store(out + here, (sv * num / den).to(out.dtype.element_ty), mask=valid)


@triton.jit
def weight_grad_kernel(q, x, pp, y, s, ap, grad_w, B, C, E, Cg, Eg, D, H, W, chunk,
                       RECTIFY: tl.constexpr, KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                       KPAD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """grad_w[c, j, t] += sum over a slice of (b, position) of
    q[e, p + t] x[c, p] - pp[e, p + t] y[c, p] - s'[e, p + t] ap[c, p]  (grid: C * Eg, slices)."""
    S = D * H * W
    K = KD * KH * KW
    cj = tl.program_id(0)
    c = cj // Eg
    e = (c // Cg) * Eg + cj % Eg
    start = tl.program_id(1) * chunk
    acc = tl.zeros([KPAD, BLOCK], dtype=ACC)
    for n0 in range(0, chunk, BLOCK):
        n = start + n0 + tl.arange(0, BLOCK)
        nmask = (n < B * S) & (n0 + tl.arange(0, BLOCK) < chunk)
        b = n // S
        p = n % S
        offsets, valid, t = _tap_offsets(p, nmask, D, H, W, 1, KD, KH, KW, KPAD)
        at_c = (b * C + c).to(tl.int64) * S + p
        src = (b * E + e).to(tl.int64)[None, :] * S + offsets
        xv = tl.load(x + at_c, mask=nmask, other=0.0).to(ACC)
        yv = tl.load(y + at_c, mask=nmask, other=0.0).to(ACC)
        apv = tl.load(ap + at_c, mask=nmask, other=0.0).to(ACC)
        sv = tl.load(s + src, mask=valid, other=0.0).to(ACC)
        if RECTIFY:
            sv = tl.maximum(sv, 0.0)
        acc += tl.load(q + src, mask=valid, other=0.0).to(ACC) * xv[None, :]
        acc -= tl.load(pp + src, mask=valid, other=0.0).to(ACC) * yv[None, :]
        acc -= sv * apv[None, :]
    t = tl.arange(0, KPAD)
    tl.atomic_add(grad_w + cj * K + t, tl.sum(acc, axis=1).to(grad_w.dtype.element_ty), mask=t < K)
