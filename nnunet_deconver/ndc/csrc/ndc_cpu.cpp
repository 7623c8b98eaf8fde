// ATen front end of the fused CPU NDC update: argument checks, channels-last layout, the filter
// in lane order, threads (at::parallel_for) and the choice between the AVX-512, the AVX2+FMA and the baseline
// builds of the kernels (ndc_kernels_impl.h). Exposed to Python as `forward` and `backward`; the
// contract is the one of nnunet_deconver.ndc.backends (see its docstring), plus a window of planes
// [plane_lo, plane_hi) of the first spatial axis: the update's output on those planes alone, and
// the gradient of that output (grad and out are (B, E, plane_hi - plane_lo, ...)); y is then
// computed within k0 // 2 planes of the window only (zero elsewhere). need_out:
// forward without the update (y alone); backward with the window's output as a fourth result
// (empty unless asked for). planar (forward only, groups of one channel): s and the output hold
// source jl of channel c in lane jl * C + c instead of c * E / C + jl (ndc_kernels_planar.h).
// workspace: a flat tensor of the caller's that the results and the scratch are carved from
// (grown to fit; see Fields). Registered as the operators torch.ops.nnunet_deconver_cpp.forward /
// backward (CPU kernels, no autograd: the Python operator around them owns the gradient); no
// Python bindings, which keeps the build short.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/narrow.h>
#include <ATen/ops/zero.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "ndc_geometry.h"

namespace {

// The builds of the kernels, widest last; the CPU's best one unless instruction_set() chose another.
const char* const kBuilds[] = {"base", "avx2", "avx512"};
enum Build : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

bool supported(int build) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (build == kAvx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
  if (build == kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return build == kBase;
}

int best_build() {
  static const int best = supported(kAvx512) ? kAvx512 : supported(kAvx2) ? kAvx2 : kBase;
  return best;
}

std::atomic<int> chosen_build{-1};  // -1: best_build()

int build() {
  const int b = chosen_build.load(std::memory_order_relaxed);
  return b < 0 ? best_build() : b;
}

// fn<T>(...) of the build in use (a statement)
#define NDC_CALL(fn, T, ...)                                           \
  switch (build()) {                                                   \
    case kAvx512: ndc_avx512::fn<T>(__VA_ARGS__); break;               \
    case kAvx2: ndc_avx2::fn<T>(__VA_ARGS__); break;                   \
    default: ndc_base::fn<T>(__VA_ARGS__);                             \
  }

at::MemoryFormat channels_last(const at::Tensor& t) {
  return t.dim() == 5 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
}

// The geometry of an update with the window [plane_lo, plane_hi) (plane_hi < 0: up to N0).
NdcGeometry geometry(const at::Tensor& x, const at::Tensor& s, const at::Tensor& weight, int64_t groups,
                     int64_t plane_lo, int64_t plane_hi) {
  TORCH_CHECK(x.device().is_cpu() && s.device().is_cpu() && weight.device().is_cpu(),
              "the C++ NDC kernel runs on CPU tensors only");
  TORCH_CHECK(x.dim() == 4 || x.dim() == 5, "x must be (B, C, H, W) or (B, C, D, H, W)");
  TORCH_CHECK(s.dim() == x.dim() && weight.dim() == x.dim(), "x, s and weight must have the same rank");
  TORCH_CHECK(x.scalar_type() == s.scalar_type() && x.scalar_type() == weight.scalar_type(),
              "x, s and weight must have the same dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "float32 or float64 only");
  NdcGeometry g{};
  g.B = x.size(0);
  g.C = x.size(1);
  g.E = s.size(1);
  g.G = groups;
  TORCH_CHECK(groups >= 1 && g.C % groups == 0 && g.E % groups == 0, "groups must divide C and E");
  g.cg = g.C / groups;
  g.eg = g.E / groups;
  TORCH_CHECK(s.size(0) == g.B && weight.size(0) == g.C && weight.size(1) == g.eg, "shapes do not fit");
  for (int64_t d = 2; d < x.dim(); ++d) {
    TORCH_CHECK(s.size(d) == x.size(d), "x and s differ in spatial size");
    TORCH_CHECK(weight.size(d) % 2 == 1, "kernel sizes must be odd");
  }
  if (x.dim() == 5) {
    g.N0 = x.size(2), g.N1 = x.size(3), g.N2 = x.size(4);
    g.k0 = weight.size(2), g.k1 = weight.size(3), g.k2 = weight.size(4);
  } else {
    g.N0 = x.size(2), g.N1 = 1, g.N2 = x.size(3);
    g.k0 = weight.size(2), g.k1 = 1, g.k2 = weight.size(3);
  }
  g.K = g.k0 * g.k1 * g.k2;
  g.p0 = g.k0 / 2, g.p1 = g.k1 / 2, g.p2 = g.k2 / 2;
  g.lo = plane_lo;
  g.hi = plane_hi < 0 ? g.N0 : plane_hi;
  TORCH_CHECK(0 <= g.lo && g.lo <= g.hi && g.hi <= g.N0, "the plane window [", g.lo, ", ", g.hi,
              ") is not within the first spatial axis (", g.N0, " planes)");
  return g;
}

// The sizes of s's planes [g.lo, g.hi): the update's output and its gradient.
std::vector<int64_t> window_sizes(const at::Tensor& s, const NdcGeometry& g) {
  std::vector<int64_t> sizes = s.sizes().vec();
  sizes[2] = g.hi - g.lo;
  return sizes;
}

// Rows (or planes) per thread at least: small problems stay on one thread, where waking the
// others would cost more than the work (about a million multiply-adds per task at least, some 0.1 ms).
int64_t grain(const NdcGeometry& g, int64_t rows_per_item) {
  const int64_t work = rows_per_item * g.N2 * g.E * g.K * g.cg;
  return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, work));
}

// The tensors one call writes, channels-last (or flat), each numel 0 when not needed: fresh from
// PyTorch's CPU allocator, or, when the caller passes a workspace, views of that one flat tensor
// (grown to fit, never shrunk), so that a caller working slab by slab reuses the same memory
// instead of faulting in new pages for every slab. Views of a workspace stay valid until the next
// call that is given the same workspace.
class Fields {
 public:
  Fields(const c10::optional<at::Tensor>& workspace, const at::TensorOptions& options)
      : workspace_(workspace), options_(options) {}

  // A field of `sizes` (channels-last when 4-D/5-D, else flat); an empty one when not `needed`.
  int add(std::vector<int64_t> sizes, bool needed = true) {
    if (!needed) sizes.assign(1, 0);
    int64_t numel = 1;
    for (int64_t v : sizes) numel *= v;
    sizes_.push_back(std::move(sizes));
    offsets_.push_back(total_);
    total_ += (numel + 15) / 16 * 16;  // 64-byte aligned starts
    return static_cast<int>(sizes_.size()) - 1;
  }

  // The fields, in the order they were added.
  std::vector<at::Tensor> make() {
    if (workspace_.has_value()) {
      at::Tensor& ws = const_cast<at::Tensor&>(*workspace_);
      TORCH_CHECK(ws.dim() == 1 && ws.is_contiguous() && ws.scalar_type() == options_.dtype().toScalarType(),
                  "the workspace must be a flat contiguous tensor of the fields' dtype");
      if (ws.numel() < total_) ws.resize_({total_});
    }
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < sizes_.size(); ++i) out.push_back(field(sizes_[i], offsets_[i]));
    return out;
  }

 private:
  at::Tensor field(const std::vector<int64_t>& sizes, int64_t offset) const {
    const bool map = sizes.size() >= 4;
    if (!workspace_.has_value()) {
      if (!map) return at::empty(sizes, options_);
      return at::empty(sizes, options_.memory_format(sizes.size() == 5 ? at::MemoryFormat::ChannelsLast3d
                                                                         : at::MemoryFormat::ChannelsLast));
    }
    int64_t numel = 1;
    for (int64_t v : sizes) numel *= v;
    at::Tensor flat = workspace_->narrow(0, offset, numel);
    if (!map) return flat.view(sizes);
    // (B, C, *S) channels-last: memory holds (B, *S, C)
    std::vector<int64_t> stored{sizes[0]}, order{0, static_cast<int64_t>(sizes.size()) - 1};
    for (size_t d = 2; d < sizes.size(); ++d) {
      stored.push_back(sizes[d]);
      order.push_back(static_cast<int64_t>(d) - 1);
    }
    stored.push_back(sizes[1]);
    return flat.view(stored).permute(order);
  }

  const c10::optional<at::Tensor>& workspace_;
  at::TensorOptions options_;
  std::vector<std::vector<int64_t>> sizes_;
  std::vector<int64_t> offsets_;
  int64_t total_ = 0;
};

// This thread's part of the per-thread scratch (`per_thread` elements each), not zero-filled: the
// kernels write each scratch element before they read it.
template <typename T>
T* scratch_of(const at::Tensor& scratch, int64_t per_thread) {
  return scratch.mutable_data_ptr<T>() + at::get_thread_num() * per_thread;
}

// fn(first, end) over the items of the planes a in [a0, a1) of every sample, in parallel: an item
// is a row (b, a, h) when per_plane = N1, a plane (b, a) when per_plane = 1. Each call's range
// lies within one sample, so it is contiguous in the flattened grid.
template <typename F>
void for_planes(const NdcGeometry& g, int64_t a0, int64_t a1, int64_t per_plane, int64_t grain_size, F fn) {
  const int64_t per_sample = (a1 - a0) * per_plane;
  if (per_sample <= 0) return;
  at::parallel_for(0, g.B * per_sample, grain_size, [&](int64_t i0, int64_t i1) {
    while (i0 < i1) {
      const int64_t b = i0 / per_sample, offset = i0 % per_sample, n = std::min(i1 - i0, per_sample - offset);
      const int64_t first = (b * g.N0 + a0) * per_plane + offset;
      fn(first, first + n);
      i0 += n;
    }
  });
}

// t's planes outside [lo, hi) of its first spatial axis set to zero.
void zero_outside(at::Tensor& t, int64_t lo, int64_t hi) {
  if (lo > 0) t.narrow(2, 0, lo).zero_();
  if (hi < t.size(2)) t.narrow(2, hi, t.size(2) - hi).zero_();
}

// V (C, E / G, *k) -> wt (cg, K, E), wt[cl][o][g * eg + jl] = V[g * cg + cl, jl, o]
at::Tensor filter_lanes(const at::Tensor& weight, const NdcGeometry& g) {
  return weight.contiguous().view({g.G, g.cg, g.eg, g.K}).permute({1, 3, 0, 2}).contiguous();
}

// V (C, E / C, *k) -> wt (K, E), wt[o][jl * C + c] = V[c, jl, o]: the planar kernels' filter (G = C)
at::Tensor filter_planar(const at::Tensor& weight, const NdcGeometry& g) {
  return weight.contiguous().view({g.C, g.eg, g.K}).permute({2, 1, 0}).contiguous();
}

}  // namespace

std::vector<at::Tensor> ndc_forward(const at::Tensor& x_in, const at::Tensor& s_in, const at::Tensor& weight,
                                    int64_t groups, double eps, bool rectify, int64_t plane_lo, int64_t plane_hi,
                                    bool need_out, const c10::optional<at::Tensor>& workspace, bool planar) {
  at::Tensor x = x_in, s = s_in;
  const NdcGeometry g = geometry(x, s, weight, groups, plane_lo, plane_hi);
  TORCH_CHECK(!planar || g.cg == 1, "the planar source order needs groups equal to the channels (got ", groups,
              " groups of ", g.C, " channels)");
  // y is needed within p0 planes of the window (zero elsewhere), the update on the window only
  const int64_t y0 = std::max<int64_t>(0, g.lo - g.p0), y1 = std::min(g.N0, g.hi + g.p0);
  const auto fmt = channels_last(x);
  x = x.contiguous(fmt);
  s = s.contiguous(fmt);
  // the planar kernels need no scratch
  const at::Tensor wt = planar ? filter_planar(weight, g) : filter_lanes(weight, g);
  const int64_t per_thread = planar ? 0 : std::max(synthesis_scratch(g), need_out ? update_scratch(g) : 0);
  Fields fields(workspace, x.options());
  fields.add(x.sizes().vec());
  fields.add(window_sizes(s, g), need_out);
  fields.add({at::get_num_threads() * per_thread});
  const std::vector<at::Tensor> made = fields.make();
  at::Tensor y = made[0], out = made[1];
  const at::Tensor& scratch = made[2];
  zero_outside(y, y0, y1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ndc_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const scalar_t* wp = wt.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    for_planes(g, y0, y1, g.N1, grain(g, 1), [&](int64_t r0, int64_t r1) {
      if (planar) {
        NDC_CALL(synthesis_rows_planar, scalar_t, g, sp, wp, yp, r0, r1, rectify);
      } else {
        NDC_CALL(synthesis_rows, scalar_t, g, sp, wp, yp, scratch_of<scalar_t>(scratch, per_thread), r0, r1, rectify);
      }
    });
    if (!need_out) return;
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    for_planes(g, g.lo, g.hi, g.N1, grain(g, 1), [&](int64_t r0, int64_t r1) {
      if (planar) {
        NDC_CALL(update_rows_planar, scalar_t, g, xp, yp, sp, wp, op, r0, r1, static_cast<scalar_t>(eps), rectify);
        return;
      }
      std::vector<int64_t> tags(cache_tags(g));
      NDC_CALL(update_rows, scalar_t, g, xp, yp, sp, wp, op, scratch_of<scalar_t>(scratch, per_thread), tags.data(),
               r0, r1, static_cast<scalar_t>(eps), rectify);
    });
  });
  return {out, y};
}

std::vector<at::Tensor> ndc_backward(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& s_in,
                                     const at::Tensor& weight, const at::Tensor& y_in, int64_t groups, double eps,
                                     bool rectify, bool need_x, bool need_s, bool need_w, int64_t plane_lo,
                                     int64_t plane_hi, bool need_out, const c10::optional<at::Tensor>& workspace) {
  at::Tensor grad = grad_in, x = x_in, s = s_in, y = y_in;
  const NdcGeometry g = geometry(x, s, weight, groups, plane_lo, plane_hi);
  // the gradient is zero outside the window: grad_x and A(p) within p0 planes of it, grad_s within 2 p0
  const int64_t e0 = std::max<int64_t>(0, g.lo - g.p0), e1 = std::min(g.N0, g.hi + g.p0);
  const int64_t f0 = std::max<int64_t>(0, g.lo - 2 * g.p0), f1 = std::min(g.N0, g.hi + 2 * g.p0);
  const auto fmt = channels_last(x);
  grad = grad.to(s.scalar_type()).contiguous(fmt);
  x = x.contiguous(fmt);
  s = s.contiguous(fmt);
  y = y.contiguous(fmt);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(window_sizes(s, g)) && y.sizes() == x.sizes(),
              "grad / y shapes do not fit");
  const at::Tensor wt = filter_lanes(weight, g);
  const bool need_ap = need_s || need_w;
  const int64_t per_thread = std::max(backward_scratch(g), need_ap ? adjoint_scratch(g) : 0);
  Fields fields(workspace, x.options());
  fields.add(x.sizes().vec(), need_x);
  fields.add(s.sizes().vec(), need_s);
  fields.add(x.sizes().vec(), need_ap);
  fields.add(window_sizes(s, g), need_out);
  fields.add({at::get_num_threads() * per_thread});
  const std::vector<at::Tensor> made = fields.make();
  at::Tensor grad_x = made[0], grad_s = made[1], ap = made[2], out = made[3];
  const at::Tensor& scratch = made[4];
  for (at::Tensor* t : {&grad_x, &grad_s, &ap}) {
    if (t->numel()) zero_outside(*t, e0, e1);
  }
  const int64_t nw = g.cg * g.K * g.E;
  // one partial filter gradient per thread, summed in thread order: deterministic results
  std::vector<std::vector<double>> parts(at::get_num_threads());
  auto part_of_this_thread = [&]() -> double* {
    std::vector<double>& part = parts.at(at::get_thread_num());
    if (need_w && part.empty()) part.assign(nw, 0.0);
    return part.data();
  };
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ndc_backward", [&] {
    const scalar_t eps_t = static_cast<scalar_t>(eps);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    const scalar_t* wp = wt.const_data_ptr<scalar_t>();
    scalar_t* gxp = need_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gsp = need_s ? grad_s.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* app = need_ap ? ap.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* outp = need_out ? out.mutable_data_ptr<scalar_t>() : nullptr;
    for_planes(g, e0, e1, 1, grain(g, g.N1), [&](int64_t p0, int64_t p1) {
      std::vector<int64_t> tags(cache_tags(g));
      NDC_CALL(backward_planes, scalar_t, g, xp, yp, sp, gp, wp, gsp, gxp, app, outp, part_of_this_thread(),
               scratch_of<scalar_t>(scratch, per_thread), tags.data(), p0, p1, eps_t, rectify, need_x, need_s, need_w);
    });
    if (!need_ap) return;
    for_planes(g, f0, f1, g.N1, grain(g, 1), [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> tags(cache_tags(g));
      NDC_CALL(adjoint_rows, scalar_t, g, app, sp, wp, gsp, part_of_this_thread(),
               scratch_of<scalar_t>(scratch, per_thread), tags.data(), r0, r1, rectify, need_s, need_w);
    });
  });
  at::Tensor grad_w = at::empty({0}, weight.options());
  if (need_w) {
    std::vector<double> dw(nw, 0.0);
    for (const auto& part : parts) {
      for (int64_t i = 0; i < static_cast<int64_t>(part.size()); ++i) dw[i] += part[i];
    }
    grad_w = at::from_blob(dw.data(), {g.cg, g.K, g.G, g.eg}, at::TensorOptions().dtype(at::kDouble))
                 .clone()
                 .permute({2, 0, 3, 1})
                 .reshape(weight.sizes())
                 .to(weight.scalar_type());
  }
  return {grad_x, grad_s, grad_w, out};
}

// The build of the kernels in use: "base", "avx2" or "avx512". A name selects that build for
// the process (an error when this CPU lacks its instructions); "auto" the best one; "" changes nothing.
std::string instruction_set(const std::string& name) {
  if (name == "auto") {
    chosen_build.store(-1);
  } else if (!name.empty()) {
    int b = -1;
    for (int i = 0; i < 3; ++i)
      if (name == kBuilds[i]) b = i;
    TORCH_CHECK(b >= 0, "unknown instruction set '", name, "': use base, avx2, avx512 or auto");
    TORCH_CHECK(supported(b), "this CPU cannot run the ", name, " build of the NDC kernels");
    chosen_build.store(b);
  }
  return kBuilds[build()];
}

TORCH_LIBRARY(nnunet_deconver_cpp, m) {
  m.def("instruction_set(str name) -> str", &instruction_set);
  m.def("forward(Tensor x, Tensor s, Tensor weight, int groups, float eps, bool rectify, int plane_lo=0, "
        "int plane_hi=-1, bool need_out=True, Tensor(a!)? workspace=None, bool planar=False) -> Tensor[]");
  m.def("backward(Tensor grad, Tensor x, Tensor s, Tensor weight, Tensor y, int groups, float eps, bool rectify, "
        "bool need_x, bool need_s, bool need_weight, int plane_lo=0, int plane_hi=-1, bool need_out=False, "
        "Tensor(a!)? workspace=None) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(nnunet_deconver_cpp, CPU, m) {
  m.impl("forward", &ndc_forward);
  m.impl("backward", &ndc_backward);
}
