// Fused CPU kernels for SE and CBAM gating: one pass over the feature map where torch's eager operators
// make several. Each kernel is parallel over torch's intra-op thread pool (at::parallel_for), so it scales
// with the thread count as the convolutions around it do. Float32, contiguous NCHW only; the Python side
// (attnzoo/attention/kernels.py) routes every other case to the plain torch formulation.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

namespace {

constexpr int64_t kPixelChunk = 1024;  // positions per task in channel reductions: accumulators stay in L1
constexpr int kLanes = 16;

// kLanes floats as one vector (GCC/Clang vector extension: AVX-512, two AVX registers, or four SSE ones)
typedef float Floats __attribute__((vector_size(kLanes * sizeof(float))));

inline Floats load(const float* p) {
  Floats v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Floats negative_infinity() {
  Floats v;
  for (int k = 0; k < kLanes; ++k) v[k] = -std::numeric_limits<float>::infinity();
  return v;
}

// The sum (max) of a vector's lanes, halving the vector in registers: four dependent steps where a running
// sum over the lanes takes sixteen, which dominate the reduction of a plane of a few positions (a training
// step's 2x2 to 8x8 maps).
typedef float HalfFloats __attribute__((vector_size(kLanes / 2 * sizeof(float))));
typedef float QuarterFloats __attribute__((vector_size(kLanes / 4 * sizeof(float))));

template <class Vector, class Whole>
inline Vector half_of(const Whole& v, int which) {
  Vector h;
  std::memcpy(&h, reinterpret_cast<const char*>(&v) + which * sizeof(h), sizeof(h));
  return h;
}

template <class Combine>
inline float lane_reduce(Floats v, Combine combine) {
  const HalfFloats eight = combine(half_of<HalfFloats>(v, 0), half_of<HalfFloats>(v, 1));
  const QuarterFloats four = combine(half_of<QuarterFloats>(eight, 0), half_of<QuarterFloats>(eight, 1));
  return combine(combine(four[0], four[2]), combine(four[1], four[3]));
}

inline float lane_sum(Floats v) {
  return lane_reduce(v, [](auto a, auto b) { return a + b; });
}

inline float lane_max(Floats v) {
  return lane_reduce(v, [](auto a, auto b) { return b > a ? b : a; });
}

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, work_per_item));
}

void check_nchw(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.device().is_cpu(),
              name, ": expects a contiguous float32 NCHW CPU tensor");
}

// A small per-(batch, channel) or per-(batch, position) operand, made contiguous (a copy only for views such as
// vmap's per-example slices).
at::Tensor small_operand(const at::Tensor& t, int64_t numel, const char* what) {
  TORCH_CHECK(t.numel() == numel && t.scalar_type() == at::kFloat && t.device().is_cpu(), what);
  return t.contiguous();
}

// max that propagates NaN, as torch.amax does
inline float nan_max(float a, float b) { return (std::isnan(a) || a > b) ? a : b; }

// ReLU that keeps NaN, as torch.relu does
inline float relu_keeping_nan(float v) { return v > 0.f || std::isnan(v) ? v : 0.f; }

// What a kernel reads from x: the stored value (NoFold), or bn(x) for a block's eval BatchNorm folded to a
// per-channel scale and shift (BnFold: the block tails below, which run the BN inside the attention's passes).
// bn(x) = fma(x, scale, shift) is rounded as ATen's eval BatchNorm rounds it (an explicit fused multiply-add; the
// build turns off the compiler's own contraction), so a folded tail computes the unfolded tail's values exactly.
struct Stored {
  float operator()(float v) const { return v; }
  Floats operator()(Floats v) const { return v; }
};

struct Affine {
  float scale, shift;
  float operator()(float v) const { return std::fma(v, scale, shift); }
  Floats operator()(Floats v) const {
    for (int k = 0; k < kLanes; ++k) v[k] = std::fma(v[k], scale, shift);
    return v;
  }
};

struct NoFold {
  Stored channel(int64_t) const { return {}; }
};

struct BnFold {
  const float* scale;
  const float* shift;
  Affine channel(int64_t c) const { return {scale[c], shift[c]}; }
};

// Sum and max of value(row[p]) over one row of n floats, one read: two independent vector accumulators each
// (explicit: the compiler may not reorder a float sum on its own). The max is skipped where the caller does not
// want it.
template <bool kWithMax, class Value>
inline void row_sum_max(const float* row, int64_t n, Value value, float& sum_out, float& max_out) {
  Floats sum0 = {}, sum1 = {}, top0 = negative_infinity(), top1 = negative_infinity();
  int64_t p = 0;
  for (; p + 2 * kLanes <= n; p += 2 * kLanes) {
    const Floats a = value(load(row + p)), b = value(load(row + p + kLanes));
    sum0 += a;
    sum1 += b;
    if constexpr (kWithMax) {
      top0 = a > top0 ? a : top0;
      top1 = b > top1 ? b : top1;
    }
  }
  if (p + kLanes <= n) {
    const Floats a = value(load(row + p));
    sum0 += a;
    if constexpr (kWithMax) top0 = a > top0 ? a : top0;
    p += kLanes;
  }
  float sum = 0.f, top = -std::numeric_limits<float>::infinity();
  if (n >= kLanes) {  // lanes hold values: reduce them (rows of a few positions skip it)
    sum = lane_sum(sum0 + sum1);
    if constexpr (kWithMax) top = lane_max(top1 > top0 ? top1 : top0);
  }
  for (; p < n; ++p) {
    const float v = value(row[p]);
    sum += v;
    if constexpr (kWithMax) top = v > top ? v : top;
  }
  if constexpr (kWithMax) {
    if (std::isnan(sum)) {  // rare: find out whether a NaN (not inf - inf) caused it
      for (int64_t q = 0; q < n; ++q) top = nan_max(top, value(row[q]));
    }
  }
  sum_out = sum;
  max_out = top;
}

// Per (image, channel) plane of `images` images from src: mean (and max) over positions, one parallel read.
template <bool kWithMax, class Fold>
void plane_stats(const float* src, int64_t images, int64_t channels, int64_t hw, Fold fold, float* mean_out,
                 float* peak_out) {
  at::parallel_for(0, images * channels, grain_for(hw), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      float sum, top;
      row_sum_max<kWithMax>(src + plane * hw, hw, fold.channel(plane % channels), sum, top);
      mean_out[plane] = sum / static_cast<float>(hw);
      if constexpr (kWithMax) peak_out[plane] = top;
    }
  });
}

std::tuple<at::Tensor, at::Tensor> channel_stats(const at::Tensor& x) {
  check_nchw(x, "channel_stats");
  auto mean = at::empty({x.size(0), x.size(1)}, x.options());
  auto peak = at::empty({x.size(0), x.size(1)}, x.options());
  plane_stats<true>(x.data_ptr<float>(), x.size(0), x.size(1), x.size(2) * x.size(3), NoFold{}, mean.data_ptr<float>(),
                   peak.data_ptr<float>());
  return {mean, peak};
}

// Per (image, position) of `images` images from src: mean and max over channels of value(x) * gate, stacked as
// (images, 2, H, W) into dst, one parallel read.
template <class Fold>
void gated_channel_stats_into(const float* src, int64_t images, int64_t channels, int64_t hw, const float* g,
                              Fold fold, float* dst) {
  const int64_t chunks = (hw + kPixelChunk - 1) / kPixelChunk;
  at::parallel_for(0, images * chunks, grain_for(kPixelChunk * channels), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, p0 = (task % chunks) * kPixelChunk, n = std::min(kPixelChunk, hw - p0);
      float* __restrict sum = dst + (b * 2) * hw + p0;
      float* __restrict top = dst + (b * 2 + 1) * hw + p0;
      std::fill(sum, sum + n, 0.f);
      std::fill(top, top + n, -std::numeric_limits<float>::infinity());
      // four channel rows per sweep: a quarter of the accumulator traffic, four prefetch streams
      int64_t c = 0;
      for (; c + 4 <= channels; c += 4) {
        const float w0 = g[b * channels + c], w1 = g[b * channels + c + 1], w2 = g[b * channels + c + 2],
                    w3 = g[b * channels + c + 3];
        const auto f0 = fold.channel(c), f1 = fold.channel(c + 1), f2 = fold.channel(c + 2), f3 = fold.channel(c + 3);
        const float* __restrict r0 = src + (b * channels + c) * hw + p0;
        const float *__restrict r1 = r0 + hw, *__restrict r2 = r1 + hw, *__restrict r3 = r2 + hw;
        for (int64_t p = 0; p < n; ++p) {
          const float v0 = f0(r0[p]) * w0, v1 = f1(r1[p]) * w1, v2 = f2(r2[p]) * w2, v3 = f3(r3[p]) * w3;
          sum[p] += (v0 + v1) + (v2 + v3);
          const float m01 = v0 > v1 ? v0 : v1, m23 = v2 > v3 ? v2 : v3, m = m01 > m23 ? m01 : m23;
          top[p] = m > top[p] ? m : top[p];
        }
      }
      for (; c < channels; ++c) {
        const float w = g[b * channels + c];
        const auto f = fold.channel(c);
        const float* row = src + (b * channels + c) * hw + p0;
        for (int64_t p = 0; p < n; ++p) {
          const float v = f(row[p]) * w;
          sum[p] += v;
          top[p] = v > top[p] ? v : top[p];
        }
      }
      for (int64_t p = 0; p < n; ++p) {
        if (std::isnan(sum[p])) {  // rare: propagate a NaN into the max as torch.amax does
          for (int64_t c = 0; c < channels; ++c) {
            top[p] = nan_max(top[p], fold.channel(c)(src[(b * channels + c) * hw + p0 + p]) * g[b * channels + c]);
          }
        }
        sum[p] /= static_cast<float>(channels);
      }
    }
  });
}

at::Tensor gated_channel_stats(const at::Tensor& x, const at::Tensor& gate) {
  check_nchw(x, "gated_channel_stats");
  const int64_t batch = x.size(0), channels = x.size(1), hw = x.size(2) * x.size(3);
  const at::Tensor gate_values =
      small_operand(gate, batch * channels, "gated_channel_stats: the gate must hold one float32 per (batch, channel)");
  auto out = at::empty({batch, 2, x.size(2), x.size(3)}, x.options());
  gated_channel_stats_into(x.data_ptr<float>(), batch, channels, hw, gate_values.data_ptr<float>(), NoFold{},
                           out.data_ptr<float>());
  return out;
}

// value(x) * g[b, c] (* s[b, p]) (+ r, then ReLU) for `images` images from src, written into dst (which may be
// src); s and r may be null.
template <class Fold>
void gate_rows(const float* src, int64_t images, int64_t channels, int64_t hw, Fold fold, const float* g,
               const float* s, const float* r, bool relu, float* dst) {
  at::parallel_for(0, images * channels, grain_for(hw), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float w = g[plane];
      const auto f = fold.channel(plane % channels);
      const float* row = src + plane * hw;
      const float* srow = s ? s + (plane / channels) * hw : nullptr;
      const float* rrow = r ? r + plane * hw : nullptr;
      float* orow = dst + plane * hw;
      if (srow && rrow) {
#pragma omp simd
        for (int64_t p = 0; p < hw; ++p) {
          const float v = f(row[p]) * w * srow[p] + rrow[p];
          orow[p] = relu ? relu_keeping_nan(v) : v;
        }
      } else if (srow) {
#pragma omp simd
        for (int64_t p = 0; p < hw; ++p) orow[p] = f(row[p]) * w * srow[p];
      } else if (rrow) {
#pragma omp simd
        for (int64_t p = 0; p < hw; ++p) {
          const float v = f(row[p]) * w + rrow[p];
          orow[p] = relu ? relu_keeping_nan(v) : v;
        }
      } else {
#pragma omp simd
        for (int64_t p = 0; p < hw; ++p) orow[p] = f(row[p]) * w;
      }
    }
  });
}

// x * channel_gate[b, c] (* spatial_gate[b, p]) (+ residual, then ReLU), written into out (which may be x).
void gate_kernel(const at::Tensor& x, const at::Tensor& channel_gate, const c10::optional<at::Tensor>& spatial_gate,
                 const c10::optional<at::Tensor>& residual, bool relu, at::Tensor& out) {
  check_nchw(x, "gate");
  const int64_t batch = x.size(0), channels = x.size(1), hw = x.size(2) * x.size(3);
  const at::Tensor channel_values =
      small_operand(channel_gate, batch * channels, "gate: the channel gate must hold one float32 per (batch, channel)");
  at::Tensor spatial_values;
  const float* s = nullptr;
  if (spatial_gate.has_value()) {
    spatial_values =
        small_operand(*spatial_gate, batch * hw, "gate: the spatial gate must hold one float32 per (batch, position)");
    s = spatial_values.data_ptr<float>();
  }
  const float* r = nullptr;
  if (residual.has_value()) {
    check_nchw(*residual, "gate residual");
    TORCH_CHECK(residual->sizes() == x.sizes(), "gate: the residual must have the input's shape");
    r = residual->data_ptr<float>();
  }
  gate_rows(x.data_ptr<float>(), batch, channels, hw, NoFold{}, channel_values.data_ptr<float>(), s, r, relu,
            out.data_ptr<float>());
}

at::Tensor gate_(at::Tensor x, const at::Tensor& channel_gate, const c10::optional<at::Tensor>& spatial_gate) {
  gate_kernel(x, channel_gate, spatial_gate, c10::nullopt, false, x);
  return x;
}

at::Tensor gate(const at::Tensor& x, const at::Tensor& channel_gate, const c10::optional<at::Tensor>& spatial_gate) {
  auto out = at::empty_like(x);
  gate_kernel(x, channel_gate, spatial_gate, c10::nullopt, false, out);
  return out;
}

// A residual block's tail in one pass: relu(x * gates + residual), written into x. Multiply, add and max are
// rounded one at a time (no contraction into FMA), as the block's separate torch operators round them.
at::Tensor gate_add_relu_(at::Tensor x, const at::Tensor& channel_gate, const c10::optional<at::Tensor>& spatial_gate,
                          const at::Tensor& residual) {
  gate_kernel(x, channel_gate, spatial_gate, residual, true, x);
  return x;
}

// ---- CBAM training: backward in three passes over (grad, x) ----
// Forward (see attnzoo/attention/fused.py, CbamGate): mean_c, peak_c = channel_stats(x); c = mlp(mean_c,
// peak_c); maps = [mean_C(x*c), max_C(x*c)]; s = spatial(maps); out = x * c * s.

// Per (batch, position): d out / d s = sum over channels of grad * x * c, and how many channels tie for the
// spatial max (x * c == peak), whose gradient they share as torch.amax's backward shares it.
std::tuple<at::Tensor, at::Tensor> spatial_gate_grad(const at::Tensor& grad, const at::Tensor& x,
                                                     const at::Tensor& gate, const at::Tensor& peak) {
  check_nchw(x, "spatial_gate_grad");
  check_nchw(grad, "spatial_gate_grad grad");
  const int64_t batch = x.size(0), channels = x.size(1), hw = x.size(2) * x.size(3);
  TORCH_CHECK(gate.numel() == batch * channels && peak.numel() == batch * hw && gate.is_contiguous() &&
                  peak.is_contiguous(), "spatial_gate_grad: gate (B, C) and peak (B, H*W) expected");
  auto grad_s = at::empty({batch, 1, x.size(2), x.size(3)}, x.options());
  auto ties = at::empty({batch, 1, x.size(2), x.size(3)}, x.options());
  const float *src = x.data_ptr<float>(), *gsrc = grad.data_ptr<float>(), *g = gate.data_ptr<float>(),
              *top = peak.data_ptr<float>();
  float *gs_out = grad_s.data_ptr<float>(), *tie_out = ties.data_ptr<float>();
  const int64_t chunks = (hw + kPixelChunk - 1) / kPixelChunk;
  at::parallel_for(0, batch * chunks, grain_for(kPixelChunk * channels), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, p0 = (task % chunks) * kPixelChunk, n = std::min(kPixelChunk, hw - p0);
      float* __restrict acc = gs_out + b * hw + p0;
      float* __restrict count = tie_out + b * hw + p0;
      const float* __restrict best = top + b * hw + p0;
      std::fill(acc, acc + n, 0.f);
      std::fill(count, count + n, 0.f);
      for (int64_t c = 0; c < channels; ++c) {
        const float w = g[b * channels + c];
        const float* __restrict row = src + (b * channels + c) * hw + p0;
        const float* __restrict grow = gsrc + (b * channels + c) * hw + p0;
        for (int64_t p = 0; p < n; ++p) {
          const float v = row[p] * w;
          acc[p] += grow[p] * v;
          count[p] += v == best[p] ? 1.f : 0.f;
        }
      }
    }
  });
  return {grad_s, ties};
}

// The gradient reaching y = x * c, per element: grad * s + mean_grad + (tied for the max ? max_share : 0).
inline float grad_of_product(float grad, float s, float v, float best, float mean_grad, float max_share) {
  return grad * s + mean_grad + (v == best ? max_share : 0.f);
}

// Per (batch, channel): d loss / d c = sum over positions of x * grad_of_product, and how many positions tie
// for the channel descriptor's max (x == peak_c).
std::tuple<at::Tensor, at::Tensor> channel_gate_grad(const at::Tensor& grad, const at::Tensor& x,
                                                     const at::Tensor& gate, const at::Tensor& spatial_gate,
                                                     const at::Tensor& peak, const at::Tensor& mean_grad,
                                                     const at::Tensor& max_share, const at::Tensor& channel_peak) {
  check_nchw(x, "channel_gate_grad");
  check_nchw(grad, "channel_gate_grad grad");
  const int64_t batch = x.size(0), channels = x.size(1), hw = x.size(2) * x.size(3);
  for (const at::Tensor* t : {&spatial_gate, &peak, &mean_grad, &max_share})
    TORCH_CHECK(t->numel() == batch * hw && t->is_contiguous(), "channel_gate_grad: (B, H*W) maps expected");
  TORCH_CHECK(gate.numel() == batch * channels && channel_peak.numel() == batch * channels && gate.is_contiguous() &&
                  channel_peak.is_contiguous(), "channel_gate_grad: (B, C) gate and channel peak expected");
  auto grad_c = at::empty({batch, channels}, x.options());
  auto ties = at::empty({batch, channels}, x.options());
  const float *src = x.data_ptr<float>(), *gsrc = grad.data_ptr<float>(), *g = gate.data_ptr<float>(),
              *sg = spatial_gate.data_ptr<float>(), *top = peak.data_ptr<float>(), *mg = mean_grad.data_ptr<float>(),
              *ms = max_share.data_ptr<float>(), *cpeak = channel_peak.data_ptr<float>();
  float *gc_out = grad_c.data_ptr<float>(), *tie_out = ties.data_ptr<float>();
  at::parallel_for(0, batch * channels, grain_for(hw), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / channels;
      const float w = g[plane], best_c = cpeak[plane];
      const float* __restrict row = src + plane * hw;
      const float* __restrict grow = gsrc + plane * hw;
      const float *__restrict s = sg + b * hw, *__restrict best = top + b * hw, *__restrict m = mg + b * hw,
                  *__restrict share = ms + b * hw;
      float sums[kLanes] = {}, counts[kLanes] = {};
      int64_t p = 0;
      for (; p + kLanes <= hw; p += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
          const float xv = row[p + k];
          sums[k] += xv * grad_of_product(grow[p + k], s[p + k], xv * w, best[p + k], m[p + k], share[p + k]);
          counts[k] += xv == best_c ? 1.f : 0.f;
        }
      }
      float sum = 0.f, count = 0.f;
      if (hw >= kLanes) {  // lanes hold values: reduce them (planes of a few positions skip it)
        sum = lane_sum(load(sums));
        count = lane_sum(load(counts));
      }
      for (; p < hw; ++p) {
        const float xv = row[p];
        sum += xv * grad_of_product(grow[p], s[p], xv * w, best[p], m[p], share[p]);
        count += xv == best_c ? 1.f : 0.f;
      }
      gc_out[plane] = sum;
      tie_out[plane] = count;
    }
  });
  return {grad_c, ties};
}

// d loss / d x = c * grad_of_product + (tied for the channel max ? channel_share : 0) + channel_mean_grad.
at::Tensor cbam_input_grad(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& gate,
                           const at::Tensor& spatial_gate, const at::Tensor& peak, const at::Tensor& mean_grad,
                           const at::Tensor& max_share, const at::Tensor& channel_peak,
                           const at::Tensor& channel_mean_grad, const at::Tensor& channel_max_share) {
  check_nchw(x, "cbam_input_grad");
  check_nchw(grad, "cbam_input_grad grad");
  const int64_t batch = x.size(0), channels = x.size(1), hw = x.size(2) * x.size(3);
  for (const at::Tensor* t : {&spatial_gate, &peak, &mean_grad, &max_share})
    TORCH_CHECK(t->numel() == batch * hw && t->is_contiguous(), "cbam_input_grad: (B, H*W) maps expected");
  for (const at::Tensor* t : {&gate, &channel_peak, &channel_mean_grad, &channel_max_share})
    TORCH_CHECK(t->numel() == batch * channels && t->is_contiguous(), "cbam_input_grad: (B, C) vectors expected");
  auto out = at::empty_like(x);
  const float *src = x.data_ptr<float>(), *gsrc = grad.data_ptr<float>(), *g = gate.data_ptr<float>(),
              *sg = spatial_gate.data_ptr<float>(), *top = peak.data_ptr<float>(), *mg = mean_grad.data_ptr<float>(),
              *ms = max_share.data_ptr<float>(), *cpeak = channel_peak.data_ptr<float>(),
              *cmg = channel_mean_grad.data_ptr<float>(), *cms = channel_max_share.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, batch * channels, grain_for(hw), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / channels;
      const float w = g[plane], best_c = cpeak[plane], base = cmg[plane], share_c = cms[plane];
      const float* __restrict row = src + plane * hw;
      const float* __restrict grow = gsrc + plane * hw;
      const float *__restrict s = sg + b * hw, *__restrict best = top + b * hw, *__restrict m = mg + b * hw,
                  *__restrict share = ms + b * hw;
      float* __restrict orow = dst + plane * hw;
      for (int64_t p = 0; p < hw; ++p) {
        const float xv = row[p];
        orow[p] = w * grad_of_product(grow[p], s[p], xv * w, best[p], m[p], share[p]) +
                  (xv == best_c ? share_c : 0.f) + base;
      }
    }
  });
  return out;
}

// The training nodes compute their gradients with kernels that autograd cannot see: refuse double backward
// rather than return second-order gradients that silently leave those paths out.
void check_once_differentiable(const char* node) {
  TORCH_CHECK(!at::GradMode::is_enabled(), "attnzoo's ", node,
              " training node is not twice differentiable (create_graph=True); for double backward run "
              "torch.fx.symbolic_trace(model), which computes the plain formulation");
}

// ---- Gates in plain loops ----
// At batch 1, or at the small maps of a training step, an SE or CBAM gate is a dozen tiny steps between large
// convolutions, and each ATen operator's first call after a convolution runs cold (its dispatch and
// TensorIterator code evicted from the caches): about 10 us each, several times the arithmetic. These loops
// keep a whole gate in a few small kernels, parallel where there is work to share. Same function as the ATen
// route; sums are taken in another order, so results match it to float rounding (1e-6 relative), not bit for bit.

inline float dot(const float* a, const float* b, int64_t n) {
  Floats s0 = {}, s1 = {};
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    s0 += load(a + i) * load(b + i);
    s1 += load(a + i + kLanes) * load(b + i + kLanes);
  }
  if (i + kLanes <= n) {
    s0 += load(a + i) * load(b + i);
    i += kLanes;
  }
  float sum = n >= kLanes ? lane_sum(s0 + s1) : 0.f;  // rows of a few elements skip the lanes
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[n, o] = bias[o] + <weight[o, :], in[n, :]>, ReLU'd if asked, for the rows n of in: a 1x1 convolution on
// pooled (1x1) maps. Parallel over outputs; each weight row is read once from memory and reused for every row.
void dense(const float* in, int64_t rows, const at::Tensor& weight, const at::Tensor& bias, bool relu, float* out) {
  const int64_t outputs = weight.size(0), inputs = weight.numel() / outputs;
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const float* wp = w.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  at::parallel_for(0, outputs, grain_for(inputs * rows), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t n = 0; n < rows; ++n) {
        const float v = bp[o] + dot(wp + o * inputs, in + n * inputs, inputs);
        out[n * outputs + o] = relu ? relu_keeping_nan(v) : v;
      }
    }
  });
}

inline float sigmoid(float z) { return 1.f / (1.f + std::exp(-z)); }

void check_excitation(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                      const at::Tensor& b2, const char* name) {
  check_nchw(x, name);
  const int64_t channels = x.size(1), reduced = w1.size(0);
  for (const at::Tensor* t : {&w1, &b1, &w2, &b2}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu(), name, ": expects float32 CPU weights");
  }
  TORCH_CHECK(w1.numel() == reduced * channels && b1.numel() == reduced && w2.numel() == channels * reduced &&
                  b2.numel() == channels,
              name, ": the MLP's weights must be (R, C, 1, 1), (R), (C, R, 1, 1), (C) for C input channels");
}

// SE's gate = gain * sigmoid(fc2(relu(fc1(mean(x))))) as timm's SEModule computes it, and what backward needs.
struct SeGate {
  at::Tensor pooled, hidden, sig, gate;  // (B, C), (B, R), (B, C), (B, C, 1, 1)
};

// The gate of `images` images from src (value(x) through fold), tensors with the options of `like`.
template <class Fold>
SeGate se_gate_of(const float* src, int64_t images, int64_t channels, int64_t hw, Fold fold, const at::Tensor& w1,
                  const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, double gain,
                  const at::TensorOptions& like) {
  SeGate g;
  g.pooled = at::empty({images, channels}, like);
  g.hidden = at::empty({images, w1.size(0)}, like);
  g.sig = at::empty({images, channels}, like);
  g.gate = at::empty({images, channels, 1, 1}, like);
  plane_stats<false>(src, images, channels, hw, fold, g.pooled.data_ptr<float>(), nullptr);
  dense(g.pooled.data_ptr<float>(), images, w1, b1, /*relu=*/true, g.hidden.data_ptr<float>());
  float* sig = g.sig.data_ptr<float>();
  dense(g.hidden.data_ptr<float>(), images, w2, b2, /*relu=*/false, sig);
  float* gate = g.gate.data_ptr<float>();
  for (int64_t i = 0; i < images * channels; ++i) {
    sig[i] = sigmoid(sig[i]);
    gate[i] = static_cast<float>(gain) * sig[i];
  }
  return g;
}

SeGate se_gate_parts(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                     const at::Tensor& b2, double gain) {
  check_excitation(x, w1, b1, w2, b2, "squeeze-excitation");
  return se_gate_of(x.data_ptr<float>(), x.size(0), x.size(1), x.size(2) * x.size(3), NoFold{}, w1, b1, w2, b2, gain,
                    x.options());
}

at::Tensor se_gate(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                   const at::Tensor& b2, double gain) {
  return se_gate_parts(x, w1, b1, w2, b2, gain).gate;
}

// ---- The excitation MLP's backward in loops ----
// At a training step's small maps the MLP's gradients are products of a few rows (the batch) and a few thousand
// weights: as ATen's mm, sum, comparison and multiply they are a dozen calls, each costing more than its
// arithmetic. Here they are four loops over the weights, each parallel where there is work to share.

// dst[i] += a * src[i] over n floats.
inline void axpy(float* __restrict dst, float a, const float* __restrict src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += a * src[i];
}

// d z of gate = gain * sigmoid(z) from the gate's gradient (rows, C), written over it: grad * sig * (1 - sig) * gain.
at::Tensor sigmoid_grad(at::Tensor grad_gate, const at::Tensor& sig, double gain) {
  const at::Tensor s = sig.contiguous();
  TORCH_CHECK(grad_gate.is_contiguous() && grad_gate.numel() == s.numel(), "sigmoid_grad: one gradient per gate");
  float* g = grad_gate.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const float k = static_cast<float>(gain);
  for (int64_t i = 0; i < s.numel(); ++i) g[i] = g[i] * sp[i] * (1.f - sp[i]) * k;
  return grad_gate;
}

// For a layer out = w in + b (w: outputs x inputs) on `rows` rows, given d out (rows, outputs): d w[o, :] = sum_n
// d out[n, o] * in[n, :] and d b[o] = sum_n d out[n, o], accumulated into zeroed grad_w and grad_b.
void linear_param_grads(const float* grad_out, const float* in, int64_t rows, int64_t outputs, int64_t inputs,
                        float* grad_w, float* grad_b) {
  at::parallel_for(0, outputs, grain_for(rows * inputs), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t n = 0; n < rows; ++n) {
        axpy(grad_w + o * inputs, grad_out[n * outputs + o], in + n * inputs, inputs);
        grad_b[o] += grad_out[n * outputs + o];
      }
    }
  });
}

// The same layer's d in[n, :] = sum_o d out[n, o] * w[o, :], accumulated into zeroed grad_in (rows, inputs).
void linear_input_grad(const float* grad_out, const float* w, int64_t rows, int64_t outputs, int64_t inputs,
                       float* grad_in) {
  at::parallel_for(0, rows, grain_for(outputs * inputs), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t o = 0; o < outputs; ++o) {
        axpy(grad_in + n * inputs, grad_out[n * outputs + o], w + o * inputs, inputs);
      }
    }
  });
}

// The gradients of out = fc2(relu(fc1(in))) (1x1 convolutions with biases, weights (R, C, 1, 1) and
// (C, R, 1, 1)) for `rows` rows of in (rows, C), given d out (rows, C) and the forward's hidden = relu(fc1(in))
// (rows, R); d in is scaled by input_scale (1 / HW where in was a mean).
struct MlpGrads {
  at::Tensor fc1_w, fc1_b, fc2_w, fc2_b, input;
};

MlpGrads mlp_backward(const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& hidden,
                      const at::Tensor& fc1_weight, const at::Tensor& fc2_weight, double input_scale) {
  const int64_t rows = input.size(0), channels = input.size(1), reduced = hidden.size(1);
  const at::Tensor w1 = fc1_weight.contiguous(), w2 = fc2_weight.contiguous();
  const at::Tensor gz2_t = grad_out.contiguous(), in_t = input.contiguous(), hid_t = hidden.contiguous();
  const float *gz2 = gz2_t.data_ptr<float>(), *in = in_t.data_ptr<float>(), *hid = hid_t.data_ptr<float>(),
              *w1p = w1.data_ptr<float>(), *w2p = w2.data_ptr<float>();
  MlpGrads g;
  g.fc2_w = at::zeros(fc2_weight.sizes(), input.options());
  g.fc2_b = at::zeros({channels}, input.options());
  g.fc1_w = at::zeros(fc1_weight.sizes(), input.options());
  g.fc1_b = at::zeros({reduced}, input.options());
  g.input = at::zeros({rows, channels}, input.options());
  auto gz1_t = at::zeros({rows, reduced}, input.options());
  float *gw2 = g.fc2_w.data_ptr<float>(), *gb2 = g.fc2_b.data_ptr<float>(), *gw1 = g.fc1_w.data_ptr<float>(),
        *gb1 = g.fc1_b.data_ptr<float>(), *gin = g.input.data_ptr<float>(), *gz1 = gz1_t.data_ptr<float>();
  linear_param_grads(gz2, hid, rows, channels, reduced, gw2, gb2);
  // through fc2, then the ReLU: 0 where hidden <= 0, selected as torch's ReLU backward selects it: a multiply by 0
  // would turn an inf or NaN there into NaN, which reaches fc1's gradient for a hidden unit that was off
  linear_input_grad(gz2, w2p, rows, channels, reduced, gz1);
  for (int64_t i = 0; i < rows * reduced; ++i) gz1[i] = hid[i] <= 0.f ? 0.f : gz1[i];
  linear_param_grads(gz1, in, rows, reduced, channels, gw1, gb1);
  linear_input_grad(gz1, w1p, rows, reduced, channels, gin);
  const float scale = static_cast<float>(input_scale);
  for (int64_t i = 0; i < rows * channels; ++i) gin[i] *= scale;
  return g;
}

// ---- SE training: squeeze, excitation and scale as one autograd node, forward and backward in C++ ----
// One node where autograd would record eight, and no Python in backward: at the small maps of a training step
// the per-node overhead is what the attention costs. Forward and the two passes over the feature map in
// backward (the gate's gradient, the input's) are loops; the MLP's small backward is ATen's.

// Per (batch, channel) plane: <grad, x>, the gradient of a channel gate that multiplied x.
at::Tensor plane_dots(const at::Tensor& grad, const at::Tensor& x) {
  const int64_t planes = x.size(0) * x.size(1), hw = x.size(2) * x.size(3);
  auto out = at::empty({x.size(0), x.size(1)}, x.options());
  const float *g = grad.data_ptr<float>(), *src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, planes, grain_for(2 * hw), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) dst[plane] = dot(g + plane * hw, src + plane * hw, hw);
  });
  return out;
}

// grad * gate[b, c] + offset[b, c]: the input gradient of x * gate where the gate's own input was x's mean.
at::Tensor gated_grad_plus(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& offset) {
  const int64_t planes = grad.size(0) * grad.size(1), hw = grad.size(2) * grad.size(3);
  auto out = at::empty_like(grad);
  const float *g = grad.data_ptr<float>(), *w = gate.data_ptr<float>(), *o = offset.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, planes, grain_for(hw), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float scale = w[plane], shift = o[plane];
      const float* row = g + plane * hw;
      float* orow = dst + plane * hw;
#pragma omp simd
      for (int64_t p = 0; p < hw; ++p) orow[p] = row[p] * scale + shift;
    }
  });
  return out;
}

class SqueezeExcite : public torch::autograd::Function<SqueezeExcite> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w1,
                            const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, double gain) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const SeGate g = se_gate_parts(x, w1, b1, w2, b2, gain);
    ctx->save_for_backward({x, g.pooled, g.hidden, g.sig, g.gate, w1, w2});
    ctx->saved_data["gain"] = gain;
    return gate(x, g.gate, c10::nullopt);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &pooled = saved[1], &hidden = saved[2], &sig = saved[3], &gate = saved[4],
                     &w1 = saved[5], &w2 = saved[6];
    check_once_differentiable("SE");
    const double gain = ctx->saved_data["gain"].toDouble();
    const at::Tensor grad = grads[0].contiguous();
    const int64_t hw = x.size(2) * x.size(3);
    const at::Tensor grad_z2 = sigmoid_grad(plane_dots(grad, x), sig, gain);
    const MlpGrads mlp = mlp_backward(grad_z2, pooled, hidden, w1, w2, 1.0 / static_cast<double>(hw));
    const at::Tensor grad_x = gated_grad_plus(grad, gate, mlp.input);
    return {grad_x, mlp.fc1_w, mlp.fc1_b, mlp.fc2_w, mlp.fc2_b, at::Tensor()};
  }
};

at::Tensor squeeze_excite(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                          const at::Tensor& b2, double gain) {
  return SqueezeExcite::apply(x, w1, b1, w2, b2, gain);
}

// CBAM's channel gate c = gain * sigmoid(mlp(mean) + mlp(max)) over positions, the two descriptors stacked as
// (2B, C) through the MLP together; with what backward needs.
struct ChannelGate {
  at::Tensor stacked, hidden, sig, gate;  // (2B, C), (2B, R), (B, C), (B, C)
};

// The gate of `images` images from src (value(x) through fold), tensors with the options of `like`.
template <class Fold>
ChannelGate channel_gate_of(const float* src, int64_t images, int64_t channels, int64_t hw, Fold fold,
                            const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
                            const at::Tensor& fc2_b, double gain, const at::TensorOptions& like) {
  ChannelGate g;
  g.stacked = at::empty({2 * images, channels}, like);
  float* descriptors = g.stacked.data_ptr<float>();
  plane_stats<true>(src, images, channels, hw, fold, descriptors, descriptors + images * channels);
  g.hidden = at::empty({2 * images, fc1_w.size(0)}, like);
  auto logits = at::empty({2 * images, channels}, like);
  dense(descriptors, 2 * images, fc1_w, fc1_b, /*relu=*/true, g.hidden.data_ptr<float>());
  dense(g.hidden.data_ptr<float>(), 2 * images, fc2_w, fc2_b, /*relu=*/false, logits.data_ptr<float>());
  g.sig = at::empty({images, channels}, like);
  g.gate = at::empty({images, channels}, like);
  const float* z = logits.data_ptr<float>();
  float *sig = g.sig.data_ptr<float>(), *gate = g.gate.data_ptr<float>();
  for (int64_t i = 0; i < images * channels; ++i) {
    sig[i] = sigmoid(z[i] + z[images * channels + i]);
    gate[i] = static_cast<float>(gain) * sig[i];
  }
  return g;
}

ChannelGate channel_gate_parts(const at::Tensor& x, const at::Tensor& fc1_w, const at::Tensor& fc1_b,
                               const at::Tensor& fc2_w, const at::Tensor& fc2_b, double gain) {
  check_excitation(x, fc1_w, fc1_b, fc2_w, fc2_b, "CBAM");
  return channel_gate_of(x.data_ptr<float>(), x.size(0), x.size(1), x.size(2) * x.size(3), NoFold{}, fc1_w, fc1_b,
                         fc2_w, fc2_b, gain, x.options());
}

// CBAM's spatial convolution in loops: one odd k x k filter over the two (B, 2, H, W) maps (NCHW), stride 1,
// 'same' zero padding, no bias. Its maps are a few thousand values, where oneDNN's call and its backward's
// cost more than the arithmetic. Parallel over output rows; each row accumulates its taps along whole rows of
// input (vectorised over positions), then finish(row, width) runs on it.
int64_t spatial_kernel_size(const at::Tensor& maps, const at::Tensor& conv_w) {
  const int64_t k = conv_w.size(-1);
  TORCH_CHECK(maps.dim() == 4 && maps.size(1) == 2 && maps.is_contiguous() && conv_w.numel() == 2 * k * k &&
                  conv_w.size(-2) == k && k % 2 == 1,
              "CBAM's spatial conv must be one odd k x k filter over two contiguous maps");
  return k;
}

template <class Finish>
at::Tensor spatial_conv(const at::Tensor& maps, const at::Tensor& conv_w, Finish finish) {
  const int64_t batch = maps.size(0), h = maps.size(2), w = maps.size(3), k = spatial_kernel_size(maps, conv_w);
  const int64_t pad = k / 2;
  const at::Tensor weights = conv_w.contiguous();
  const float* wp = weights.data_ptr<float>();
  const float* src = maps.data_ptr<float>();
  auto out = at::empty({batch, 1, h, w}, maps.options());
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, batch * h, grain_for(2 * k * k * w), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / h, y = row % h;
      float* acc = dst + row * w;
      std::fill(acc, acc + w, 0.f);
      for (int64_t ci = 0; ci < 2; ++ci) {
        for (int64_t ky = 0; ky < k; ++ky) {
          const int64_t yy = y + ky - pad;
          if (yy < 0 || yy >= h) continue;
          const float* in = src + ((b * 2 + ci) * h + yy) * w;
          for (int64_t kx = 0; kx < k; ++kx) {
            const float tap = wp[(ci * k + ky) * k + kx];
            const int64_t shift_x = kx - pad, x0 = std::max<int64_t>(0, -shift_x), x1 = std::min(w, w - shift_x);
#pragma omp simd
            for (int64_t x = x0; x < x1; ++x) acc[x] += tap * in[x + shift_x];
          }
        }
      }
      finish(acc, w);
    }
  });
  return out;
}

// The gradients of spatial_conv (no finish) for the maps and the filter, given d out (B, 1, H, W).
std::tuple<at::Tensor, at::Tensor> spatial_conv_backward(const at::Tensor& grad_out, const at::Tensor& maps,
                                                         const at::Tensor& conv_w) {
  const int64_t batch = maps.size(0), h = maps.size(2), w = maps.size(3), k = spatial_kernel_size(maps, conv_w);
  const int64_t pad = k / 2;
  const at::Tensor weights = conv_w.contiguous(), g = grad_out.contiguous();
  const float *wp = weights.data_ptr<float>(), *src = maps.data_ptr<float>(), *gp = g.data_ptr<float>();
  auto grad_maps = at::empty_like(maps);
  auto grad_w = at::empty(conv_w.sizes(), conv_w.options());
  float *gm = grad_maps.data_ptr<float>(), *gw = grad_w.data_ptr<float>();
  // d maps[b, ci, yy, x] = sum over taps of w[ci, ky, kx] * d out[b, yy - ky + pad, x - kx + pad]
  at::parallel_for(0, batch * 2 * h, grain_for(k * k * w), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / (2 * h), ci = (row / h) % 2, yy = row % h;
      float* acc = gm + row * w;
      std::fill(acc, acc + w, 0.f);
      for (int64_t ky = 0; ky < k; ++ky) {
        const int64_t y = yy - ky + pad;
        if (y < 0 || y >= h) continue;
        const float* grow = gp + (b * h + y) * w;
        for (int64_t kx = 0; kx < k; ++kx) {
          const float tap = wp[(ci * k + ky) * k + kx];
          const int64_t shift_x = pad - kx, x0 = std::max<int64_t>(0, -shift_x), x1 = std::min(w, w - shift_x);
#pragma omp simd
          for (int64_t x = x0; x < x1; ++x) acc[x] += tap * grow[x + shift_x];
        }
      }
    }
  });
  // d w[ci, ky, kx] = sum over b, y, x of d out[b, y, x] * maps[b, ci, y + ky - pad, x + kx - pad]
  at::parallel_for(0, 2 * k * k, grain_for(batch * h * w), [&](int64_t begin, int64_t end) {
    for (int64_t tap = begin; tap < end; ++tap) {
      const int64_t ci = tap / (k * k), ky = (tap / k) % k, kx = tap % k;
      const int64_t shift_x = kx - pad, x0 = std::max<int64_t>(0, -shift_x), x1 = std::min(w, w - shift_x);
      float sum = 0.f;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t y = std::max<int64_t>(0, pad - ky); y < std::min(h, h + pad - ky); ++y) {
          const float* in = src + ((b * 2 + ci) * h + y + ky - pad) * w + shift_x;
          sum += x1 > x0 ? dot(gp + (b * h + y) * w + x0, in + x0, x1 - x0) : 0.f;
        }
      }
      gw[tap] = sum;
    }
  });
  return {grad_maps, grad_w};
}

// ---- CBAM training: the whole module as one autograd node, forward and backward in C++ ----
// c = channel_gain * sigmoid(mlp(mean_c) + mlp(max_c)) with mlp = fc2(relu(fc1(.))) applied once to both
// descriptors stacked; s = spatial_gain * sigmoid(bn(conv(maps))) with maps = [mean_C(x*c), max_C(x*c)];
// out = x * c * s. The function of attnzoo's Python route (attnzoo/attention/cbam.py), the channel gate by the
// loops above (equal to float rounding); the BatchNorm updates its running statistics once, in forward,
// through the same ATen kernel.
struct CbamGates {
  at::Tensor stacked, hidden, channel_sig, c, maps, conv_out, save_mean, save_invstd, spatial_sig, s;
};

// Both gates and what backward needs.
CbamGates cbam_gate_parts(const at::Tensor& x, const at::Tensor& fc1_w, const at::Tensor& fc1_b,
                          const at::Tensor& fc2_w, const at::Tensor& fc2_b, double channel_gain,
                          const at::Tensor& conv_w, const at::Tensor& bn_w, const at::Tensor& bn_b,
                          const at::Tensor& running_mean, const at::Tensor& running_var, bool bn_training,
                          double bn_momentum, double bn_eps, double spatial_gain) {
  CbamGates g;
  ChannelGate channel = channel_gate_parts(x, fc1_w, fc1_b, fc2_w, fc2_b, channel_gain);
  g.stacked = channel.stacked;
  g.hidden = channel.hidden;
  g.channel_sig = channel.sig;
  g.c = channel.gate;
  g.maps = gated_channel_stats(x, g.c);
  g.conv_out = spatial_conv(g.maps, conv_w, [](float*, int64_t) {});
  // torch's batch_norm refuses a single value per channel in training (its variance would be 0/0, the running
  // variance NaN); ATen's kernel does not check, so refuse here in the same words, as the same ValueError.
  TORCH_CHECK_VALUE(!bn_training || g.conv_out.numel() / g.conv_out.size(1) != 1,
                    "Expected more than 1 value per channel when training, got input size torch.Size(",
                    g.conv_out.sizes(), ")");
  at::Tensor normed;
  std::tie(normed, g.save_mean, g.save_invstd) =
      at::native_batch_norm(g.conv_out, bn_w, bn_b, running_mean, running_var, bn_training, bn_momentum, bn_eps);
  g.spatial_sig = at::sigmoid(normed);
  g.s = spatial_gain == 1.0 ? g.spatial_sig : g.spatial_sig * spatial_gain;
  return g;
}

// CBAM's spatial gate in eval mode: s = gain * sigmoid(scale * conv(maps) + shift), the BatchNorm folded into
// scale and shift.
at::Tensor spatial_gate_eval(const at::Tensor& maps, const at::Tensor& conv_w, const at::Tensor& bn_w,
                             const at::Tensor& bn_b, const at::Tensor& running_mean, const at::Tensor& running_var,
                             double bn_eps, double spatial_gain) {
  const double invstd = 1.0 / std::sqrt(running_var.item<double>() + bn_eps);
  const double folded_scale = bn_w.item<double>() * invstd;
  const float scale = static_cast<float>(folded_scale);
  const float shift = static_cast<float>(bn_b.item<double>() - running_mean.item<double>() * folded_scale);
  const float gain = static_cast<float>(spatial_gain);
  return spatial_conv(maps, conv_w, [&](float* acc, int64_t w) {
    for (int64_t x = 0; x < w; ++x) acc[x] = gain * sigmoid(acc[x] * scale + shift);
  });
}

// CBAM's channel gate (B, C) and spatial gate (B, 1, H, W) in one call, the BatchNorm in eval mode (which
// changes nothing, so the operator is functional): inference, where the gated tail applies both gates.
// Three passes over x (descriptor pools, channel maps of x * c; the caller gates) and the small steps in loops.
std::tuple<at::Tensor, at::Tensor> cbam_gates(const at::Tensor& x, const at::Tensor& fc1_w, const at::Tensor& fc1_b,
                                              const at::Tensor& fc2_w, const at::Tensor& fc2_b, double channel_gain,
                                              const at::Tensor& conv_w, const at::Tensor& bn_w, const at::Tensor& bn_b,
                                              const at::Tensor& running_mean, const at::Tensor& running_var,
                                              double bn_eps, double spatial_gain) {
  const at::Tensor c = channel_gate_parts(x, fc1_w, fc1_b, fc2_w, fc2_b, channel_gain).gate;
  return {c, spatial_gate_eval(gated_channel_stats(x, c), conv_w, bn_w, bn_b, running_mean, running_var, bn_eps,
                               spatial_gain)};
}

class Cbam : public torch::autograd::Function<Cbam> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& fc1_w,
                            const at::Tensor& fc1_b, const at::Tensor& fc2_w, const at::Tensor& fc2_b,
                            double channel_gain, const at::Tensor& conv_w, const at::Tensor& bn_w,
                            const at::Tensor& bn_b, const at::Tensor& running_mean, const at::Tensor& running_var,
                            bool bn_training, double bn_momentum, double bn_eps, double spatial_gain) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const CbamGates g = cbam_gate_parts(x, fc1_w, fc1_b, fc2_w, fc2_b, channel_gain, conv_w, bn_w, bn_b, running_mean,
                                        running_var, bn_training, bn_momentum, bn_eps, spatial_gain);
    const at::Tensor &stacked = g.stacked, &hidden = g.hidden, &channel_sig = g.channel_sig, &c = g.c, &maps = g.maps,
                     &conv_out = g.conv_out, &save_mean = g.save_mean, &save_invstd = g.save_invstd,
                     &spatial_sig = g.spatial_sig, &s = g.s;
    ctx->save_for_backward({x, stacked, hidden, channel_sig, c, maps, conv_out, save_mean, save_invstd, spatial_sig, s,
                            fc1_w, fc2_w, conv_w, bn_w, running_mean, running_var});
    ctx->saved_data["channel_gain"] = channel_gain;
    ctx->saved_data["spatial_gain"] = spatial_gain;
    ctx->saved_data["bn_training"] = bn_training;
    ctx->saved_data["bn_eps"] = bn_eps;
    return gate(x, c, s);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    check_once_differentiable("CBAM");
    const auto v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &stacked = v[1], &hidden = v[2], &channel_sig = v[3], &c = v[4], &maps = v[5],
                     &conv_out = v[6], &save_mean = v[7], &save_invstd = v[8], &spatial_sig = v[9], &s = v[10],
                     &fc1_w = v[11], &fc2_w = v[12], &conv_w = v[13], &bn_w = v[14], &running_mean = v[15],
                     &running_var = v[16];
    const double channel_gain = ctx->saved_data["channel_gain"].toDouble();
    const double spatial_gain = ctx->saved_data["spatial_gain"].toDouble();
    const at::Tensor grad = grads[0].contiguous();
    const int64_t batch = x.size(0), channels = x.size(1), hw = x.size(2) * x.size(3);
    const at::Tensor peak = maps.select(1, 1).contiguous();

    // spatial gate: d s, then back through sigmoid, BatchNorm and the conv to the two channel maps
    auto [grad_s, spatial_ties] = spatial_gate_grad(grad, x, c, peak);
    const at::Tensor grad_normed = grad_s * (spatial_sig * (1 - spatial_sig) * spatial_gain);
    auto [grad_conv_out, grad_bn_w, grad_bn_b] = at::native_batch_norm_backward(
        grad_normed, conv_out, bn_w, running_mean, running_var, save_mean, save_invstd,
        ctx->saved_data["bn_training"].toBool(), ctx->saved_data["bn_eps"].toDouble(), {true, true, true});
    auto [grad_maps, grad_conv_w] = spatial_conv_backward(grad_conv_out, maps, conv_w);
    const at::Tensor mean_grad = (grad_maps.select(1, 0) / static_cast<double>(channels)).contiguous();
    const at::Tensor max_share = (grad_maps.select(1, 1) / spatial_ties.select(1, 0)).contiguous();

    // channel gate: d c, then back through the gate and the shared MLP to both descriptors
    auto [grad_c, channel_ties] = channel_gate_grad(grad, x, c, s, peak, mean_grad, max_share,
                                                    stacked.slice(0, batch).contiguous());
    const at::Tensor grad_logits = sigmoid_grad(grad_c, channel_sig, channel_gain);
    const MlpGrads mlp = mlp_backward(at::cat({grad_logits, grad_logits}), stacked, hidden, fc1_w, fc2_w, 1.0);
    const at::Tensor& grad_stacked = mlp.input;

    const at::Tensor grad_x = cbam_input_grad(
        grad, x, c, s, peak, mean_grad, max_share, stacked.slice(0, batch).contiguous(),
        (grad_stacked.slice(0, 0, batch) / static_cast<double>(hw)).contiguous(),
        (grad_stacked.slice(0, batch) / channel_ties).contiguous());
    return {grad_x,    mlp.fc1_w,    mlp.fc1_b,    mlp.fc2_w,    mlp.fc2_b,    at::Tensor(), grad_conv_w, grad_bn_w,
            grad_bn_b, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor cbam(const at::Tensor& x, const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
                const at::Tensor& fc2_b, double channel_gain, const at::Tensor& conv_w, const at::Tensor& bn_w,
                const at::Tensor& bn_b, const at::Tensor& running_mean, const at::Tensor& running_var, bool bn_training,
                double bn_momentum, double bn_eps, double spatial_gain) {
  return Cbam::apply(x, fc1_w, fc1_b, fc2_w, fc2_b, channel_gain, conv_w, bn_w, bn_b, running_mean, running_var,
                     bn_training, bn_momentum, bn_eps, spatial_gain);
}

// ---- A residual block's whole tail after its last convolution, in eval mode ----
// relu(attention(bn(x)) + residual) with the eval BatchNorm folded in (NoFold/BnFold above), written over x.
// The block's eager tail makes its passes over the feature map after the convolution (BN; the attention's
// pooling; gating with the residual add and ReLU) and allocates the BN's output; these make the attention's
// passes alone, a few images at a time, so that each pass after the first re-reads what the one before just
// brought into the cache rather than memory. In place: a fresh output costs its page faults on every call (tens
// of MB at batch 8), and the caller hands over a convolution's output that nothing else reads.

constexpr int64_t kTailChunkBytes = int64_t{4} << 20;  // images per chunk: well inside a last-level cache

// Per channel: the eval BatchNorm as scale = weight / sqrt(var + eps) and shift = bias - mean * scale, rounded as
// ATen's eval BatchNorm rounds them.
std::tuple<at::Tensor, at::Tensor> folded_batch_norm(const c10::optional<at::Tensor>& weight,
                                                     const c10::optional<at::Tensor>& bias, const at::Tensor& mean,
                                                     const at::Tensor& var, double eps, int64_t channels) {
  for (const at::Tensor* t : {&mean, &var}) {
    TORCH_CHECK(t->numel() == channels && t->scalar_type() == at::kFloat && t->device().is_cpu(),
                "folded BatchNorm: expects float32 CPU running statistics, one per channel");
  }
  auto scale = at::empty({channels}, mean.options());
  auto shift = at::empty({channels}, mean.options());
  const at::Tensor m = mean.contiguous(), v = var.contiguous();
  const at::Tensor w = weight.has_value() ? weight->contiguous() : at::ones({channels}, mean.options());
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::zeros({channels}, mean.options());
  TORCH_CHECK(w.numel() == channels && b.numel() == channels && w.scalar_type() == at::kFloat &&
                  b.scalar_type() == at::kFloat,
              "folded BatchNorm: expects float32 affine parameters, one per channel");
  const float *wp = w.data_ptr<float>(), *bp = b.data_ptr<float>(), *mp = m.data_ptr<float>(), *vp = v.data_ptr<float>();
  float *sp = scale.data_ptr<float>(), *hp = shift.data_ptr<float>();
  for (int64_t c = 0; c < channels; ++c) {
    sp[c] = wp[c] * (1.f / std::sqrt(vp[c] + static_cast<float>(eps)));
    hp[c] = std::fma(-mp[c], sp[c], bp[c]);
  }
  return {scale, shift};
}

// What every block tail checks and prepares: the residual's shape, the folded BN, and how many images a chunk holds.
struct TailPlan {
  at::Tensor scale, shift;
  int64_t batch, channels, hw, chunk;
  BnFold fold() const { return {scale.data_ptr<float>(), shift.data_ptr<float>()}; }

  // Calls step(chunk, images, residual_chunk) on each run of `chunk` images of x, in order.
  template <typename Step>
  void for_each_chunk(const at::Tensor& x, const at::Tensor& residual, Step step) const {
    const int64_t image = channels * hw;
    float* src = x.data_ptr<float>();
    const float* res = residual.data_ptr<float>();
    for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
      step(src + b0 * image, std::min(chunk, batch - b0), res + b0 * image);
    }
  }
};

TailPlan plan_tail(const at::Tensor& x, const at::Tensor& residual, const c10::optional<at::Tensor>& bn_weight,
                   const c10::optional<at::Tensor>& bn_bias, const at::Tensor& bn_mean, const at::Tensor& bn_var,
                   double bn_eps, const char* name) {
  check_nchw(residual, (std::string(name) + " residual").c_str());
  TORCH_CHECK(residual.sizes() == x.sizes(), name, ": the residual must have the input's shape");
  TailPlan plan;
  plan.batch = x.size(0);
  plan.channels = x.size(1);
  plan.hw = x.size(2) * x.size(3);
  std::tie(plan.scale, plan.shift) = folded_batch_norm(bn_weight, bn_bias, bn_mean, bn_var, bn_eps, plan.channels);
  const int64_t image_bytes = std::max<int64_t>(1, plan.channels * plan.hw * 4);
  plan.chunk = std::min(plan.batch, std::max<int64_t>(1, kTailChunkBytes / image_bytes));
  return plan;
}

// SE: two passes (pooling; gating with the add and ReLU) where the block's tail makes three.
void se_bn_tail_(const at::Tensor& x, const c10::optional<at::Tensor>& bn_weight,
                 const c10::optional<at::Tensor>& bn_bias, const at::Tensor& bn_mean, const at::Tensor& bn_var,
                 double bn_eps, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                 double gain, const at::Tensor& residual) {
  check_excitation(x, w1, b1, w2, b2, "se_bn_tail_");
  const TailPlan plan = plan_tail(x, residual, bn_weight, bn_bias, bn_mean, bn_var, bn_eps, "se_bn_tail_");
  plan.for_each_chunk(x, residual, [&](float* chunk, int64_t images, const float* res) {
    const SeGate g =
        se_gate_of(chunk, images, plan.channels, plan.hw, plan.fold(), w1, b1, w2, b2, gain, x.options());
    gate_rows(chunk, images, plan.channels, plan.hw, plan.fold(), g.gate.data_ptr<float>(), nullptr, res,
              /*relu=*/true, chunk);
  });
}

// CBAM: three passes (descriptor pools; channel maps; gating with the add and ReLU) where the block's tail makes
// four, the spatial BatchNorm in eval mode as in cbam_gates.
void cbam_bn_tail_(const at::Tensor& x, const c10::optional<at::Tensor>& bn_weight,
                   const c10::optional<at::Tensor>& bn_bias, const at::Tensor& bn_mean, const at::Tensor& bn_var,
                   double bn_eps, const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
                   const at::Tensor& fc2_b, double channel_gain, const at::Tensor& conv_w,
                   const at::Tensor& spatial_bn_w, const at::Tensor& spatial_bn_b, const at::Tensor& spatial_mean,
                   const at::Tensor& spatial_var, double spatial_eps, double spatial_gain, const at::Tensor& residual) {
  check_excitation(x, fc1_w, fc1_b, fc2_w, fc2_b, "cbam_bn_tail_");
  const TailPlan plan = plan_tail(x, residual, bn_weight, bn_bias, bn_mean, bn_var, bn_eps, "cbam_bn_tail_");
  plan.for_each_chunk(x, residual, [&](float* chunk, int64_t images, const float* res) {
    const at::Tensor c = channel_gate_of(chunk, images, plan.channels, plan.hw, plan.fold(), fc1_w, fc1_b, fc2_w,
                                         fc2_b, channel_gain, x.options())
                             .gate;
    auto maps = at::empty({images, 2, x.size(2), x.size(3)}, x.options());
    gated_channel_stats_into(chunk, images, plan.channels, plan.hw, c.data_ptr<float>(), plan.fold(),
                             maps.data_ptr<float>());
    const at::Tensor s = spatial_gate_eval(maps, conv_w, spatial_bn_w, spatial_bn_b, spatial_mean, spatial_var,
                                           spatial_eps, spatial_gain);
    gate_rows(chunk, images, plan.channels, plan.hw, plan.fold(), c.data_ptr<float>(), s.data_ptr<float>(), res,
              /*relu=*/true, chunk);
  });
}

}  // namespace

TORCH_LIBRARY(attnzoo_gating, m) {
  m.def("channel_stats(Tensor x) -> (Tensor, Tensor)");
  m.def("gated_channel_stats(Tensor x, Tensor gate) -> Tensor");
  m.def("gate_(Tensor(a!) x, Tensor channel_gate, Tensor? spatial_gate) -> Tensor(a!)");
  m.def("gate(Tensor x, Tensor channel_gate, Tensor? spatial_gate) -> Tensor");
  m.def("gate_add_relu_(Tensor(a!) x, Tensor channel_gate, Tensor? spatial_gate, Tensor residual) -> Tensor(a!)");
  m.def("squeeze_excite(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, float gain) -> Tensor");
  m.def("cbam(Tensor x, Tensor fc1_w, Tensor fc1_b, Tensor fc2_w, Tensor fc2_b, float channel_gain, Tensor conv_w, "
        "Tensor bn_w, Tensor bn_b, Tensor(a!) running_mean, Tensor(b!) running_var, bool bn_training, float bn_momentum, "
        "float bn_eps, float spatial_gain) -> Tensor");
  m.def("se_gate(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, float gain) -> Tensor");
  m.def("cbam_gates(Tensor x, Tensor fc1_w, Tensor fc1_b, Tensor fc2_w, Tensor fc2_b, float channel_gain, "
        "Tensor conv_w, Tensor bn_w, Tensor bn_b, Tensor running_mean, Tensor running_var, float bn_eps, "
        "float spatial_gain) -> (Tensor, Tensor)");
  m.def("se_bn_tail_(Tensor(a!) x, Tensor? bn_weight, Tensor? bn_bias, Tensor bn_mean, Tensor bn_var, float bn_eps, "
        "Tensor w1, Tensor b1, Tensor w2, Tensor b2, float gain, Tensor residual) -> ()");
  m.def("cbam_bn_tail_(Tensor(a!) x, Tensor? bn_weight, Tensor? bn_bias, Tensor bn_mean, Tensor bn_var, float bn_eps, "
        "Tensor fc1_w, Tensor fc1_b, Tensor fc2_w, Tensor fc2_b, float channel_gain, Tensor conv_w, Tensor spatial_bn_w, "
        "Tensor spatial_bn_b, Tensor spatial_mean, Tensor spatial_var, float spatial_eps, float spatial_gain, "
        "Tensor residual) -> ()");
  m.def("spatial_gate_grad(Tensor grad, Tensor x, Tensor gate, Tensor peak) -> (Tensor, Tensor)");
  m.def("channel_gate_grad(Tensor grad, Tensor x, Tensor gate, Tensor spatial_gate, Tensor peak, Tensor mean_grad, "
        "Tensor max_share, Tensor channel_peak) -> (Tensor, Tensor)");
  m.def("cbam_input_grad(Tensor grad, Tensor x, Tensor gate, Tensor spatial_gate, Tensor peak, Tensor mean_grad, "
        "Tensor max_share, Tensor channel_peak, Tensor channel_mean_grad, Tensor channel_max_share) -> Tensor");
}

TORCH_LIBRARY_IMPL(attnzoo_gating, Autograd, m) {
  m.impl("squeeze_excite", &squeeze_excite);
  m.impl("cbam", &cbam);
}

TORCH_LIBRARY_IMPL(attnzoo_gating, CPU, m) {
  m.impl("channel_stats", &channel_stats);
  m.impl("gated_channel_stats", &gated_channel_stats);
  m.impl("gate_", &gate_);
  m.impl("gate", &gate);
  m.impl("gate_add_relu_", &gate_add_relu_);
  m.impl("se_gate", &se_gate);
  m.impl("cbam_gates", &cbam_gates);
  m.impl("se_bn_tail_", &se_bn_tail_);
  m.impl("cbam_bn_tail_", &cbam_bn_tail_);
  m.impl("spatial_gate_grad", &spatial_gate_grad);
  m.impl("channel_gate_grad", &channel_gate_grad);
  m.impl("cbam_input_grad", &cbam_input_grad);
}
