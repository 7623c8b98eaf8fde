// Building blocks of the NDC kernels (the taps in registers: ndc_kernels_taps.h; expanded rows,
// elementwise passes); included by ndc_kernels_impl.h inside the same instruction-set region, so
// it includes nothing but ndc_kernels_taps.h.

#include "ndc_kernels_taps.h"

namespace NDC_NS {
namespace {

// drow[j] += sum_w sum_f coef_f[w * E + j] * src_f[w * E + j] over the N2 voxels of a row.
template <typename T, int NF>
inline void accumulate_row_products(int64_t E, int64_t N2, const T* const* coef, const T* const* src, T* drow) {
  typedef typename Vec<T>::type vt;
  constexpr int64_t VN = sizeof(vt) / sizeof(T), JB = U * VN;
  int64_t j0 = 0;
  for (; j0 + JB <= E; j0 += JB) {
    vt acc[U];
    for (int u = 0; u < U; ++u) acc[u] = vload(drow + j0 + u * VN);
    for (int64_t w = 0; w < N2; ++w)
      for (int f = 0; f < NF; ++f)
        for (int u = 0; u < U; ++u) acc[u] += vload(coef[f] + w * E + j0 + u * VN) * vload(src[f] + w * E + j0 + u * VN);
    for (int u = 0; u < U; ++u) vstore(drow + j0 + u * VN, acc[u]);
  }
  if (j0 == E) return;
  for (int64_t w = 0; w < N2; ++w)
    for (int f = 0; f < NF; ++f) fma_lanes<T, false>(drow + j0, coef[f] + w * E + j0, src[f] + w * E + j0, E - j0);
}

// out[gi * cg] = sum of the eg lanes of group gi
template <typename T, int EG>
inline void segment_sum_fixed(const T* __restrict__ acc, T* __restrict__ out, int64_t G, int64_t cg) {
  for (int64_t gi = 0; gi < G; ++gi) {
    T total = T(0);
    for (int jl = 0; jl < EG; ++jl) total += acc[gi * EG + jl];
    out[gi * cg] = total;
  }
}

template <typename T>
inline void segment_sum(const NdcGeometry& g, const T* __restrict__ acc, T* __restrict__ out) {
  switch (g.eg) {
    case 1: for (int64_t gi = 0; gi < g.G; ++gi) out[gi * g.cg] = acc[gi]; return;
    case 2: segment_sum_fixed<T, 2>(acc, out, g.G, g.cg); return;
    case 4: segment_sum_fixed<T, 4>(acc, out, g.G, g.cg); return;
    case 8: segment_sum_fixed<T, 8>(acc, out, g.G, g.cg); return;
    default:
      for (int64_t gi = 0; gi < g.G; ++gi) {
        T total = T(0);
        for (int64_t jl = 0; jl < g.eg; ++jl) total += acc[gi * g.eg + jl];
        out[gi * g.cg] = total;
      }
  }
}

// dst[w][c * EG + jl] = src[w][c] for N2 voxels of C channels (groups of one channel).
template <typename T, int EG>
inline void expand_fixed(const T* __restrict__ src, T* __restrict__ dst, int64_t N2, int64_t C) {
  const int64_t n = N2 * C;
  for (int64_t i = 0; i < n; ++i)
    for (int jl = 0; jl < EG; ++jl) dst[i * EG + jl] = src[i];
}

// The expanded row (b, a, h) of field f (C channels) for channel cl, cached: slot by (a mod k0,
// h mod k1), so the k0 * k1 rows one output row reads never evict each other and a thread moving
// along h re-expands only k0 rows per output row.
template <typename T>
const T* expanded_row(const NdcGeometry& g, const T* f, int field, T* cache, int64_t* tags,
                      int64_t b, int64_t a, int64_t h, int64_t cl) {
  const int64_t slot = field * g.k0 * g.k1 + (a % g.k0) * g.k1 + (h % g.k1);
  const int64_t key = ((b * g.N0 + a) * g.N1 + h) * g.cg + cl;
  T* dst = cache + slot * g.padded_row();
  if (tags[slot] == key) return dst;
  tags[slot] = key;
  const T* src = f + ((b * g.N0 + a) * g.N1 + h) * g.N2 * g.C + cl;
  zero(dst, g.p2 * g.E);
  zero(dst + (g.N2 + g.p2) * g.E, g.p2 * g.E);
  T* d = dst + g.p2 * g.E;
  if (g.cg == 1) {  // G = C: each channel repeated eg times, loops the compiler can vectorise
    switch (g.eg) {
      case 1: expand_fixed<T, 1>(src, d, g.N2, g.C); return dst;
      case 2: expand_fixed<T, 2>(src, d, g.N2, g.C); return dst;
      case 4: expand_fixed<T, 4>(src, d, g.N2, g.C); return dst;
      case 8: expand_fixed<T, 8>(src, d, g.N2, g.C); return dst;
      default: break;
    }
  }
  for (int64_t w = 0; w < g.N2; ++w) {
    T* dw = d + w * g.E;
    const T* sw = src + w * g.C;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T v = sw[gi * g.cg];
      for (int64_t jl = 0; jl < g.eg; ++jl) dw[gi * g.eg + jl] = v;
    }
  }
  return dst;
}

// acc_f[w] = A^T(f)[row (b, a, h), w] for NF fields at once (acc_f: N2 x E, overwritten).
template <typename T, int NF>
void adjoint_row(const NdcGeometry& g, const T* const* fields, const T* wt, T* cache, int64_t* tags,
                 int64_t b, int64_t a, int64_t h, T* const* acc) {
  const int64_t E = g.E;
  const int64_t max_rows = 64;  // kernel rows (o0, o1) per batch of taps
  const T* wrow[max_rows];
  const T* rows[max_rows * NF];
  const T* src[max_rows * NF];
  for (int f = 0; f < NF; ++f) zero(acc[f], g.N2 * E);
  for (int64_t cl = 0; cl < g.cg; ++cl) {
    int64_t nr = 0;
    auto run = [&]() {
      // voxel w reads expanded voxel w - o2 + 2 p2: a block starting at w reads from voxel w on
      auto src_at = [&](int64_t w, const T** bsrc) {
        for (int64_t r = 0; r < nr * NF; ++r) bsrc[r] = rows[r] + w * E;
      };
      for (int64_t w = taps_in_blocks<T, NF, false, false>(E, g.k2, nr, wrow, 0, g.N2, src_at, acc); w < g.N2; ++w) {
        T* out[NF];
        for (int64_t r = 0; r < nr * NF; ++r) src[r] = rows[r] + (w + 2 * g.p2) * E;
        for (int f = 0; f < NF; ++f) out[f] = acc[f] + w * E;
        accumulate_taps<T, NF>(E, nr, wrow, src, 0, g.k2, -E, out);
      }
      nr = 0;
    };
    for (int64_t o0 = 0; o0 < g.k0; ++o0) {
      const int64_t a2 = a - o0 + g.p0;
      if (a2 < 0 || a2 >= g.N0) continue;
      for (int64_t o1 = 0; o1 < g.k1; ++o1) {
        const int64_t h2 = h - o1 + g.p1;
        if (h2 < 0 || h2 >= g.N1) continue;
        for (int f = 0; f < NF; ++f) rows[nr * NF + f] = expanded_row(g, fields[f], f, cache, tags, b, a2, h2, cl);
        wrow[nr++] = wt + (cl * g.K + (o0 * g.k1 + o1) * g.k2) * E;
        if (nr == max_rows) run();
      }
    }
    if (nr) run();
  }
}

// synthesis_lanes for NF fields that share their row layout: field f's row is row_of(...) + f * delta.
template <typename T, bool RECTIFY, int NF, typename RowOf>
void synthesis_fields(const NdcGeometry& g, const T* wt, int64_t cl, int64_t a, int64_t h, RowOf row_of,
                      int64_t delta, T* const* acc) {
  const int64_t E = g.E;
  const int64_t max_rows = 64;
  const T* wrow[max_rows];
  const T* rows[max_rows];
  const T* src[max_rows * NF];
  int64_t nr = 0;
  for (int f = 0; f < NF; ++f) zero(acc[f], g.N2 * E);
  auto run = [&]() {
    // voxel w reads voxel w + o2 - p2, inside the row: blocks inside [p2, N2 - p2), the rest one by one
    auto src_at = [&](int64_t w, const T** bsrc) {
      for (int64_t r = 0; r < nr; ++r)
        for (int f = 0; f < NF; ++f) bsrc[r * NF + f] = rows[r] + f * delta + (w - g.p2) * E;
    };
    const int64_t w1 = imax(g.p2, g.N2 - g.p2);
    const int64_t done = taps_in_blocks<T, NF, true, RECTIFY>(E, g.k2, nr, wrow, g.p2, w1, src_at, acc);
    for (int64_t w = 0; w < g.N2; w = (w + 1 == g.p2 ? done : w + 1)) {
      const int64_t lo = imax(0, g.p2 - w), hi = imin(g.k2, g.N2 + g.p2 - w);
      for (int64_t r = 0; r < nr; ++r)
        for (int f = 0; f < NF; ++f) src[r * NF + f] = rows[r] + f * delta + (w - g.p2) * E;
      T* out[NF];
      for (int f = 0; f < NF; ++f) out[f] = acc[f] + w * E;
      accumulate_taps<T, NF, RECTIFY>(E, nr, wrow, src, lo, hi, E, out);
    }
    nr = 0;
  };
  for (int64_t o0 = 0; o0 < g.k0; ++o0) {
    for (int64_t o1 = 0; o1 < g.k1; ++o1) {
      const T* r = row_of(a + o0 - g.p0, h + o1 - g.p1);
      if (r == nullptr) continue;
      rows[nr] = r;
      wrow[nr++] = wt + (cl * g.K + (o0 * g.k1 + o1) * g.k2) * E;
      if (nr == max_rows) run();
    }
  }
  if (nr) run();
}

// acc[w] (N2 x E, overwritten) = sum_o wt[cl][o] * field[row (b, a + o0 - p0, h + o1 - p1), w + o2 - p2]
// for an E-channel field given by row pointers (row_of(a2, h2), null when outside).
template <typename T, bool RECTIFY, typename RowOf>
void synthesis_lanes(const NdcGeometry& g, const T* wt, int64_t cl, int64_t a, int64_t h, RowOf row_of, T* acc) {
  T* accs[1] = {acc};
  synthesis_fields<T, RECTIFY, 1>(g, wt, cl, a, h, row_of, 0, accs);
}

template <typename T>
inline void rectified(const T* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i] > T(0) ? src[i] : T(0);
}

// drow[o2][j] += sum_w coef[w][j] * src[(w - o2) * E + j] for all K2 taps o2 of a kernel row at
// once, sliding along the row: per voxel w one coef and one source vector are loaded for K2
// multiply-adds (the K2 x UU accumulators and the window src[w - K2 + 1 .. w] stay in registers;
// src[-1 .. -(K2 - 1)] must be readable, the padding of an expanded row).
template <typename T, int K2>
inline void filter_taps_fixed(int64_t E, int64_t N2, const T* coef, const T* src, T* drow) {
  typedef typename Vec<T>::type vt;
  constexpr int UU = clamped(NDC_VECTOR_REGISTERS / (2 * K2 + 1), 1, 4);
  constexpr int64_t VN = sizeof(vt) / sizeof(T), JB = UU * VN;
  int64_t j0 = 0;
  for (; j0 + JB <= E; j0 += JB) {
    vt acc[K2][UU], win[K2][UU];
    for (int o2 = 0; o2 < K2; ++o2)
      for (int u = 0; u < UU; ++u) {
        acc[o2][u] = vload(drow + o2 * E + j0 + u * VN);
        // before voxel w, win[o2] = src[w - o2 - 1] (win[K2 - 1] is shifted out unread)
        win[o2][u] = o2 + 1 < K2 ? vload(src - (o2 + 1) * E + j0 + u * VN) : vt{};
      }
    for (int64_t w = 0; w < N2; ++w) {
      for (int o2 = K2 - 1; o2 > 0; --o2)
        for (int u = 0; u < UU; ++u) win[o2][u] = win[o2 - 1][u];
      for (int u = 0; u < UU; ++u) {
        win[0][u] = vload(src + w * E + j0 + u * VN);
        const vt c = vload(coef + w * E + j0 + u * VN);
        for (int o2 = 0; o2 < K2; ++o2) acc[o2][u] += c * win[o2][u];
      }
    }
    for (int o2 = 0; o2 < K2; ++o2)
      for (int u = 0; u < UU; ++u) vstore(drow + o2 * E + j0 + u * VN, acc[o2][u]);
  }
  if (j0 == E) return;
  for (int o2 = 0; o2 < K2; ++o2)
    for (int64_t w = 0; w < N2; ++w) fma_lanes<T, false>(drow + o2 * E + j0, coef + w * E + j0, src + (w - o2) * E + j0, E - j0);
}

template <typename T>
inline void filter_taps(int64_t E, int64_t N2, int64_t k2, const T* coef, const T* src, T* drow) {
  switch (k2) {
    case 1: filter_taps_fixed<T, 1>(E, N2, coef, src, drow); return;
    case 3: filter_taps_fixed<T, 3>(E, N2, coef, src, drow); return;
    case 5: filter_taps_fixed<T, 5>(E, N2, coef, src, drow); return;
    case 7: filter_taps_fixed<T, 7>(E, N2, coef, src, drow); return;
    default:
      for (int64_t o2 = 0; o2 < k2; ++o2) {
        const T* c[1] = {coef};
        const T* sv[1] = {src - o2 * E};
        accumulate_row_products<T, 1>(E, N2, c, sv, drow + o2 * E);
      }
  }
}

// dw[cl][o] += sum_w coef_f[w] * expanded_f[w - o2 + pad] (the filter gradient terms sharing
// the adjoint's neighbourhood), accumulated in the row partial dwrow (cg x K x E).
template <typename T, int NF>
void filter_grad_row(const NdcGeometry& g, const T* const* fields, const T* const* coef, const T* wt_unused,
                     T* cache, int64_t* tags, int64_t b, int64_t a, int64_t h, T* dwrow) {
  (void)wt_unused;
  const int64_t E = g.E;
  for (int64_t cl = 0; cl < g.cg; ++cl) {
    for (int64_t o0 = 0; o0 < g.k0; ++o0) {
      const int64_t a2 = a - o0 + g.p0;
      if (a2 < 0 || a2 >= g.N0) continue;
      for (int64_t o1 = 0; o1 < g.k1; ++o1) {
        const int64_t h2 = h - o1 + g.p1;
        if (h2 < 0 || h2 >= g.N1) continue;
        const T* rows[NF];
        for (int f = 0; f < NF; ++f) rows[f] = expanded_row(g, fields[f], f, cache, tags, b, a2, h2, cl);
        T* drow = dwrow + (cl * g.K + (o0 * g.k1 + o1) * g.k2) * E;
        // voxel w pairs with expanded voxel w - o2 + 2 p2
        for (int f = 0; f < NF; ++f) filter_taps(E, g.N2, g.k2, coef[f], rows[f] + 2 * g.p2 * E, drow);
      }
    }
  }
}

template <typename T>
inline void flush(T* __restrict__ partial, double* __restrict__ total, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    total[i] += double(partial[i]);
    partial[i] = T(0);
  }
}

template <typename T>
inline void row_index(const NdcGeometry& g, int64_t row, int64_t& b, int64_t& a, int64_t& h) {
  h = row % g.N1;
  a = (row / g.N1) % g.N0;
  b = row / (g.N1 * g.N0);
}

}  // namespace

namespace {
// q = g s / den', p = q num' / den', neg_p = -p, and num <- g num' / den' (num' = num + eps, ...);
// restrict pointers so the loop vectorises.
template <typename T>
void elementwise_backward(const T* __restrict__ g, const T* __restrict__ s, T* __restrict__ num,
                          const T* __restrict__ den, T* __restrict__ q, T* __restrict__ p, T* __restrict__ neg_p,
                          int64_t n, T eps) {
  for (int64_t i = 0; i < n; ++i) {
    const T nn = num[i] + eps, inv = T(1) / (den[i] + eps);
    const T qi = g[i] * s[i] * inv, pi = qi * nn * inv;
    q[i] = qi;
    p[i] = pi;
    neg_p[i] = -pi;
    num[i] = g[i] * nn * inv;
  }
}

template <typename T>
void elementwise_update(const T* __restrict__ s, const T* __restrict__ num, const T* __restrict__ den,
                        T* __restrict__ out, int64_t n, T eps, bool rectify) {
  if (rectify) {
    for (int64_t i = 0; i < n; ++i) out[i] = (s[i] > T(0) ? s[i] : T(0)) * (num[i] + eps) / (den[i] + eps);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = s[i] * (num[i] + eps) / (den[i] + eps);
  }
}

template <typename T>
void copy_lanes(const T* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

template <typename T>
void subtract_adjoint(const T* __restrict__ s, const T* __restrict__ acc, T* __restrict__ gs, int64_t n,
                      bool rectify) {
  if (rectify) {
    for (int64_t i = 0; i < n; ++i) gs[i] = s[i] > T(0) ? gs[i] - acc[i] : T(0);
  } else {
    for (int64_t i = 0; i < n; ++i) gs[i] -= acc[i];
  }
}

template <typename T>
void negated(const T* __restrict__ s, T* __restrict__ dst, int64_t n, bool rectify) {
  for (int64_t i = 0; i < n; ++i) dst[i] = (s[i] > T(0) || !rectify) ? -s[i] : T(0);
}
}  // namespace

}  // namespace NDC_NS
