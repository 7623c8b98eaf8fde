// The NDC kernels for x86-64 CPUs with AVX2 and FMA, chosen at run time (ndc_cpu.cpp). Only this
// file's own functions get the wider instruction set: the pragma comes after every header, so no
// inline function shared with other files is compiled for AVX2. Elsewhere it compiles to the
// baseline kernels again (never called: the run-time check fails on such CPUs).
#include "ndc_geometry.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#define NDC_VECTOR_REGISTERS 16
#endif
#define NDC_NS ndc_avx2
#include "ndc_kernels_impl.h"
