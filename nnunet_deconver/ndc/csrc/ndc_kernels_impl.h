// The NDC kernels on raw channels-last buffers; included once per instruction set by
// ndc_kernels_base.cpp, ndc_kernels_avx2.cpp and ndc_kernels_avx512.cpp with NDC_NS set to the
// namespace to fill (and NDC_VECTOR_BYTES to the vector width, when not 32). It includes only
// ndc_kernels_inner.h and ndc_kernels_planar.h (the forward kernels of the planar source order),
// so that every function it defines is compiled for that instruction set alone (the includers put
// their headers before their `#pragma GCC target`).
//
// Notation (see ndc_geometry.h for the layout and wt): a row is (b, a, h), N2 voxels; an
// "expanded" row of a C-channel field f for in-group channel cl holds, for each voxel w and source
// j, f[w][g(j) * cg + cl], so that the adjoint A^T becomes elementwise products over E lanes:
//     A(s)[v][g * cg + cl] = sum_{o, j in g}  wt[cl][o][j] * s[v + o - pad][j]
//     A^T(f)[v][j]         = sum_{cl, o}      wt[cl][o][j] * expanded_cl(f)[v - o + pad][j]
// Inner loops run over the E lanes of a voxel: the taps in registers of GCC's vector extensions
// (ndc_kernels_inner.h), the elementwise passes as loops the compiler vectorises (-O3, restrict).

#include "ndc_kernels_inner.h"
#include "ndc_kernels_planar.h"

namespace NDC_NS {

// ---------------------------------------------------------------------------------------------
// Entry points (declared in ndc_geometry.h). Each processes a range of rows (or planes) of the
// flattened (B, N0, N1) grid; the caller gives each thread one range and its own scratch.

// y = A(s) (C channels) for rows [row0, row1).
template <typename T>
void synthesis_rows(const NdcGeometry& g, const T* s, const T* wt, T* y, T* scratch, int64_t row0, int64_t row1,
                    bool rectify) {
  T* acc = scratch;
  for (int64_t row = row0; row < row1; ++row) {
    int64_t b, a, h;
    row_index<T>(g, row, b, a, h);
    auto row_of = [&](int64_t a2, int64_t h2) -> const T* {
      if (a2 < 0 || a2 >= g.N0 || h2 < 0 || h2 >= g.N1) return nullptr;
      return s + ((b * g.N0 + a2) * g.N1 + h2) * g.N2 * g.E;
    };
    T* yrow = y + row * g.N2 * g.C;
    for (int64_t cl = 0; cl < g.cg; ++cl) {
      if (rectify) synthesis_lanes<T, true>(g, wt, cl, a, h, row_of, acc);
      else synthesis_lanes<T, false>(g, wt, cl, a, h, row_of, acc);
      for (int64_t w = 0; w < g.N2; ++w) segment_sum(g, acc + w * g.E, yrow + w * g.C + cl);
    }
  }
}

// out = s * (A^T(x) + eps) / (A^T(y) + eps) for rows [row0, row1), all within the window.
template <typename T>
void update_rows(const NdcGeometry& g, const T* x, const T* y, const T* s, const T* wt, T* out, T* scratch,
                 int64_t* tags, int64_t row0, int64_t row1, T eps, bool rectify) {
  const int64_t n = g.N2 * g.E;
  T* num = scratch;
  T* den = num + n;
  T* cache = den + n;
  for (int64_t i = 0; i < cache_tags(g); ++i) tags[i] = -1;
  const T* fields[2] = {x, y};
  T* acc[2] = {num, den};
  for (int64_t row = row0; row < row1; ++row) {
    int64_t b, a, h;
    row_index<T>(g, row, b, a, h);
    adjoint_row<T, 2>(g, fields, wt, cache, tags, b, a, h, acc);
    elementwise_update(s + row * n, num, den, out + g.window_offset(b, a, h), n, eps, rectify);
  }
}

// Backward, first pass, for planes [plane0, plane1) of the flattened (B, N0) grid. Recomputes num
// and den, forms q = g s / den and p = q num / den for the planes and a halo of p0 planes on
// either side (kept in a ring of k0 planes), writes grad_s = g num / den, adds the filter-gradient
// terms W(q, x) - W(p, y) to dw, and gathers grad_x = A(q) and ap = A(p) from the ring. The
// gradient g covers the window [g.lo, g.hi) and is zero elsewhere (there q = p = grad_s = 0, and
// nothing is computed); `out`, when not null, receives the update s * num / den on the window's
// planes of the range (what the forward pass returned there).
template <typename T>
void backward_planes(const NdcGeometry& g, const T* x, const T* y, const T* s, const T* grad, const T* wt,
                     T* grad_s, T* grad_x, T* ap, T* out, double* dw, T* scratch, int64_t* tags, int64_t plane0,
                     int64_t plane1, T eps, bool rectify, bool need_x, bool need_s, bool need_w) {
  const int64_t E = g.E, n = g.N2 * E, plane_len = g.N1 * n, nw = g.cg * g.K * E;
  T* ring_q = scratch;
  T* ring_p = ring_q + g.k0 * plane_len;
  T* num = ring_p + g.k0 * plane_len;
  T* den = num + n;
  T* accq = den + n;
  T* accp = accq + n;
  T* srow_r = accp + n;
  T* dwrow = srow_r + n;
  T* cache = dwrow + nw;
  for (int64_t i = 0; i < cache_tags(g); ++i) tags[i] = -1;
  zero(dwrow, nw);
  const T* fields[2] = {x, y};
  const bool need_ap = need_s || need_w;
  for (int64_t p = plane0; p < plane1;) {
    const int64_t b = p / g.N0, a0 = p % g.N0, a1 = imin(g.N0, a0 + (plane1 - p));
    p += a1 - a0;
    for (int64_t t = a0 - g.p0; t < a1 + g.p0; ++t) {
      if (t >= 0 && t < g.N0) {
        const bool own = t >= a0 && t < a1;
        T* qpl = ring_q + (t % g.k0) * plane_len;
        T* ppl = ring_p + (t % g.k0) * plane_len;
        const bool live = t >= g.lo && t < g.hi;
        if (!live) {
          zero(qpl, plane_len);
          zero(ppl, plane_len);
          if (own && need_s) zero(grad_s + (b * g.N0 + t) * plane_len, plane_len);
        }
        for (int64_t h = 0; h < g.N1 && live; ++h) {
          T* acc[2] = {num, den};
          adjoint_row<T, 2>(g, fields, wt, cache, tags, b, t, h, acc);
          const int64_t v0 = ((b * g.N0 + t) * g.N1 + h) * n;
          const T* sr = s + v0;
          if (rectify) {
            rectified(sr, srow_r, n);
            sr = srow_r;
          }
          T* qr = qpl + h * n;
          T* neg_p = accp;
          const int64_t vw = g.window_offset(b, t, h);
          if (own && out != nullptr) elementwise_update(sr, num, den, out + vw, n, eps, false);
          elementwise_backward(grad + vw, sr, num, den, qr, ppl + h * n, neg_p, n, eps);
          if (!own) continue;
          if (need_s) copy_lanes(num, grad_s + v0, n);
          if (need_w) {
            const T* coef[2] = {qr, neg_p};
            filter_grad_row<T, 2>(g, fields, coef, wt, cache, tags, b, t, h, dwrow);
            flush(dwrow, dw, nw);
          }
        }
      }
      const int64_t c = t - g.p0;
      if (c < a0 || c >= a1 || !(need_x || need_ap)) continue;
      auto ring_row = [&](const T* ring) {
        return [&g, ring, n, plane_len](int64_t a2, int64_t h2) -> const T* {
          if (a2 < 0 || a2 >= g.N0 || h2 < 0 || h2 >= g.N1) return nullptr;
          return ring + (a2 % g.k0) * plane_len + h2 * n;
        };
      };
      for (int64_t h = 0; h < g.N1; ++h) {
        const int64_t r = (b * g.N0 + c) * g.N1 + h;
        for (int64_t cl = 0; cl < g.cg; ++cl) {
          if (need_x && need_ap) {  // A(q) and A(p) in one sweep: ring_p = ring_q + k0 planes
            T* accs[2] = {accq, accp};
            synthesis_fields<T, false, 2>(g, wt, cl, c, h, ring_row(ring_q), ring_p - ring_q, accs);
          } else if (need_x) {
            synthesis_lanes<T, false>(g, wt, cl, c, h, ring_row(ring_q), accq);
          } else {
            synthesis_lanes<T, false>(g, wt, cl, c, h, ring_row(ring_p), accp);
          }
          for (int64_t w = 0; w < g.N2 && need_x; ++w)
            segment_sum(g, accq + w * E, grad_x + (r * g.N2 + w) * g.C + cl);
          for (int64_t w = 0; w < g.N2 && need_ap; ++w)
            segment_sum(g, accp + w * E, ap + (r * g.N2 + w) * g.C + cl);
        }
      }
    }
  }
}

// Backward, second pass, rows [row0, row1): grad_s -= A^T(ap) (then the ReLU mask when the source
// is rectified inside the update) and dw -= W(s, ap).
template <typename T>
void adjoint_rows(const NdcGeometry& g, const T* ap, const T* s, const T* wt, T* grad_s, double* dw, T* scratch,
                  int64_t* tags, int64_t row0, int64_t row1, bool rectify, bool need_s, bool need_w) {
  const int64_t n = g.N2 * g.E, nw = g.cg * g.K * g.E;
  T* acc = scratch;
  T* neg_s = acc + n;
  T* dwrow = neg_s + n;
  T* cache = dwrow + nw;
  for (int64_t i = 0; i < cache_tags(g); ++i) tags[i] = -1;
  zero(dwrow, nw);
  const T* fields[1] = {ap};
  for (int64_t row = row0; row < row1; ++row) {
    int64_t b, a, h;
    row_index<T>(g, row, b, a, h);
    const T* sr = s + row * n;
    if (need_s) {
      T* accs[1] = {acc};
      adjoint_row<T, 1>(g, fields, wt, cache, tags, b, a, h, accs);
      subtract_adjoint(sr, acc, grad_s + row * n, n, rectify);
    }
    if (need_w) {
      negated(sr, neg_s, n, rectify);
      const T* coef[1] = {neg_s};
      filter_grad_row<T, 1>(g, fields, coef, wt, cache, tags, b, a, h, dwrow);
      flush(dwrow, dw, nw);
    }
  }
}

}  // namespace NDC_NS

#define NDC_INSTANTIATE(T)                                                                               \
  template void NDC_NS::synthesis_rows<T>(const NdcGeometry&, const T*, const T*, T*, T*, int64_t, int64_t, bool); \
  template void NDC_NS::update_rows<T>(const NdcGeometry&, const T*, const T*, const T*, const T*, T*, T*,       \
                                       int64_t*, int64_t, int64_t, T, bool);                                    \
  template void NDC_NS::backward_planes<T>(const NdcGeometry&, const T*, const T*, const T*, const T*,          \
                                           const T*, T*, T*, T*, T*, double*, T*, int64_t*, int64_t, int64_t,   \
                                           T, bool, bool, bool, bool);                                          \
  template void NDC_NS::adjoint_rows<T>(const NdcGeometry&, const T*, const T*, const T*, T*, double*, T*,      \
                                        int64_t*, int64_t, int64_t, bool, bool, bool);                 \
  template void NDC_NS::synthesis_rows_planar<T>(const NdcGeometry&, const T*, const T*, T*, int64_t, int64_t,  \
                                                 bool);                                                      \
  template void NDC_NS::update_rows_planar<T>(const NdcGeometry&, const T*, const T*, const T*, const T*, T*,    \
                                              int64_t, int64_t, T, bool);
NDC_INSTANTIATE(float)
NDC_INSTANTIATE(double)
#undef NDC_INSTANTIATE
