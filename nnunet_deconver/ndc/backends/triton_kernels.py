"""Triton kernels of the NDC update: grouped "same" convolutions with fused prologues/epilogues.

Every tensor is contiguous (B, channels, D, H, W) (2D runs as D = 1 with a (1, kh, kw) filter);
the filter V is contiguous (C, Eg, KD, KH, KW) with Eg = E // G and Cg = C // G. A spatial
position p indexes the flattened D * H * W; tap t the flattened KD * KH * KW, offset
(t_d - KD // 2, t_h - KH // 2, t_w - KW // 2). One program tile is (KPAD taps, BLOCK positions):
all taps of a block of positions are gathered at once (zero outside the volume), so one tap loop
serves 2D and 3D and any odd kernel. Products are accumulated in float32 (float64 for float64
inputs), whatever the storage dtype.

- :func:`conv_kernel`: ``A(src)`` (C outputs, summing the Eg sources of the group) or, with
  TRANSPOSE, ``A^T(src)`` (E outputs, summing the Cg channels of the group); optional ReLU of the
  source (RELU_SRC), and the epilogue ``(base - acc)``, times ``(mask_src > 0)`` with MASK, of dL/ds.
- :func:`update_kernel`: ``num = A^T(x) + eps`` and ``den = A^T(y) + eps`` in one pass, then the
  update ``s * num / den`` (forward) or ``q = g * s / den``, ``p = q * num / den`` and
  ``g * num / den`` (backward).
- :func:`weight_grad_kernel`: ``W(q, x) - W(p, y) - W(s, ap)`` for one filter row (c, j) per
  program over a slice of the B * D * H * W positions, added atomically.
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
def conv_kernel(src, weight, out, base, mask_src, n_out, n_src, Cg, Eg, D, H, W,
                TRANSPOSE: tl.constexpr, RELU_SRC: tl.constexpr, EPILOGUE: tl.constexpr, MASK: tl.constexpr,
                KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, KPAD: tl.constexpr, BLOCK: tl.constexpr,
                ACC: tl.constexpr):
    """out[b, o] = sum over the group's sources and taps (grid: B * n_out * position blocks)."""
    S = D * H * W
    K = KD * KH * KW
    blocks = tl.cdiv(S, BLOCK)
    bo = tl.program_id(0) // blocks
    b = bo // n_out
    o = bo % n_out
    p = (tl.program_id(0) % blocks) * BLOCK + tl.arange(0, BLOCK)
    pmask = p < S
    if TRANSPOSE:  # o = e; sources c = g * Cg + i; filter row (c, o % Eg); taps mirrored
        offsets, valid, t = _tap_offsets(p, pmask, D, H, W, -1, KD, KH, KW, KPAD)
        first = (o // Eg) * Cg
        n_sum = Cg
    else:  # o = c; sources e = g * Eg + j; filter row (o, j)
        offsets, valid, t = _tap_offsets(p, pmask, D, H, W, 1, KD, KH, KW, KPAD)
        first = (o // Cg) * Eg
        n_sum = Eg
    acc = tl.zeros([BLOCK], dtype=ACC)
    for i in range(n_sum):
        if TRANSPOSE:
            row = (first + i) * Eg + o % Eg
        else:
            row = o * Eg + i
        v = tl.load(weight + row * K + t, mask=t < K, other=0.0).to(ACC)
        plane = (b * n_src + first + i).to(tl.int64) * S
        vals = tl.load(src + plane + offsets, mask=valid, other=0.0).to(ACC)
        if RELU_SRC:
            vals = tl.maximum(vals, 0.0)
        acc += tl.sum(vals * v[:, None], axis=0)
    here = (b * n_out + o).to(tl.int64) * S + p
    if EPILOGUE:  # (base - acc) * (mask_src > 0)
        acc = tl.load(base + here, mask=pmask, other=0.0).to(ACC) - acc
        if MASK:
            raw = tl.load(mask_src + here, mask=pmask, other=0.0)
            acc = tl.where(raw > 0, acc, 0.0)
    tl.store(out + here, acc.to(out.dtype.element_ty), mask=pmask)


@triton.jit
def update_kernel(x, y, s, grad, weight, out, out_p, out_gs, eps, C, E, Cg, Eg, D, H, W,
                  BACKWARD: tl.constexpr, RECTIFY: tl.constexpr, KD: tl.constexpr, KH: tl.constexpr,
                  KW: tl.constexpr, KPAD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """num and den at (b, e, block) from one gather pass over x and y; then the update or its
    backward factors (grid: B * E * position blocks)."""
    S = D * H * W
    K = KD * KH * KW
    blocks = tl.cdiv(S, BLOCK)
    be = tl.program_id(0) // blocks
    b = be // E
    e = be % E
    p = (tl.program_id(0) % blocks) * BLOCK + tl.arange(0, BLOCK)
    pmask = p < S
    offsets, valid, t = _tap_offsets(p, pmask, D, H, W, -1, KD, KH, KW, KPAD)
    first = (e // Eg) * Cg
    num = tl.zeros([BLOCK], dtype=ACC)
    den = tl.zeros([BLOCK], dtype=ACC)
    for i in range(Cg):
        v = tl.load(weight + ((first + i) * Eg + e % Eg) * K + t, mask=t < K, other=0.0).to(ACC)
        plane = (b * C + first + i).to(tl.int64) * S
        num += tl.sum(tl.load(x + plane + offsets, mask=valid, other=0.0).to(ACC) * v[:, None], axis=0)
        den += tl.sum(tl.load(y + plane + offsets, mask=valid, other=0.0).to(ACC) * v[:, None], axis=0)
    num += eps
    den += eps
    here = (b * E + e).to(tl.int64) * S + p
    sv = tl.load(s + here, mask=pmask, other=0.0).to(ACC)
    if RECTIFY:
        sv = tl.maximum(sv, 0.0)
    if BACKWARD:
        g = tl.load(grad + here, mask=pmask, other=0.0).to(ACC)
        q = g * sv / den
        tl.store(out + here, q.to(out.dtype.element_ty), mask=pmask)
        tl.store(out_p + here, (q * num / den).to(out_p.dtype.element_ty), mask=pmask)
        tl.store(out_gs + here, (g * num / den).to(out_gs.dtype.element_ty), mask=pmask)
    else:
        tl.store(out + here, (sv * num / den).to(out.dtype.element_ty), mask=pmask)


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
