// The taps of the NDC kernels in registers: vector types, accumulate_taps (one output voxel) and
// accumulate_taps_block (several neighbouring output voxels, each source vector loaded once for
// all the taps and outputs it feeds). Included by ndc_kernels_inner.h inside the same
// instruction-set region, so it includes nothing.

namespace NDC_NS {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

template <typename T>
inline void zero(T* __restrict__ p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = T(0);
}

// acc += w * v (optionally w * max(v, 0))
template <typename T, bool RECTIFY>
inline void fma_lanes(T* __restrict__ acc, const T* __restrict__ w, const T* __restrict__ v, int64_t n) {
  if (RECTIFY) {
    for (int64_t j = 0; j < n; ++j) acc[j] += w[j] * (v[j] > T(0) ? v[j] : T(0));
  } else {
    for (int64_t j = 0; j < n; ++j) acc[j] += w[j] * v[j];
  }
}

// NDC_VECTOR_BYTES-byte vectors through GCC's vector extensions (32 unless the includer sets it:
// one AVX2 register, two SSE2 registers in the baseline build; 64 for AVX-512); unaligned loads.
// U of them (U * VN lanes) accumulate in registers.
#ifndef NDC_VECTOR_BYTES
#define NDC_VECTOR_BYTES 32
#endif
typedef float vfloat __attribute__((vector_size(NDC_VECTOR_BYTES), aligned(4)));
typedef double vdouble __attribute__((vector_size(NDC_VECTOR_BYTES), aligned(8)));
template <typename T> struct Vec;
template <> struct Vec<float> { typedef vfloat type; };
template <> struct Vec<double> { typedef vdouble type; };
constexpr int U = 4;

template <typename T>
inline typename Vec<T>::type vload(const T* p) { return *reinterpret_cast<const typename Vec<T>::type*>(p); }
template <typename T>
inline void vstore(T* p, typename Vec<T>::type v) { *reinterpret_cast<typename Vec<T>::type*>(p) = v; }

// The taps of one output voxel: for each of nr kernel rows (o0, o1), its filter row (k2 x E lanes)
// and, per field, the source voxel that o2 = 0 reads; o2 in [lo, hi) steps by `step` elements.
//     out_f[j] += sum_r sum_{o2} wrow_r[o2 * E + j] * src_{r,f}[o2 * step + j]
template <typename T, int NF, bool RECTIFY = false>
inline void accumulate_taps(int64_t E, int64_t nr, const T* const* wrow, const T* const* src, int64_t lo, int64_t hi,
                            int64_t step, T* const* out) {
  typedef typename Vec<T>::type vt;
  constexpr int64_t VN = sizeof(vt) / sizeof(T), JB = U * VN;
  int64_t j0 = 0;
  for (; j0 + JB <= E; j0 += JB) {
    vt acc[NF][U];
    for (int f = 0; f < NF; ++f)
      for (int u = 0; u < U; ++u) acc[f][u] = vload(out[f] + j0 + u * VN);
    for (int64_t r = 0; r < nr; ++r) {
      for (int64_t o2 = lo; o2 < hi; ++o2) {
        const T* w = wrow[r] + o2 * E + j0;
        vt wv[U];
        for (int u = 0; u < U; ++u) wv[u] = vload(w + u * VN);
        for (int f = 0; f < NF; ++f) {
          const T* sv = src[r * NF + f] + o2 * step + j0;
          for (int u = 0; u < U; ++u) {
            vt v = vload(sv + u * VN);
            if (RECTIFY) v = v > vt{} ? v : vt{};
            acc[f][u] += wv[u] * v;
          }
        }
      }
    }
    for (int f = 0; f < NF; ++f)
      for (int u = 0; u < U; ++u) vstore(out[f] + j0 + u * VN, acc[f][u]);
  }
  if (j0 == E) return;
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t o2 = lo; o2 < hi; ++o2)
      for (int f = 0; f < NF; ++f)
        fma_lanes<T, RECTIFY>(out[f] + j0, wrow[r] + o2 * E + j0, src[r * NF + f] + o2 * step + j0, E - j0);
}

// Vector registers of this build (NDC_VECTOR_BYTES wide; set by the includer: 32 for AVX-512,
// 16 for AVX2, 8 of 32 bytes in the baseline build's 16 SSE2 registers).
#ifndef NDC_VECTOR_REGISTERS
#define NDC_VECTOR_REGISTERS 8
#endif

constexpr int clamped(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// Output voxels per block: NF x WB accumulators, WB + K2 - 1 source vectors of one field and a
// filter vector must stay in registers.
constexpr int block_width(int NF, int K2) { return clamped((NDC_VECTOR_REGISTERS - K2) / (NF + 1), 1, 8); }

// accumulate_taps for the WB neighbouring output voxels wb = 0 .. WB - 1 (out_f + wb * E), all K2
// taps of every row inside the row:
//     out_f[wb][j] += sum_r sum_{o2 < K2} wrow_r[o2 * E + j] * src_{r,f}[(wb + m(o2)) * E + j]
// with m(o2) = o2 (FORWARD, the synthesis: voxel w reads w + o2 - p2) or K2 - 1 - o2 (the
// adjoint: w reads w - o2 + p2), src_{r,f} the voxel that wb = 0, m = 0 reads. Per row and lane
// vector: WB + K2 - 1 source loads per field and K2 filter loads for NF x WB x K2 multiply-adds
// (accumulate_taps: one source and one filter load per NF multiply-adds).
template <typename T, int NF, int K2, bool FORWARD, bool RECTIFY>
inline void accumulate_taps_block(int64_t E, int64_t nr, const T* const* wrow, const T* const* src, T* const* out) {
  typedef typename Vec<T>::type vt;
  constexpr int64_t VN = sizeof(vt) / sizeof(T);
  constexpr int WB = block_width(NF, K2), M = WB + K2 - 1;
  int64_t j = 0;
  for (; j + VN <= E; j += VN) {
    vt acc[NF][WB];
    for (int f = 0; f < NF; ++f)
      for (int wb = 0; wb < WB; ++wb) acc[f][wb] = vload(out[f] + wb * E + j);
    for (int64_t r = 0; r < nr; ++r) {
      const T* w = wrow[r] + j;
      for (int f = 0; f < NF; ++f) {
        const T* sp = src[r * NF + f] + j;
        vt v[M];
        for (int m = 0; m < M; ++m) {
          v[m] = vload(sp + m * E);
          if (RECTIFY) v[m] = v[m] > vt{} ? v[m] : vt{};
        }
        for (int o2 = 0; o2 < K2; ++o2) {
          const vt wv = vload(w + o2 * E);
          const int m0 = FORWARD ? o2 : K2 - 1 - o2;
          for (int wb = 0; wb < WB; ++wb) acc[f][wb] += wv * v[wb + m0];
        }
      }
    }
    for (int f = 0; f < NF; ++f)
      for (int wb = 0; wb < WB; ++wb) vstore(out[f] + wb * E + j, acc[f][wb]);
  }
  if (j == E) return;
  for (int64_t r = 0; r < nr; ++r)
    for (int o2 = 0; o2 < K2; ++o2) {
      const int m0 = FORWARD ? o2 : K2 - 1 - o2;
      for (int f = 0; f < NF; ++f)
        for (int wb = 0; wb < WB; ++wb)
          fma_lanes<T, RECTIFY>(out[f] + wb * E + j, wrow[r] + o2 * E + j, src[r * NF + f] + (wb + m0) * E + j, E - j);
    }
}

// Whole blocks of accumulate_taps_block over the output voxels [w0, w1) of a row, for a kernel
// width K2 of 3, 5 or 7 (others: none); returns the first voxel not done. src_at(w, src) sets the
// nr x NF source pointers of the block starting at voxel w; acc_f is the row's accumulator.
template <typename T, int NF, int K2, bool FORWARD, bool RECTIFY, typename SrcAt>
int64_t taps_in_blocks_fixed(int64_t E, int64_t nr, const T* const* wrow, int64_t w0, int64_t w1, SrcAt src_at,
                             T* const* acc) {
  constexpr int WB = block_width(NF, K2);
  const T* src[64 * NF];
  for (; w0 + WB <= w1; w0 += WB) {
    src_at(w0, src);
    T* out[NF];
    for (int f = 0; f < NF; ++f) out[f] = acc[f] + w0 * E;
    accumulate_taps_block<T, NF, K2, FORWARD, RECTIFY>(E, nr, wrow, src, out);
  }
  return w0;
}

template <typename T, int NF, bool FORWARD, bool RECTIFY, typename SrcAt>
int64_t taps_in_blocks(int64_t E, int64_t k2, int64_t nr, const T* const* wrow, int64_t w0, int64_t w1, SrcAt src_at,
                       T* const* acc) {
  switch (k2) {
    case 3: return taps_in_blocks_fixed<T, NF, 3, FORWARD, RECTIFY>(E, nr, wrow, w0, w1, src_at, acc);
    case 5: return taps_in_blocks_fixed<T, NF, 5, FORWARD, RECTIFY>(E, nr, wrow, w0, w1, src_at, acc);
    case 7: return taps_in_blocks_fixed<T, NF, 7, FORWARD, RECTIFY>(E, nr, wrow, w0, w1, src_at, acc);
    default: return w0;
  }
}

}  // namespace
}  // namespace NDC_NS
