// The NDC kernels for x86-64 CPUs with AVX-512 (F, VL, DQ, BW), chosen at run time (ndc_cpu.cpp):
// 64-byte vectors. As in ndc_kernels_avx2.cpp, the pragma comes after every header, so only this
// file's own functions get the wider instruction set; elsewhere this compiles to the baseline
// kernels again (never called: the run-time check fails on such CPUs).
#include "ndc_geometry.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#define NDC_VECTOR_BYTES 64
#define NDC_VECTOR_REGISTERS 32
#endif
#define NDC_NS ndc_avx512
#include "ndc_kernels_impl.h"
