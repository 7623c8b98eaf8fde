// Geometry of one NDC update and the kernels' entry points, shared by the ATen front end
// (ndc_cpu.cpp) and the three builds of the kernels (ndc_kernels_base.cpp, ndc_kernels_avx2.cpp,
// ndc_kernels_avx512.cpp).
//
// Every field is stored channels-last: x, y, A(q), A(p) as (B, N0, N1, N2, C), s and grad_s as
// (B, N0, N1, N2, E), and the output and its gradient g, which cover the window's planes only, as
// (B, hi - lo, N1, N2, E). 3D maps (D, H, W) to (N0, N1, N2); 2D maps (H, W) to
// (H, 1, W) with kernel (kh, 1, kw). Filters are passed as wt (cg, K, E):
//     wt[cl][o][j] = V[g(j) * cg + cl, j % eg, o],  g(j) = j / eg,  o = (o0 * k1 + o1) * k2 + o2.
#pragma once

#include <cstdint>
#include <vector>  // before the kernels' `#pragma GCC target`: the planar kernels' row lists

struct NdcGeometry {
  int64_t B, N0, N1, N2;  // batch and the three spatial extents
  int64_t C, E, G, cg, eg;  // channels, sources, groups, channels and sources per group
  int64_t k0, k1, k2, K;  // kernel extents and K = k0 * k1 * k2
  int64_t p0, p1, p2;  // "same" padding, k // 2
  int64_t lo, hi;  // the window: the planes [lo, hi) of the first axis the update's output has
  // where row (b, a, h), a in [lo, hi), starts in a window-shaped (B, hi - lo, N1, N2, E) field
  int64_t window_offset(int64_t b, int64_t a, int64_t h) const { return ((b * (hi - lo) + a - lo) * N1 + h) * N2 * E; }
  int64_t padded_row() const { return (N2 + 2 * p2) * E; }  // one expanded row, with w-padding
  int64_t cache_len() const { return k0 * k1 * padded_row(); }  // one field's row cache
};

// Scratch each kernel needs per thread, in elements of T (see ndc_cpu.cpp).
inline int64_t synthesis_scratch(const NdcGeometry& g) { return g.N2 * g.E; }
inline int64_t update_scratch(const NdcGeometry& g) { return 2 * g.N2 * g.E + 2 * g.cache_len(); }
inline int64_t backward_scratch(const NdcGeometry& g) {
  return 2 * g.k0 * g.N1 * g.N2 * g.E + 5 * g.N2 * g.E + g.cg * g.K * g.E + 2 * g.cache_len();
}
inline int64_t adjoint_scratch(const NdcGeometry& g) {
  return 2 * g.N2 * g.E + g.cg * g.K * g.E + g.cache_len();
}
inline int64_t cache_tags(const NdcGeometry& g) { return 2 * g.k0 * g.k1; }

#define NDC_DECLARE_KERNELS(NS)                                                                      \
  namespace NS {                                                                                     \
  template <typename T>                                                                              \
  void synthesis_rows(const NdcGeometry& g, const T* s, const T* wt, T* y, T* scratch,             \
                      int64_t row0, int64_t row1, bool rectify);                                    \
  template <typename T>                                                                              \
  void update_rows(const NdcGeometry& g, const T* x, const T* y, const T* s, const T* wt, T* out,   \
                   T* scratch, int64_t* tags, int64_t row0, int64_t row1, T eps, bool rectify);     \
  template <typename T>                                                                              \
  void backward_planes(const NdcGeometry& g, const T* x, const T* y, const T* s, const T* grad,    \
                       const T* wt, T* grad_s, T* grad_x, T* ap, T* out, double* dw, T* scratch,   \
                       int64_t* tags, int64_t plane0, int64_t plane1, T eps, bool rectify,         \
                       bool need_x, bool need_s, bool need_w);                                      \
  template <typename T>                                                                              \
  void adjoint_rows(const NdcGeometry& g, const T* ap, const T* s, const T* wt, T* grad_s,         \
                    double* dw, T* scratch, int64_t* tags, int64_t row0, int64_t row1,             \
                    bool rectify, bool need_s, bool need_w);                                        \
  template <typename T>                                                                              \
  void synthesis_rows_planar(const NdcGeometry& g, const T* s, const T* wt, T* y, int64_t row0,    \
                             int64_t row1, bool rectify);                                           \
  template <typename T>                                                                              \
  void update_rows_planar(const NdcGeometry& g, const T* x, const T* y, const T* s, const T* wt,   \
                          T* out, int64_t row0, int64_t row1, T eps, bool rectify);                 \
  }

NDC_DECLARE_KERNELS(ndc_base)
NDC_DECLARE_KERNELS(ndc_avx2)
NDC_DECLARE_KERNELS(ndc_avx512)
