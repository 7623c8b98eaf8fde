// The NDC kernels for the baseline instruction set of the compiler's target (SSE2 on x86-64).
#include "ndc_geometry.h"

#define NDC_NS ndc_base
#include "ndc_kernels_impl.h"
