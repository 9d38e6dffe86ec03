// The LSTM's loop over time in C++: the same forward and hand-written backward as
// looplm/nn/fast.py, one call per sequence instead of ~7 Python-dispatched ops per step.
//
// Each step is one matmul and one fused pass over the (bs, 4*n_hid) gates written here with
// at::vec::Vectorized (AVX2/AVX512 as compiled):
//
//   gates[t] (bs, 4*n_hid) = xp[t] + h_{t-1} W_hh^T         brgemm (or ATen's addmm)
//   i f g o = sig sig tanh sig (gates[t]);  c = f c + i g;  h = o tanh(c)   fused loop
//
//   backward, t = T-1 .. 0: d_gates[t] from dh, dc (fused loop);  dh = d_out[t-1] + d_gates[t] W_hh
//
// Buffers are allocated once per sequence, never inside the loop. In bf16 (autocast) the
// matmuls take bf16 as autocast's would, while the gates, c and the gradients that cross
// time stay float32. The output and d_xp come in xp's order: (T, bs) or batch-major.

#include <torch/extension.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;
using at::vec::Vectorized;

// sigmoid(x) = 1 / (1 + exp(-x)). In float32 exp is ATen's exp_u20 polynomial (2 ulp): with
// Sleef's 1-ulp exp and tanh the fused forward pass took 40 us a step at (64, 64), with
// exp_u20 10.6 us; in float64 the exact exp, so the float64 tests stay exact.
template <typename T>
inline Vectorized<T> sigmoid(Vectorized<T> x) {
  const Vectorized<T> one(T(1));
  if constexpr (std::is_same_v<T, float>) {
    return one / (one + x.neg().exp_u20());
  } else {
    return one / (one + x.neg().exp());
  }
}

// tanh(x) = 2 sigmoid(2x) - 1: Sleef's tanh costs about three exps
template <typename T>
inline Vectorized<T> tanh(Vectorized<T> x) {
  const Vectorized<T> two(T(2));
  return two * sigmoid(two * x) - Vectorized<T>(T(1));
}

// Rows per thread for a step's work on (bs, H): a step of (64, 64) takes ~10 us, which a
// fork and join across threads would only slow; from (64, 128) on, the rows are split
// between torch's threads (at::parallel_for runs inline when the grain covers them all).
inline int64_t row_grain(int64_t bs, int64_t H) {
  constexpr int64_t kParallelWork = 8192;   // bs * H
  if (bs * H < kParallelWork) return bs + 1;
  return std::max<int64_t>(1, (bs + at::get_num_threads() - 1) / at::get_num_threads());
}

// One forward step on rows of acc_t (float or double): gates holds the pre-activations of
// i, f, g, o (bs, 4H) and is overwritten with the activations; c, tc (= tanh c) (bs, H) and
// h, whose rows are ld_h apart (the output's rows are, in batch-major order).
template <typename T>
void lstm_step_forward(T* gates, const T* c_prev, T* c, T* tc, T* h, int64_t ld_h, int64_t bs,
                       int64_t H) {
  using V = Vectorized<T>;
  at::parallel_for(0, bs, row_grain(bs, H), [&](int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    T* g = gates + b * 4 * H;
    const int64_t r = b * H;
    for (int64_t j = 0; j < H; j += V::size()) {
      const int64_t n = std::min<int64_t>(V::size(), H - j);
      V i = sigmoid(V::loadu(g + j, n)), f = sigmoid(V::loadu(g + H + j, n));
      V gg = tanh(V::loadu(g + 2 * H + j, n)), o = sigmoid(V::loadu(g + 3 * H + j, n));
      V cc = f * V::loadu(c_prev + r + j, n) + i * gg;
      V t = tanh(cc);
      i.store(g + j, n), f.store(g + H + j, n), gg.store(g + 2 * H + j, n), o.store(g + 3 * H + j, n);
      cc.store(c + r + j, n), t.store(tc + r + j, n), (o * t).store(h + b * ld_h + j, n);
    }
  }
  });
}

// One backward step: dh is the gradient of h_t, dc that of c_t from the later steps (on
// return: that of c_{t-1}); writes d_gates (bs, 4H, rows ld_d apart), the pre-activations'
// gradients.
template <typename T>
void lstm_step_backward(const T* gates, const T* c_prev, const T* tc, const T* dh, T* dc,
                        T* d_gates, int64_t ld_d, int64_t bs, int64_t H) {
  using V = Vectorized<T>;
  const V one(T(1));
  at::parallel_for(0, bs, row_grain(bs, H), [&](int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const T* g = gates + b * 4 * H;
    T* dg = d_gates + b * ld_d;
    const int64_t r = b * H;
    for (int64_t j = 0; j < H; j += V::size()) {
      const int64_t n = std::min<int64_t>(V::size(), H - j);
      V i = V::loadu(g + j, n), f = V::loadu(g + H + j, n);
      V gg = V::loadu(g + 2 * H + j, n), o = V::loadu(g + 3 * H + j, n);
      V t = V::loadu(tc + r + j, n), dht = V::loadu(dh + r + j, n);
      V dct = V::loadu(dc + r + j, n) + dht * o * (one - t * t);
      (dct * gg * i * (one - i)).store(dg + j, n);
      (dct * V::loadu(c_prev + r + j, n) * f * (one - f)).store(dg + H + j, n);
      (dct * i * (one - gg * gg)).store(dg + 2 * H + j, n);
      (dht * t * o * (one - o)).store(dg + 3 * H + j, n);
      (dct * f).store(dc + r + j, n);
    }
  }
  });
}

template <typename T>
T* ptr(const Tensor& x) { return x.data_ptr<T>(); }

// (T, bs, n) in the memory order of `like` (T, bs, *): batch-major when `like` is, so that a
// batch_first layer reads and writes (bs, T, n) contiguously and never transposes a copy.
Tensor empty_ordered(const Tensor& like, int64_t n, at::TensorOptions options) {
  const int64_t T = like.size(0), bs = like.size(1);
  if (like.stride(0) < like.stride(1)) return at::empty({bs, T, n}, options).transpose(0, 1);
  return at::empty({T, bs, n}, options);
}

// One step's rows of a (T, bs, n) tensor whose last dimension is contiguous.
template <typename T>
T* row0(const Tensor& x, int64_t t) { return ptr<T>(x) + t * x.stride(0); }

// xp (T, bs, 4H), h0 (bs, H), c0 (bs, H), w_hh (4H, H), all one dtype; xp in either order.
// Returns out (T, bs, H) in that dtype and xp's order, and for the backward pass, in acc_t
// (float for bf16/fp16, else the dtype): cs, tanh_cs (T, bs, H), gates (T, bs, 4H) activated.
template <typename acc_t>
std::vector<Tensor> forward_impl(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh) {
  const int64_t T = xp.size(0), bs = xp.size(1), H = h0.size(1);
  const auto acc = xp.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  const bool mixed = xp.scalar_type() != acc.dtype().toScalarType();
  Tensor out = empty_ordered(xp, H, xp.options());
  Tensor cs = at::empty({T, bs, H}, acc), tanh_cs = at::empty({T, bs, H}, acc);
  Tensor gates = at::empty({T, bs, 4 * H}, acc);
  Tensor pre = mixed ? at::empty({bs, 4 * H}, xp.options()) : Tensor();   // low-precision product
  Tensor h_acc = mixed ? at::empty({bs, H}, acc) : Tensor();
  Tensor c_first = c0.to(acc).contiguous(), w_t = w_hh.t();
  auto gates_t = gates.unbind(0), out_t = out.unbind(0), xp_t = xp.unbind(0);
  for (int64_t t = 0; t < T; ++t) {   // each step's xp is copied into its gates while in cache
    const Tensor& h = t ? out_t[t - 1] : h0;
    if (mixed) {
      at::add_out(gates_t[t], xp_t[t], at::mm_out(pre, h, w_t));
    } else {
      at::addmm_out(gates_t[t], xp_t[t], h, w_t);
    }
    const acc_t* c_prev = t ? ptr<acc_t>(cs) + (t - 1) * bs * H : ptr<acc_t>(c_first);
    acc_t* h_out = mixed ? ptr<acc_t>(h_acc) : row0<acc_t>(out, t);
    lstm_step_forward<acc_t>(ptr<acc_t>(gates) + t * bs * 4 * H, c_prev,
                             ptr<acc_t>(cs) + t * bs * H, ptr<acc_t>(tanh_cs) + t * bs * H,
                             h_out, mixed ? H : out.stride(1), bs, H);
    if (mixed) out_t[t].copy_(h_acc);
  }
  return {out, cs, tanh_cs, gates};
}

// The gradients of xp (in xp's dtype and out's order), h0 and c0 (acc_t); dW_hh is one matmul
// left to the caller. d_out (T, bs, H) and w_hh in the forward dtype, d_cn (bs, H).
template <typename acc_t>
std::vector<Tensor> backward_impl(const Tensor& d_out, const Tensor& d_cn, const Tensor& c0,
                                  const Tensor& w_hh, const Tensor& out, const Tensor& cs,
                                  const Tensor& tanh_cs, const Tensor& gates) {
  const int64_t T = gates.size(0), bs = gates.size(1), H = gates.size(2) / 4;
  const auto acc = gates.options();
  const bool mixed = d_out.scalar_type() != acc.dtype().toScalarType();
  Tensor d_xp = empty_ordered(out, 4 * H, d_out.options());
  // A step's gradients are made and multiplied in contiguous buffers, then copied to d_xp:
  // batch-major rows are T*4H apart, a multiple of 4 KiB that maps them all to the same
  // cache sets, and a matmul reading them there ran at half speed.
  Tensor d_step = at::empty({bs, 4 * H}, acc);
  Tensor d_low = mixed ? at::empty({bs, 4 * H}, d_out.options()) : d_step;
  Tensor dc = d_cn.to(acc, false, /*copy=*/true).contiguous();
  Tensor c_first = c0.to(acc).contiguous();
  Tensor dh = at::empty({bs, H}, acc).copy_(d_out[T - 1]);
  Tensor dh_low = mixed ? at::empty({bs, H}, d_out.options()) : Tensor();
  Tensor zeros = at::zeros({bs, H}, d_out.options());
  auto d_xp_t = d_xp.unbind(0), d_out_t = d_out.unbind(0);
  for (int64_t t = T - 1; t >= 0; --t) {
    const acc_t* c_prev = t ? ptr<acc_t>(cs) + (t - 1) * bs * H : ptr<acc_t>(c_first);
    lstm_step_backward<acc_t>(ptr<acc_t>(gates) + t * bs * 4 * H, c_prev,
                              ptr<acc_t>(tanh_cs) + t * bs * H, ptr<acc_t>(dh), ptr<acc_t>(dc),
                              ptr<acc_t>(d_step), 4 * H, bs, H);
    if (mixed) d_low.copy_(d_step);
    d_xp_t[t].copy_(d_low);
    const Tensor& d_next = t ? d_out_t[t - 1] : zeros;   // dh_{t-1} = d_out + d_gates W_hh
    if (mixed) {
      dh.copy_(at::addmm_out(dh_low, d_next, d_low, w_hh));
    } else {
      at::addmm_out(dh, d_next, d_low, w_hh);
    }
  }
  return {d_xp, dh, dc};
}

// The step's matmuls through oneDNN's brgemm micro-kernel (what ATen's flash attention calls)
// rather than ATen's addmm:
// * bf16 on AMX: ATen's bf16 addmm costs ~30 us for a (64, 64) x (64, 256) product whatever
//   the size; brgemm takes ~4 us with the weight packed once per sequence, and it adds
//   bf16 x bf16 into a float32 C, the precision the gates and gradients keep anyway. Used
//   where the CPU can pack for it (AMX) and H is a multiple of 16 (a packed block's width).
// * float32 on AVX512: 1-4% faster than addmm for the whole layer on one thread. With more
//   threads the batch is split between them for the whole sequence (batch_grain), which
//   beats addmm's splitting of each small product (a barrier every step) at hidden 64 but
//   not from 128 on, where addmm's threads run on (2 threads, bs 64, a free CPU: hidden 64
//   1.15x nn.LSTM's time against 1.29x; 128: 1.25x against 1.22x; 256: 1.28x against 1.03x).
// Elsewhere ATen's addmm runs (forward_impl, backward_impl).
bool f32_brgemm = true;   // tests turn it off to run forward_impl<float> on this CPU too

bool use_brgemm(const Tensor& x, int64_t H) {
  if (x.scalar_type() == at::kBFloat16)
    return H % 16 == 0 && at::native::cpublas::could_pack(at::kBFloat16);
#ifdef CPU_CAPABILITY_AVX512
  return x.scalar_type() == at::kFloat && f32_brgemm && (H < 128 || at::get_num_threads() == 1);
#else
  return false;
#endif
}

template <typename low_t> struct StepB;

// B (K, N) bf16 row-major, packed for brgemm in column blocks of nb: C (M, N) += A (M, K) B.
template <> struct StepB<at::BFloat16> {
  Tensor data;
  int64_t K, N, nb;

  explicit StepB(const Tensor& b) : K(b.size(0)), N(b.size(1)) {
    nb = N % 64 == 0 ? 64 : N % 32 == 0 ? 32 : 16;
    data = at::empty({N / nb, K, nb}, b.options());
    for (int64_t n = 0; n < N; n += nb)
      at::native::cpublas::pack(K, nb, N, nb, at::kBFloat16, at::kBFloat16,
                                b.data_ptr<at::BFloat16>() + n, ptr<at::BFloat16>(data) + n * K);
  }

  // A's rows are ld_a apart; C is (M, N) contiguous
  void add_product(const at::BFloat16* a, int64_t ld_a, int64_t M, float* c) const {
    for (int64_t n = 0; n < N; n += nb)
      at::native::cpublas::brgemm(M, nb, K, ld_a, nb, N, /*add_C=*/true, a,
                                  ptr<at::BFloat16>(data) + n * K, c + n, /*is_vnni=*/true);
  }
};

// B (K, N) float32 row-major, used as it is
template <> struct StepB<float> {
  Tensor data;
  int64_t K, N;

  explicit StepB(const Tensor& b) : data(b), K(b.size(0)), N(b.size(1)) {}

  void add_product(const float* a, int64_t ld_a, int64_t M, float* c) const {
    at::native::cpublas::brgemm(M, N, K, ld_a, N, N, /*add_C=*/true, a, ptr<float>(data), c,
                                /*is_vnni=*/false);
  }
};

// The matmuls read contiguous step buffers, copied to or from the (T, bs, n) tensors' rows:
// batch-major rows are T*n apart, a multiple of 4 KiB that maps them all to the same cache
// sets, and brgemm reading them in place ran ~35% slower.
template <typename S, typename D>
void copy_rows(const S* src, int64_t ld_src, D* dst, int64_t ld_dst, int64_t rows, int64_t n) {
  for (int64_t b = 0; b < rows; ++b) {
    if constexpr (std::is_same_v<S, D>) {
      std::memcpy(dst + b * ld_dst, src + b * ld_src, n * sizeof(S));
    } else {
      at::vec::convert(src + b * ld_src, dst + b * ld_dst, n);
    }
  }
}

// Rows per thread for a whole sequence: the batch's rows never meet in an LSTM (row b of h
// depends only on row b of xp, h0 and c0), so each thread runs the whole loop over time on
// its own rows, with no barrier between steps; under 16 rows per thread it is not worth it.
inline int64_t batch_grain(int64_t bs) {
  const int64_t n = at::get_num_threads();
  return std::max<int64_t>(16, (bs + n - 1) / n);
}

// forward_impl with brgemm; low_t is the matmuls' operand type (bf16 or float32), all the
// rest float32.
template <typename low_t>
std::vector<Tensor> forward_brgemm(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                   const Tensor& w_hh) {
  const int64_t T = xp.size(0), bs = xp.size(1), H = h0.size(1);
  const auto f32 = xp.options().dtype(at::kFloat);
  Tensor out = empty_ordered(xp, H, xp.options());
  Tensor cs = at::empty({T, bs, H}, f32), tanh_cs = at::empty({T, bs, H}, f32);
  Tensor gates = at::empty({T, bs, 4 * H}, f32);   // xp in float32, plus the products
  Tensor h_low = h0.clone();                       // h of the last step, contiguous (see above)
  Tensor h_f32 = std::is_same_v<low_t, float> ? h_low : at::empty({bs, H}, f32);
  Tensor c_first = c0.to(f32).contiguous();
  const StepB<low_t> w_t(w_hh.t().contiguous());  // W_hh^T (H, 4H)
  const int64_t ld_x = xp.stride(1), ld_out = out.stride(1);
  at::parallel_for(0, bs, batch_grain(bs), [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    low_t* h = ptr<low_t>(h_low) + b0 * H;
    for (int64_t t = 0; t < T; ++t) {
      float* g = ptr<float>(gates) + (t * bs + b0) * 4 * H;
      copy_rows(row0<low_t>(xp, t) + b0 * ld_x, ld_x, g, 4 * H, m, 4 * H);
      w_t.add_product(h, H, m, g);
      const float* c_prev = t ? ptr<float>(cs) + ((t - 1) * bs + b0) * H : ptr<float>(c_first) + b0 * H;
      lstm_step_forward<float>(g, c_prev, ptr<float>(cs) + (t * bs + b0) * H,
                               ptr<float>(tanh_cs) + (t * bs + b0) * H, ptr<float>(h_f32) + b0 * H,
                               H, m, H);
      if constexpr (!std::is_same_v<low_t, float>)
        at::vec::convert(ptr<float>(h_f32) + b0 * H, h, m * H);
      copy_rows(h, H, row0<low_t>(out, t) + b0 * ld_out, ld_out, m, H);
    }
    at::native::cpublas::brgemm_release(std::is_same_v<low_t, at::BFloat16>);
  });
  return {out, cs, tanh_cs, gates};
}

template <typename low_t>
std::vector<Tensor> backward_brgemm(const Tensor& d_out, const Tensor& d_cn, const Tensor& c0,
                                    const Tensor& w_hh, const Tensor& out, const Tensor& cs,
                                    const Tensor& tanh_cs, const Tensor& gates) {
  const int64_t T = gates.size(0), bs = gates.size(1), H = gates.size(2) / 4;
  Tensor d_step = at::empty({bs, 4 * H}, gates.options());     // one step's, float32 ...
  Tensor d_low = std::is_same_v<low_t, float> ? d_step : at::empty({bs, 4 * H}, d_out.options());
  Tensor d_xp = empty_ordered(out, 4 * H, d_out.options());     // all steps'
  Tensor dc = d_cn.to(at::kFloat, false, /*copy=*/true).contiguous();
  Tensor dh = at::empty({bs, H}, gates.options()).copy_(d_out[T - 1]);
  Tensor c_first = c0.to(at::kFloat).contiguous();
  const StepB<low_t> w(w_hh.contiguous());        // W_hh (4H, H)
  const int64_t ld_d = d_xp.stride(1), ld_o = d_out.stride(1);
  at::parallel_for(0, bs, batch_grain(bs), [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    float *dh_b = ptr<float>(dh) + b0 * H, *step = ptr<float>(d_step) + b0 * 4 * H;
    low_t* low = ptr<low_t>(d_low) + b0 * 4 * H;
    for (int64_t t = T - 1; t >= 0; --t) {
      const float* c_prev = t ? ptr<float>(cs) + ((t - 1) * bs + b0) * H : ptr<float>(c_first) + b0 * H;
      lstm_step_backward<float>(ptr<float>(gates) + (t * bs + b0) * 4 * H, c_prev,
                                ptr<float>(tanh_cs) + (t * bs + b0) * H, dh_b,
                                ptr<float>(dc) + b0 * H, step, 4 * H, m, H);
      if constexpr (!std::is_same_v<low_t, float>) at::vec::convert(step, low, m * 4 * H);
      copy_rows(low, 4 * H, row0<low_t>(d_xp, t) + b0 * ld_d, ld_d, m, 4 * H);
      if (t)  // dh of the step before: its output's gradient plus d_gates W_hh
        copy_rows(row0<low_t>(d_out, t - 1) + b0 * ld_o, ld_o, dh_b, H, m, H);
      else
        std::fill(dh_b, dh_b + m * H, 0.f);
      w.add_product(low, 4 * H, m, dh_b);
    }
    at::native::cpublas::brgemm_release(std::is_same_v<low_t, at::BFloat16>);
  });
  return {d_xp, dh, dc};
}

std::vector<Tensor> lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh) {
  TORCH_CHECK(xp.device().is_cpu(), "the C++ recurrence runs on CPU only");
  TORCH_CHECK(xp.dim() == 3, "xp must be (T, bs, 4H)");
  const Tensor h = h0.contiguous();   // xp may be in either order: it is copied into the gates
  if (use_brgemm(xp, h.size(1))) {  // it reads xp's rows in place: each must be contiguous
    const Tensor x = xp.stride(2) == 1 ? xp : xp.contiguous();
    if (xp.scalar_type() == at::kFloat) return forward_brgemm<float>(x, h, c0, w_hh);
    return forward_brgemm<at::BFloat16>(x, h, c0, w_hh);
  }
  if (xp.scalar_type() == at::kDouble) return forward_impl<double>(xp, h, c0, w_hh);
  return forward_impl<float>(xp, h, c0, w_hh);
}

std::vector<Tensor> lstm_backward(const Tensor& d_out, const Tensor& d_cn, const Tensor& c0,
                                  const Tensor& w_hh, const Tensor& out, const Tensor& cs,
                                  const Tensor& tanh_cs, const Tensor& gates) {
  // autograd may hand any layout; the loops need each row contiguous
  const Tensor d = d_out.stride(2) == 1 && d_out.stride(0) > 0 && d_out.stride(1) > 0
                       ? d_out : d_out.contiguous();
  if (use_brgemm(d, cs.size(2))) {
    if (d.scalar_type() == at::kFloat)
      return backward_brgemm<float>(d, d_cn, c0, w_hh, out, cs, tanh_cs, gates);
    return backward_brgemm<at::BFloat16>(d, d_cn, c0, w_hh, out, cs, tanh_cs, gates);
  }
  if (gates.scalar_type() == at::kDouble)
    return backward_impl<double>(d, d_cn, c0, w_hh, out, cs, tanh_cs, gates);
  return backward_impl<float>(d, d_cn, c0, w_hh, out, cs, tanh_cs, gates);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_forward", &lstm_forward, "LSTM over time: out, cs, tanh_cs, activated gates");
  m.def("lstm_backward", &lstm_backward, "LSTM backward over time: d_xp, d_h0, d_c0");
  m.def("set_f32_brgemm", [](bool on) { f32_brgemm = on; }, "float32 steps through brgemm (default) or ATen's addmm");
}
