// The forward kernels for sources in planar lane order, groups of one channel (G = C, cg = 1):
// source jl of channel c in lane j = jl * C + c (the usual order is c * eg + jl). Then a vector
// of VN neighbouring lanes holds VN channels, so
//     A(s)[v][c]          = sum_{o, jl} wt[o][jl * C + c] * s[v + o - pad][jl * C + c]
//     A^T(f)[v][jl*C + c] = sum_o       wt[o][jl * C + c] * f[v - o + pad][c]
// (wt (K, E), wt[o][jl * C + c] = V[c, jl, o]) are products of whole vectors: the synthesis needs
// no sum across lanes, the adjoint reads the C-channel fields themselves (no expanded rows), each
// loaded vector feeds the eg sources of its channels, and the update is formed in registers. The
// synthesis computes SYNTHESIS_ROWS neighbouring rows at a time, band by band across the planes,
// so that each source row is loaded once for the rows it feeds and stays in the cache for the next
// plane's band (s has E = R * C lanes per voxel: its rows are the kernels' largest reads).
// Included by ndc_kernels_impl.h inside the same instruction-set region (after ndc_kernels_inner.h).

namespace NDC_NS {
namespace {

// V: a vector type of the build or T itself (the lanes left over when C is not a multiple of VN).
template <typename V, typename T>
inline V load_lanes(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void store_lanes(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}
template <typename V>
inline V relu_lanes(V v) {
  return v > V{} ? v : V{};
}

// Output voxels per block of the planar update: 2 fields x 4 sources x WB accumulators,
// 2 x (WB + K2 - 1) source vectors and a filter vector stay in registers (one spare).
constexpr int update_width(int K2) { return clamped((NDC_VECTOR_REGISTERS - 2 - 2 * (K2 - 1)) / (2 * 4 + 2), 1, 8); }

// Kernel rows (o0, o1) of the output row (b, a, h) inside the grid: their source rows (E lanes per
// voxel for the synthesis, which reads a + o0 - p0; C lanes for the adjoint, which reads
// a - o0 + p0) and filter rows wt + (o0 * k1 + o1) * k2 * E. Returns their number.
template <typename T>
inline int64_t kernel_rows(const NdcGeometry& g, const T* field, int64_t lanes, bool adjoint, const T* wt,
                           int64_t b, int64_t a, int64_t h, const T** rows, const T** wrows) {
  int64_t nr = 0;
  for (int64_t o0 = 0; o0 < g.k0; ++o0) {
    const int64_t a2 = adjoint ? a - o0 + g.p0 : a + o0 - g.p0;
    if (a2 < 0 || a2 >= g.N0) continue;
    for (int64_t o1 = 0; o1 < g.k1; ++o1) {
      const int64_t h2 = adjoint ? h - o1 + g.p1 : h + o1 - g.p1;
      if (h2 < 0 || h2 >= g.N1) continue;
      rows[nr] = field + ((b * g.N0 + a2) * g.N1 + h2) * g.N2 * lanes;
      wrows[nr++] = wt + (o0 * g.k1 + o1) * g.k2 * g.E;
    }
  }
  return nr;
}

// Rows per block of the synthesis: neighbouring rows of a plane share most of their sources.
constexpr int64_t SYNTHESIS_ROWS = 3;

// Output voxels per block of the synthesis over SYNTHESIS_ROWS rows: a WB-voxel accumulator per
// row, WB + K2 - 1 source vectors and a filter vector in registers (two spare). Blocks of a single
// row (where fewer rows are left) keep the same width, so both cover the same voxels.
constexpr int synthesis_width(int K2) {
  return clamped((NDC_VECTOR_REGISTERS - K2 - 2) / (int(SYNTHESIS_ROWS) + 1), 1, 8);
}

// y[w][c .. c + VN) of the output rows (b, a, h + dh), dh < HB, for the WB voxels from w0, all of
// whose sources w0 - p2 .. w0 + WB - 1 + p2 lie inside the row (K2 = k2). Each source row
// (a + o0 - p0, h2) is loaded once for every output row it feeds (h2 = h + dh + o1 - p1). y: row h.
template <typename T, typename V, int K2, int HB, bool RECTIFY>
inline void synthesis_block(const NdcGeometry& g, const T* s, const T* wt, int64_t b, int64_t a, int64_t h,
                            int64_t w0, int64_t c, T* y) {
  constexpr int WB = synthesis_width(K2), M = WB + K2 - 1;
  V acc[HB][WB] = {};
  for (int64_t o0 = 0; o0 < g.k0; ++o0) {
    const int64_t a2 = a + o0 - g.p0;
    if (a2 < 0 || a2 >= g.N0) continue;
    for (int64_t h2 = imax(0, h - g.p1); h2 < imin(g.N1, h + HB + g.p1); ++h2) {
      const T* row = s + ((b * g.N0 + a2) * g.N1 + h2) * g.N2 * g.E + (w0 - K2 / 2) * g.E + c;
      for (int64_t jl = 0; jl < g.eg; ++jl) {
        V v[M];
        for (int m = 0; m < M; ++m) {
          v[m] = load_lanes<V>(row + m * g.E + jl * g.C);
          if (RECTIFY) v[m] = relu_lanes(v[m]);
        }
        for (int dh = 0; dh < HB; ++dh) {
          const int64_t o1 = h2 - h - dh + g.p1;
          if (o1 < 0 || o1 >= g.k1) continue;
          const T* wp = wt + (o0 * g.k1 + o1) * g.k2 * g.E + jl * g.C + c;
          for (int o2 = 0; o2 < K2; ++o2) {
            const V wv = load_lanes<V>(wp + o2 * g.E);
            for (int wb = 0; wb < WB; ++wb) acc[dh][wb] += wv * v[wb + o2];
          }
        }
      }
    }
  }
  for (int dh = 0; dh < HB; ++dh)
    for (int wb = 0; wb < WB; ++wb) store_lanes(y + dh * g.N2 * g.C + (w0 + wb) * g.C + c, acc[dh][wb]);
}

// The same for one voxel w anywhere in the row (taps outside it skipped), any k2.
template <typename T, typename V, bool RECTIFY>
inline void synthesis_voxel(const NdcGeometry& g, int64_t nr, const T* const* rows, const T* const* wrows,
                            int64_t w, int64_t c, T* yrow) {
  V acc{};
  const int64_t lo = imax(0, g.p2 - w), hi = imin(g.k2, g.N2 + g.p2 - w);
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t jl = 0; jl < g.eg; ++jl)
      for (int64_t o2 = lo; o2 < hi; ++o2) {
        V v = load_lanes<V>(rows[r] + (w + o2 - g.p2) * g.E + jl * g.C + c);
        if (RECTIFY) v = relu_lanes(v);
        acc += load_lanes<V>(wrows[r] + o2 * g.E + jl * g.C + c) * v;
      }
  store_lanes(yrow + w * g.C + c, acc);
}

// fn(V{}, c) for each vector of VN lanes [c, c + VN) of C channels, then fn(T{}, c) for each lane left.
template <typename T, typename F>
inline void over_lanes(int64_t C, F fn) {
  typedef typename Vec<T>::type vt;
  constexpr int64_t VN = sizeof(vt) / sizeof(T);
  int64_t c = 0;
  for (; c + VN <= C; c += VN) fn(vt{}, c);
  for (; c < C; ++c) fn(T{}, c);
}

// The output rows (b, a, h + dh), dh < hb (1 or SYNTHESIS_ROWS): blocks of voxels where the rows
// allow (k2 = K2), voxel by voxel elsewhere; each block for all channels before the next, so the
// source rows are read in voxel order. rows / wrows: room for k0 * k1 pointers each.
template <typename T, int K2, bool RECTIFY>
inline void synthesis_rows_of(const NdcGeometry& g, const T* s, const T* wt, int64_t b, int64_t a, int64_t h,
                              int64_t hb, const T** rows, const T** wrows, T* y) {
  constexpr int WB = synthesis_width(K2);
  int64_t end = 0;  // blocks cover [p2, end)
  if constexpr (K2 > 0) {
    end = g.p2 + imax(0, g.N2 - 2 * g.p2) / WB * WB;  // K2 > 0: K2 is k2 (the dispatch's choice)
    for (int64_t w = g.p2; w < end; w += WB)
      over_lanes<T>(g.C, [&](auto v, int64_t c) {
        typedef decltype(v) V;
        if (hb == SYNTHESIS_ROWS) synthesis_block<T, V, K2, SYNTHESIS_ROWS, RECTIFY>(g, s, wt, b, a, h, w, c, y);
        else synthesis_block<T, V, K2, 1, RECTIFY>(g, s, wt, b, a, h, w, c, y);
      });
  }
  for (int64_t dh = 0; dh < hb; ++dh) {
    const int64_t nr = kernel_rows(g, s, g.E, false, wt, b, a, h + dh, rows, wrows);
    T* yrow = y + dh * g.N2 * g.C;
    for (int64_t w = 0; w < g.N2; ++w) {
      if (w == g.p2 && end > w) w = end;
      if (w >= g.N2) break;
      over_lanes<T>(g.C, [&](auto v, int64_t c) {
        synthesis_voxel<T, decltype(v), RECTIFY>(g, nr, rows, wrows, w, c, yrow);
      });
    }
  }
}

template <typename T, bool RECTIFY>
inline void synthesis_planar_dispatch(const NdcGeometry& g, const T* s, const T* wt, int64_t b, int64_t a, int64_t h,
                                      int64_t hb, const T** rows, const T** wrows, T* y) {
  switch (g.k2) {
    case 1: synthesis_rows_of<T, 1, RECTIFY>(g, s, wt, b, a, h, hb, rows, wrows, y); return;
    case 3: synthesis_rows_of<T, 3, RECTIFY>(g, s, wt, b, a, h, hb, rows, wrows, y); return;
    case 5: synthesis_rows_of<T, 5, RECTIFY>(g, s, wt, b, a, h, hb, rows, wrows, y); return;
    case 7: synthesis_rows_of<T, 7, RECTIFY>(g, s, wt, b, a, h, hb, rows, wrows, y); return;
    default: synthesis_rows_of<T, 0, RECTIFY>(g, s, wt, b, a, h, hb, rows, wrows, y);  // voxel by voxel
  }
}

// out[w][jl * C + c] = s' (A^T(x) + eps) / (A^T(y) + eps) (s' = max(s, 0) when rectified) for the
// sources jl0 .. jl0 + JB - 1 of the lanes [c, c + VN) and the WB voxels from w0, whose taps all lie
// inside the row. xrows / yrows: the C-channel source rows; srow / orow: the E-lane rows of s and out.
template <typename T, typename V, int K2, int JB, int WB>
inline void update_block(const NdcGeometry& g, int64_t nr, const T* const* xrows, const T* const* yrows,
                         const T* const* wrows, int64_t jl0, int64_t w0, int64_t c, const T* srow, T* orow, T eps,
                         bool rectify) {
  constexpr int M = WB + K2 - 1;
  V num[JB][WB] = {}, den[JB][WB] = {};
  for (int64_t r = 0; r < nr; ++r) {
    // output wb, tap o2 reads voxel w0 + wb - o2 + p2 = (w0 - p2) + wb + (K2 - 1 - o2)
    const T* xp = xrows[r] + (w0 - K2 / 2) * g.C + c;
    const T* yp = yrows[r] + (w0 - K2 / 2) * g.C + c;
    V xv[M], yv[M];
    for (int m = 0; m < M; ++m) {
      xv[m] = load_lanes<V>(xp + m * g.C);
      yv[m] = load_lanes<V>(yp + m * g.C);
    }
    for (int jl = 0; jl < JB; ++jl)
      for (int o2 = 0; o2 < K2; ++o2) {
        const V wv = load_lanes<V>(wrows[r] + o2 * g.E + (jl0 + jl) * g.C + c);
        for (int wb = 0; wb < WB; ++wb) {
          num[jl][wb] += wv * xv[wb + K2 - 1 - o2];
          den[jl][wb] += wv * yv[wb + K2 - 1 - o2];
        }
      }
  }
  const V e = V{} + eps;
  for (int jl = 0; jl < JB; ++jl)
    for (int wb = 0; wb < WB; ++wb) {
      const int64_t at = (w0 + wb) * g.E + (jl0 + jl) * g.C + c;
      V s = load_lanes<V>(srow + at);
      if (rectify) s = relu_lanes(s);
      store_lanes(orow + at, s * (num[jl][wb] + e) / (den[jl][wb] + e));
    }
}

// The same for one voxel w anywhere in the row and every source, any k2.
template <typename T, typename V>
inline void update_voxel(const NdcGeometry& g, int64_t nr, const T* const* xrows, const T* const* yrows,
                         const T* const* wrows, int64_t w, int64_t c, const T* srow, T* orow, T eps, bool rectify) {
  const int64_t lo = imax(0, w + g.p2 - (g.N2 - 1)), hi = imin(g.k2, w + g.p2 + 1);
  const V e = V{} + eps;
  for (int64_t jl = 0; jl < g.eg; ++jl) {
    V num{}, den{};
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t o2 = lo; o2 < hi; ++o2) {
        const V wv = load_lanes<V>(wrows[r] + o2 * g.E + jl * g.C + c);
        const int64_t at = (w - o2 + g.p2) * g.C + c;
        num += wv * load_lanes<V>(xrows[r] + at);
        den += wv * load_lanes<V>(yrows[r] + at);
      }
    const int64_t at = w * g.E + jl * g.C + c;
    V s = load_lanes<V>(srow + at);
    if (rectify) s = relu_lanes(s);
    store_lanes(orow + at, s * (num + e) / (den + e));
  }
}

// One output row of the update: blocks of WB voxels and up to 4 sources where every tap lies
// inside the row (k2 = K2), voxel by voxel elsewhere; each block or voxel for all channels and
// sources before the next.
template <typename T, int K2>
inline void update_row_planar(const NdcGeometry& g, int64_t nr, const T* const* xrows, const T* const* yrows,
                              const T* const* wrows, const T* srow, T* orow, T eps, bool rectify) {
  auto voxel = [&](int64_t w) {
    over_lanes<T>(g.C, [&](auto v, int64_t c) {
      update_voxel<T, decltype(v)>(g, nr, xrows, yrows, wrows, w, c, srow, orow, eps, rectify);
    });
  };
  int64_t w = 0;
  for (; w < g.p2 && w < g.N2; ++w) voxel(w);
  if constexpr (K2 > 0) {
    constexpr int WB = update_width(K2);
    for (; w + WB + g.p2 <= g.N2; w += WB) {  // K2 > 0: K2 is k2 (the dispatch's choice)
      for (int64_t jl0 = 0; jl0 < g.eg; jl0 += 4) {
        over_lanes<T>(g.C, [&](auto v, int64_t c) {
          typedef decltype(v) V;
          switch (imin(4, g.eg - jl0)) {
            case 1:
              update_block<T, V, K2, 1, WB>(g, nr, xrows, yrows, wrows, jl0, w, c, srow, orow, eps, rectify);
              break;
            case 2:
              update_block<T, V, K2, 2, WB>(g, nr, xrows, yrows, wrows, jl0, w, c, srow, orow, eps, rectify);
              break;
            case 3:
              update_block<T, V, K2, 3, WB>(g, nr, xrows, yrows, wrows, jl0, w, c, srow, orow, eps, rectify);
              break;
            default:
              update_block<T, V, K2, 4, WB>(g, nr, xrows, yrows, wrows, jl0, w, c, srow, orow, eps, rectify);
          }
        });
      }
    }
  }
  for (; w < g.N2; ++w) voxel(w);
}

template <typename T>
inline void update_planar_dispatch(const NdcGeometry& g, int64_t nr, const T* const* xrows, const T* const* yrows,
                                   const T* const* wrows, const T* srow, T* orow, T eps, bool rectify) {
  switch (g.k2) {
    case 1: update_row_planar<T, 1>(g, nr, xrows, yrows, wrows, srow, orow, eps, rectify); return;
    case 3: update_row_planar<T, 3>(g, nr, xrows, yrows, wrows, srow, orow, eps, rectify); return;
    case 5: update_row_planar<T, 5>(g, nr, xrows, yrows, wrows, srow, orow, eps, rectify); return;
    case 7: update_row_planar<T, 7>(g, nr, xrows, yrows, wrows, srow, orow, eps, rectify); return;
    default: update_row_planar<T, 0>(g, nr, xrows, yrows, wrows, srow, orow, eps, rectify);
  }
}

}  // namespace

// y = A(s) for rows [row0, row1) (within one sample), s in planar order, G = C. The whole planes of
// the range go band by band: SYNTHESIS_ROWS rows (h) of every plane (a) before the next band, so
// that the source rows of one plane's band are still in the cache for the next plane's (most of
// them are the same); the rows of partial planes one at a time.
template <typename T>
void synthesis_rows_planar(const NdcGeometry& g, const T* s, const T* wt, T* y, int64_t row0, int64_t row1,
                           bool rectify) {
  std::vector<const T*> row_buffer(2 * g.k0 * g.k1);
  const T** rows = row_buffer.data();
  const T** wrows = rows + g.k0 * g.k1;
  auto run = [&](int64_t row, int64_t hb) {
    int64_t b, a, h;
    row_index<T>(g, row, b, a, h);
    if (rectify) synthesis_planar_dispatch<T, true>(g, s, wt, b, a, h, hb, rows, wrows, y + row * g.N2 * g.C);
    else synthesis_planar_dispatch<T, false>(g, s, wt, b, a, h, hb, rows, wrows, y + row * g.N2 * g.C);
  };
  const int64_t first = (row0 + g.N1 - 1) / g.N1 * g.N1, last = row1 / g.N1 * g.N1;  // whole planes: [first, last)
  if (first >= last) {
    for (int64_t row = row0; row < row1; ++row) run(row, 1);
    return;
  }
  for (int64_t row = row0; row < first; ++row) run(row, 1);
  for (int64_t h = 0; h < g.N1; h += SYNTHESIS_ROWS) {
    const int64_t hb = h + SYNTHESIS_ROWS <= g.N1 ? SYNTHESIS_ROWS : 1;
    for (int64_t plane = first; plane < last; plane += g.N1)
      for (int64_t dh = 0; dh < (hb == 1 ? g.N1 - h : hb); dh += hb) run(plane + h + dh, hb);
  }
  for (int64_t row = last; row < row1; ++row) run(row, 1);
}

// out = s' (A^T(x) + eps) / (A^T(y) + eps) for rows [row0, row1), all within the window; s and
// out in planar order, G = C.
template <typename T>
void update_rows_planar(const NdcGeometry& g, const T* x, const T* y, const T* s, const T* wt, T* out,
                        int64_t row0, int64_t row1, T eps, bool rectify) {
  std::vector<const T*> row_buffer(3 * g.k0 * g.k1);
  const T** xrows = row_buffer.data();
  const T** yrows = xrows + g.k0 * g.k1;
  const T** wrows = yrows + g.k0 * g.k1;
  for (int64_t row = row0; row < row1; ++row) {
    int64_t b, a, h;
    row_index<T>(g, row, b, a, h);
    const int64_t nr = kernel_rows(g, x, g.C, true, wt, b, a, h, xrows, wrows);
    for (int64_t r = 0; r < nr; ++r) yrows[r] = y + (xrows[r] - x);  // y's rows at x's offsets
    const T* srow = s + row * g.N2 * g.E;
    T* orow = out + g.window_offset(b, a, h);
    update_planar_dispatch<T>(g, nr, xrows, yrows, wrows, srow, orow, eps, rectify);
  }
}

}  // namespace NDC_NS
