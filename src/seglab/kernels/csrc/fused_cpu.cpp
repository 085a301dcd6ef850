// seglab fused segmentation-loss kernels for the CPU.
//
// Plain C ABI (loaded with ctypes, no pybind11 / torch headers: builds in ~1-2 s with gcc).
// Two kernels, each with a forward (activation once + per-(n,c) statistics + pixel-loss sums in one
// sweep over the logits) and a backward (activation recomputed, gradient written in one sweep):
//   mc_*  : multiclass softmax over C with an integer index target (N, S)   (no one-hot ever exists)
//   ml_*  : multilabel / binary sigmoid per channel with a float target (N, C, S)
// Vectorisation: the spatial axis is the SIMD axis (blocks of B lanes); exp/log are Cephes-style
// polynomials written so that gcc auto-vectorises them (-O3 -march=native -fopenmp-simd), float64
// uses libm. Per-lane accumulators in the compute type inside a chunk, chunk partials in double,
// chunks reduced in a fixed order: the result does not depend on the number of threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

template <class To, class From>
inline To bitcast(From f) {
  To t;
  std::memcpy(&t, &f, sizeof(t));
  return t;
}

// ---- math: float fast paths (vectorisable), double via libm ----
// The Cephes polynomial cores, written once for scalar float and for the 8-lane vectors of the SIMD path below
// (GCC vector extensions broadcast the float constants). exp_core(r) = e^r for |r| <= ln(2)/2; log_core(f, e)
// = log((1 + f) * 2^e) for 1 + f in [sqrt(1/2), sqrt(2)).
template <class V>
inline V exp_core(V r) {
  V z = r * r;
  V y = V{} + 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  return y * z + r + 1.0f;
}
template <class V>
inline V log_core(V f, V ef) {
  V z = f * f;
  V y = V{} + 7.0376836292E-2f;
  y = y * f - 1.1514610310E-1f;
  y = y * f + 1.1676998740E-1f;
  y = y * f - 1.2420140846E-1f;
  y = y * f + 1.4249322787E-1f;
  y = y * f - 1.6668057665E-1f;
  y = y * f + 2.0000714765E-1f;
  y = y * f - 2.4999993993E-1f;
  y = y * f + 3.3333331174E-1f;
  y = y * f * z;
  y += -2.12194440e-4f * ef;
  y += -0.5f * z;
  V r = f + y;
  return r + 0.693359375f * ef;
}
inline float fexp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  float kf = x * 1.44269504088896341f + 12582912.0f;
  int32_t k = bitcast<int32_t>(kf) - 0x4B400000;
  kf -= 12582912.0f;
  float r = x - kf * 0.693359375f;
  r = r + kf * 2.12194440e-4f;
  return exp_core(r) * bitcast<float>((k + 127) << 23);
}
inline float flog(float x) {  // x > 0, normal; NaN gives NaN (the bit tricks alone would give a finite value)
  int32_t ix = bitcast<int32_t>(x);
  int32_t e = (ix >> 23) - 127;
  float m = bitcast<float>((ix & 0x007fffff) | 0x3f800000);
  bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float r = log_core(m - 1.0f, (float)e);
  return x == x ? r : x;
}
inline float mexp(float x) { return fexp(x); }
inline float mlog(float x) { return flog(x); }
inline double mexp(double x) { return std::exp(x); }
inline double mlog(double x) { return std::log(x); }

// focal modulation q^gamma (q = 1 - p_t >= 0; 0^0 = 1): exact products for gamma = 1, 2, else exp(g log q)
template <class F>
inline F focal_pow(F q, F gamma) {
  if (gamma == F(0)) return F(1);
  if (gamma == F(1)) return q;
  if (gamma == F(2)) return q * q;
  const F tiny = std::numeric_limits<F>::min();  // (flog wants normal numbers; below, q^g is ~0 anyway)
  return q > F(0) ? mexp(gamma * mlog(q > tiny ? q : tiny)) : F(0);
}

// Softmax focal term of B pixels from the max-shifted logits, in log space (no 1 - exp(...) cancellation):
// xm = x_t - max, so = sum_{c != t} exp(x_c - max), se = exp(xm) + so (inv = 1 / se), logse = log(se).
// log p_t = xm - logse, except when t is a max (xm = 0, se = 1 + so): then log p_t = -log1p(so), computed as
// -(log(se) - d / se) with d = (se - 1) - so the rounding of se (exact to O(d^2), no log1p call); q = so / se.
// The gamma cases are dispatched outside the loops (inside, gcc would evaluate exp/log for every lane).
template <class F, int B>
inline void softmax_focal(const F* xt, const F* m, const F* so, const F* se, const F* inv, const F* logse, F gamma,
                          F* logpt, F* q, F* pw) {
#pragma omp simd
  for (int i = 0; i < B; ++i) {
    F xm = xt[i] - m[i];
    logpt[i] = xm == F(0) ? ((se[i] - F(1)) - so[i]) * inv[i] - logse[i] : xm - logse[i];
    q[i] = so[i] * inv[i];
  }
  if (gamma == F(0)) {
    for (int i = 0; i < B; ++i) pw[i] = F(1);
  } else if (gamma == F(1)) {
    for (int i = 0; i < B; ++i) pw[i] = q[i];
  } else if (gamma == F(2)) {
#pragma omp simd
    for (int i = 0; i < B; ++i) pw[i] = q[i] * q[i];
  } else {
    const F tiny = std::numeric_limits<F>::min();  // (flog wants normal numbers; below, q^g is ~0 anyway)
#pragma omp simd
    for (int i = 0; i < B; ++i) pw[i] = q[i] > F(0) ? mexp(gamma * mlog(q[i] > tiny ? q[i] : tiny)) : F(0);
  }
}

template <class T> struct Compute { using F = T; static constexpr int B = 16; };
template <> struct Compute<double> { using F = double; static constexpr int B = 8; };

// run fn(item) for item in [0, n_items) on nthreads threads (dynamic scheduling, deterministic output)
template <class Fn>
void parallel_items(int64_t n_items, int nthreads, Fn fn) {
  nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, n_items));
  if (nthreads == 1) {
    for (int64_t i = 0; i < n_items; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next(0);
  auto worker = [&]() {
    for (;;) {
      int64_t i = next.fetch_add(1);
      if (i >= n_items) break;
      fn(i);
    }
  };
  std::vector<std::thread> th;
  for (int k = 1; k < nthreads; ++k) th.emplace_back(worker);
  worker();
  for (auto& t : th) t.join();
}

constexpr int64_t CHUNK = 4096;  // pixels per work item

// ===================== multiclass softmax, index target =====================
struct McCfg {
  int64_t N, C, S, ignore;
  int squared, want_ce, want_smooth, want_focal, nthreads;
  double gamma;
};

// forward. stats: [N, 3, C] (tp, ps, ys); scal: [4] (ce_sum, w_sum, smooth_sum, focal_sum)
// FO: focal term wanted. A compile-time flag: with the focal code in the same loop nest, gcc compiles the
// CE/Dice-only path noticeably slower (measured ~1.4x on the backward), so each case gets its own instantiation.
template <class T, bool FO>
void mc_fwd_impl(const T* x, const int64_t* t, const McCfg& cfg, const double* w_d, const double* a_d,
                 double* stats, double* scal, int64_t* nbad) {
  using F = typename Compute<T>::F;
  constexpr int B = Compute<T>::B;
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * nch;
  const int64_t PW = 3 * C + 4;
  std::vector<double> part(items * PW, 0.0);
  std::vector<int64_t> bad_part(items, 0);
  std::vector<F> w(C), a(C);
  F wall = 0;
  for (int64_t c = 0; c < C; ++c) { w[c] = (F)w_d[c]; a[c] = (F)a_d[c]; wall += w[c]; }
  const F gamma = (F)cfg.gamma;
  const bool sq = cfg.squared, want_sm = cfg.want_smooth;
  constexpr bool want_fo = FO;

  parallel_items(items, cfg.nthreads, [&](int64_t item) {
    const int64_t n = item / nch, ch = item % nch;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const T* xn = x + n * C * S;
    const int64_t* tn = t + n * S;
    std::vector<F> buf(C * B), atp(C * B, 0), aps(C * B, 0), ays(C * B, 0);
    alignas(64) F ace[B] = {}, aw[B] = {}, asm_[B] = {}, afo[B] = {};
    int64_t nb = 0;
    for (int64_t s = s0; s < s1; s += B) {
      const int L = (int)std::min<int64_t>(B, s1 - s);
      alignas(64) int32_t ti[B];
      alignas(64) F vm[B], m[B], se[B], so[B], inv[B], logse[B], xt[B], wt[B], at[B], wx[B], pt[B];
      for (int i = 0; i < B; ++i) {
        int64_t tt = i < L ? tn[s + i] : cfg.ignore;
        bool valid = tt != cfg.ignore;
        bool in_range = tt >= 0 && tt < C;
        nb += valid && !in_range;  // out-of-range label: counted (the caller raises), never used
        valid = valid && in_range;
        ti[i] = valid ? (int32_t)tt : -1;
        vm[i] = valid ? F(1) : F(0);
        xt[i] = 0; wt[i] = 0; at[i] = 0; wx[i] = 0; pt[i] = 0; se[i] = 0; so[i] = 0;
      }
      if (L == B) {
        for (int64_t c = 0; c < C; ++c) {
          const T* xr = xn + c * S + s;
          F* b = buf.data() + c * B;
#pragma omp simd
          for (int i = 0; i < B; ++i) b[i] = (F)xr[i];
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const T* xr = xn + c * S + s;
          F* b = buf.data() + c * B;
          for (int i = 0; i < B; ++i) b[i] = i < L ? (F)xr[i] : F(0);
        }
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) m[i] = buf[i];
      for (int64_t c = 0; c < C; ++c) {
        const F* b = buf.data() + c * B;
        const F wc = w[c], ac = a[c];
        const int32_t cc = (int32_t)c;
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          m[i] = b[i] > m[i] ? b[i] : m[i];
          bool y = ti[i] == cc;
          xt[i] += y ? b[i] : F(0);
          wt[i] += y ? wc : F(0);
          at[i] += y ? ac : F(0);
        }
      }
      // logs are taken of max-shifted sums only, so nothing cancels at huge logits: log p_t = (x_t - m) - log se
      // (never x_t - (m + log se)), the smoothing term uses sum_c w_c (m - x_c), focal the sum over the
      // non-target classes (1 - p_t without cancellation)
      if (want_sm) {
        for (int64_t c = 0; c < C; ++c) {
          const F* b = buf.data() + c * B;
          const F wc = w[c];
#pragma omp simd
          for (int i = 0; i < B; ++i) wx[i] += wc * (m[i] - b[i]);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        F* b = buf.data() + c * B;
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          F e = mexp(b[i] - m[i]);
          b[i] = e;
          se[i] += e;
        }
      }
      if (want_fo) {  // a separate pass: inside the exp loop it slows that loop down
        for (int64_t c = 0; c < C; ++c) {
          const F* b = buf.data() + c * B;
          const int32_t cc = (int32_t)c;
#pragma omp simd
          for (int i = 0; i < B; ++i) so[i] += ti[i] == cc ? F(0) : b[i];
        }
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) { inv[i] = F(1) / se[i]; logse[i] = mlog(se[i]); }
      for (int64_t c = 0; c < C; ++c) {
        const F* b = buf.data() + c * B;
        F* tp = atp.data() + c * B;
        F* ps = aps.data() + c * B;
        F* ys = ays.data() + c * B;
        const int32_t cc = (int32_t)c;
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          F p = b[i] * inv[i];
          bool y = ti[i] == cc;
          tp[i] += y ? p : F(0);
          pt[i] += y ? p : F(0);
          ps[i] += vm[i] * (sq ? p * p : p);
          ys[i] += y ? F(1) : F(0);
        }
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) {
        F nll = (m[i] - xt[i]) + logse[i];
        ace[i] += vm[i] * wt[i] * nll;
        aw[i] += vm[i] * wt[i];
      }
      if (want_sm) {
#pragma omp simd
        for (int i = 0; i < B; ++i) asm_[i] += vm[i] * (logse[i] * wall + wx[i]);
      }
      if (want_fo) {
        alignas(64) F logpt[B], q[B], pw[B];
        softmax_focal<F, B>(xt, m, so, se, inv, logse, gamma, logpt, q, pw);
#pragma omp simd
        for (int i = 0; i < B; ++i) afo[i] -= vm[i] > F(0) ? at[i] * pw[i] * logpt[i] : F(0);
      }
    }
    bad_part[item] = nb;
    double* pp = part.data() + item * PW;
    for (int64_t c = 0; c < C; ++c) {
      double tp = 0, ps = 0, ys = 0;
      for (int i = 0; i < B; ++i) { tp += atp[c * B + i]; ps += aps[c * B + i]; ys += ays[c * B + i]; }
      pp[c] = tp; pp[C + c] = ps; pp[2 * C + c] = ys;
    }
    double s_ce = 0, s_w = 0, s_sm = 0, s_fo = 0;
    for (int i = 0; i < B; ++i) { s_ce += ace[i]; s_w += aw[i]; s_sm += asm_[i]; s_fo += afo[i]; }
    pp[3 * C] = s_ce; pp[3 * C + 1] = s_w; pp[3 * C + 2] = s_sm; pp[3 * C + 3] = s_fo;
  });
  std::fill(stats, stats + N * 3 * C, 0.0);
  std::fill(scal, scal + 4, 0.0);
  for (int64_t item = 0; item < items; ++item) {
    const int64_t n = item / nch;
    const double* pp = part.data() + item * PW;
    for (int64_t k = 0; k < 3 * C; ++k) stats[n * 3 * C + k] += pp[k];
    for (int k = 0; k < 4; ++k) scal[k] += pp[3 * C + k];
  }
  int64_t nb = 0;
  for (int64_t item = 0; item < items; ++item) nb += bad_part[item];
  *nbad = nb;
}

// ===================== multiclass softmax, index target: explicit SIMD float32 path =====================
// gcc did not auto-vectorise the generic loops above for float (checked with -fopt-info-vec: the max/select,
// exp and statistics loops were all "not vectorized: control flow in loop"; ~6 ns per element on AVX2).
// This path uses GCC/Clang vector extensions (8 float lanes = one ymm register on AVX2; the compiler lowers
// them for any target), one vector of 8 pixels per class, so every loop below is SIMD by construction.
// Same exp/log polynomial cores as fexp/flog (exp_core, log_core). Used for float32 without the focal term (focal and float64 keep the
// generic code above). Partial sums per lane in float32 inside a 4096-pixel chunk, chunks reduced in double
// in a fixed order as above (results do not depend on the thread count).
typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
constexpr int VL = 8;

inline vf vsplat(float a) { return vf{a, a, a, a, a, a, a, a}; }
inline vi visplat(int32_t a) { return vi{a, a, a, a, a, a, a, a}; }
inline vf vload(const float* p) { vf v; std::memcpy(&v, p, sizeof(v)); return v; }
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }
inline vf vsel(vi mask, vf a, vf b) { return mask ? a : b; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }

inline vf vexp(vf x) {
  x = vsel(x < vsplat(-87.3f), vsplat(-87.3f), x);
  x = vsel(x > vsplat(88.3f), vsplat(88.3f), x);
  vf kf = x * 1.44269504088896341f + 12582912.0f;
  vi k = (vi)kf - 0x4B400000;
  kf -= 12582912.0f;
  vf r = x - kf * 0.693359375f;
  r = r + kf * 2.12194440e-4f;
  return exp_core(r) * (vf)((k + 127) << 23);
}

inline vf vlog(vf x) {  // x > 0, normal; NaN lanes give NaN (a NaN logit must reach the loss: issue 24)
  vi ix = (vi)x;
  vi e = (ix >> 23) - 127;
  vf m = (vf)((ix & 0x007fffff) | 0x3f800000);
  vi big = m > vsplat(1.41421356f);
  m = vsel(big, 0.5f * m, m);
  e = big ? e + 1 : e;
  return vsel(x == x, log_core(m - 1.0f, __builtin_convertvector(e, vf)), x);
}

inline void hsum_d(vf v, double& acc) {  // adds the 8 lanes to acc in lane order
  for (int i = 0; i < VL; ++i) acc += (double)v[i];
}

// labels of 8 pixels -> class index per lane (-1: ignored, padding or out of range); out-of-range labels that are
// not ignore_index are counted per lane in `bad` (the caller raises). Two 4 x int64 vectors, narrowed to 8 x int32.
typedef int64_t vl __attribute__((vector_size(32)));
inline vl vlsplat(int64_t a) { return vl{a, a, a, a}; }

inline vi load_labels(const int64_t* tn, int64_t s, int L, int64_t ignore, int64_t C, vl& bad) {
  alignas(32) int64_t tmp[VL];
  const int64_t* src = tn + s;
  if (L < VL) {
    for (int i = 0; i < VL; ++i) tmp[i] = i < L ? src[i] : ignore;
    src = tmp;
  }
  vl a, b;
  std::memcpy(&a, src, sizeof(a));
  std::memcpy(&b, src + 4, sizeof(b));
  const vl ig = vlsplat(ignore), cc = vlsplat(C), z = vlsplat(0), m1 = vlsplat(-1);
  const vl va = a != ig, vb = b != ig;
  const vl ra = (a >= z) & (a < cc), rb = (b >= z) & (b < cc);
  bad -= (va & ~ra) + (vb & ~rb);  // masks are -1 where true
  a = (va & ra) ? a : m1;
  b = (vb & rb) ? b : m1;
  return __builtin_shufflevector((vi)a, (vi)b, 0, 2, 4, 6, 8, 10, 12, 14);  // low 32 bits of each label
}

inline int64_t lanes_sum(vl v) { return v[0] + v[1] + v[2] + v[3]; }

inline vf load_x(const float* xr, int L) {
  if (L == VL) return vload(xr);
  alignas(32) float tmp[VL] = {};
  for (int i = 0; i < L; ++i) tmp[i] = xr[i];
  return vload(tmp);
}


// run fn(item, worker) for item in [0, n_items) on nthreads workers (worker in [0, nthreads): per-worker scratch)
template <class Fn>
void parallel_items_w(int64_t n_items, int nthreads, Fn fn) {
  if (nthreads <= 1) {
    for (int64_t i = 0; i < n_items; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next(0);
  auto worker = [&](int wk) {
    for (;;) {
      int64_t i = next.fetch_add(1);
      if (i >= n_items) break;
      fn(i, wk);
    }
  };
  std::vector<std::thread> th;
  for (int k = 1; k < nthreads; ++k) th.emplace_back(worker, k);
  worker(0);
  for (auto& t : th) t.join();
}

// one block of 8 pixels: buf[c] = exp(x_c - m) afterwards; m = max_c x_c, xt = x_t, wt = w_t (0 where not a
// valid label), se = sum_c exp(x_c - m); wx = sum_c w_c (m - x_c) when asked (label smoothing)
struct Block {
  vi ti;
  vf vm, m, wt, xt, se, wx;
};

inline void block_softmax(const float* xn, int64_t S, int64_t s, int L, int64_t C, const float* w, bool want_wx,
                          vf* buf, Block& b) {
  const vf zero = vsplat(0.f);
  vf m = load_x(xn + s, L);
  vf wt = zero, xt = zero;
  for (int64_t c = 0; c < C; ++c) {
    vf xc = load_x(xn + c * S + s, L);
    buf[c] = xc;
    m = vmax(m, xc);
    vi y = b.ti == visplat((int32_t)c);
    wt += vsel(y, vsplat(w[c]), zero);
    xt += vsel(y, xc, zero);
  }
  vf wx = zero;
  if (want_wx)
    for (int64_t c = 0; c < C; ++c) wx += w[c] * (m - buf[c]);
  vf se = zero;
  for (int64_t c = 0; c < C; ++c) {
    vf e = vexp(buf[c] - m);
    buf[c] = e;
    se += e;
  }
  b.m = m; b.wt = wt; b.xt = xt; b.se = se; b.wx = wx;
}

void mc_fwd_vec(const float* x, const int64_t* t, const McCfg& cfg, const double* w_d, double* stats,
                double* scal, int64_t* nbad) {
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * nch;
  const int64_t PW = 3 * C + 4;
  std::vector<double> part(items * PW, 0.0);
  std::vector<int64_t> bad_part(items, 0);
  std::vector<float> w(C);
  float wall = 0;
  for (int64_t c = 0; c < C; ++c) { w[c] = (float)w_d[c]; wall += w[c]; }
  const bool sq = cfg.squared, want_sm = cfg.want_smooth;
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(cfg.nthreads, items));
  std::vector<vf> scratch((size_t)nt * 4 * C);  // per worker: exps, tp, ps, ys accumulators (allocated once)
  parallel_items_w(items, nt, [&](int64_t item, int wk) {
    const int64_t n = item / nch, ch = item % nch;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const float* xn = x + n * C * S;
    const int64_t* tn = t + n * S;
    vf* buf = scratch.data() + (size_t)wk * 4 * C;
    vf* atp = buf + C;
    vf* aps = buf + 2 * C;
    vf* ays = buf + 3 * C;
    const vf zero = vsplat(0.f), one = vsplat(1.f);
    for (int64_t k = C; k < 4 * C; ++k) buf[k] = zero;
    vf ace = zero, aw = zero, asm_ = zero;
    vl nb = vlsplat(0);
    for (int64_t s = s0; s < s1; s += VL) {
      const int L = (int)std::min<int64_t>(VL, s1 - s);
      Block b;
      b.ti = load_labels(tn, s, L, cfg.ignore, C, nb);
      b.vm = vsel(b.ti >= visplat(0), one, zero);
      block_softmax(xn, S, s, L, C, w.data(), want_sm, buf, b);
      const vf inv = 1.0f / b.se, logse = vlog(b.se);
      for (int64_t c = 0; c < C; ++c) {
        vf p = buf[c] * inv;
        vi y = b.ti == visplat((int32_t)c);
        atp[c] += vsel(y, p, zero);
        aps[c] += b.vm * (sq ? p * p : p);
        ays[c] += vsel(y, one, zero);
      }
      // log p_t = (x_t - m) - log se: logs of max-shifted sums only (no cancellation at huge logits)
      vf wv = b.vm * b.wt;
      ace += wv * ((b.m - b.xt) + logse);
      aw += wv;
      if (want_sm) asm_ += b.vm * (logse * wall + b.wx);
    }
    bad_part[item] = lanes_sum(nb);
    double* pp = part.data() + item * PW;
    for (int64_t c = 0; c < C; ++c) {
      double tp = 0, ps = 0, ys = 0;
      hsum_d(atp[c], tp); hsum_d(aps[c], ps); hsum_d(ays[c], ys);
      pp[c] = tp; pp[C + c] = ps; pp[2 * C + c] = ys;
    }
    double s_ce = 0, s_w = 0, s_sm = 0;
    hsum_d(ace, s_ce); hsum_d(aw, s_w); hsum_d(asm_, s_sm);
    pp[3 * C] = s_ce; pp[3 * C + 1] = s_w; pp[3 * C + 2] = s_sm; pp[3 * C + 3] = 0;
  });
  std::fill(stats, stats + N * 3 * C, 0.0);
  std::fill(scal, scal + 4, 0.0);
  for (int64_t item = 0; item < items; ++item) {
    const int64_t n = item / nch;
    const double* pp = part.data() + item * PW;
    for (int64_t k = 0; k < 3 * C; ++k) stats[n * 3 * C + k] += pp[k];
    for (int k = 0; k < 4; ++k) scal[k] += pp[3 * C + k];
  }
  int64_t nb = 0;
  for (int64_t item = 0; item < items; ++item) nb += bad_part[item];
  *nbad = nb;
}

// backward without the focal term: d/dx_c = p_c (dp_c - sum_k p_k dp_k) + g_ce w_t (p_c - y_c)
//                                          + g_sm (wall p_c - w_c)     (dp_c = d loss / d p_c from tp, ps)
void mc_bwd_vec(const float* x, const int64_t* t, const McCfg& cfg, const double* w_d, const double* gtp_d,
                const double* gps_d, const double* g, float* gx, int64_t* nbad) {
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * nch;
  std::vector<float> w(C), gtp(N * C), gps(N * C);
  float wall = 0;
  for (int64_t c = 0; c < C; ++c) { w[c] = (float)w_d[c]; wall += w[c]; }
  const bool sq = cfg.squared;
  for (int64_t k = 0; k < N * C; ++k) { gtp[k] = (float)gtp_d[k]; gps[k] = (float)(sq ? 2 * gps_d[k] : gps_d[k]); }
  const float g_ce = (float)g[0], g_sm = cfg.want_smooth ? (float)g[2] : 0.f;
  const bool want_sm = g_sm != 0.f;
  std::vector<int64_t> bad_part(items, 0);
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(cfg.nthreads, items));
  std::vector<vf> scratch((size_t)nt * 2 * C);  // per worker: probabilities, dp (allocated once)
  parallel_items_w(items, nt, [&](int64_t item, int wk) {
    const int64_t n = item / nch, ch = item % nch;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const float* xn = x + n * C * S;
    float* gn = gx + n * C * S;
    const int64_t* tn = t + n * S;
    const float* gtpn = gtp.data() + n * C;
    const float* gpsn = gps.data() + n * C;
    vf* buf = scratch.data() + (size_t)wk * 2 * C;
    vf* dpb = buf + C;
    const vf zero = vsplat(0.f), one = vsplat(1.f);
    vl nb = vlsplat(0);
    for (int64_t s = s0; s < s1; s += VL) {
      const int L = (int)std::min<int64_t>(VL, s1 - s);
      Block b;
      b.ti = load_labels(tn, s, L, cfg.ignore, C, nb);
      b.vm = vsel(b.ti >= visplat(0), one, zero);
      block_softmax(xn, S, s, L, C, w.data(), false, buf, b);
      const vf inv = 1.0f / b.se;
      vf dot = zero;
      for (int64_t c = 0; c < C; ++c) {
        vf p = buf[c] * inv;
        buf[c] = p;
        vi y = b.ti == visplat((int32_t)c);
        vf dp = b.vm * (vsel(y, vsplat(gtpn[c]), zero) + gpsn[c] * (sq ? p : one));
        dpb[c] = dp;
        dot += p * dp;
      }
      const vf cce = g_ce * b.vm * b.wt, csm = g_sm * b.vm;
      for (int64_t c = 0; c < C; ++c) {
        vf p = buf[c];
        vf y = vsel(b.ti == visplat((int32_t)c), one, zero);
        vf out = p * (dpb[c] - dot) + cce * (p - y);
        if (want_sm) out += csm * (wall * p - w[c]);
        float* gr = gn + c * S + s;
        if (L == VL) {
          vstore(gr, out);
        } else {
          for (int i = 0; i < L; ++i) gr[i] = out[i];
        }
      }
    }
    bad_part[item] = lanes_sum(nb);
  });
  int64_t nb = 0;
  for (int64_t item = 0; item < items; ++item) nb += bad_part[item];
  *nbad = nb;
}

template <class T>
void mc_fwd(const T* x, const int64_t* t, const McCfg& cfg, const double* w_d, const double* a_d,
            double* stats, double* scal, int64_t* nbad) {
  if constexpr (std::is_same<T, float>::value) {
    if (!cfg.want_focal) return mc_fwd_vec(x, t, cfg, w_d, stats, scal, nbad);
  }
  if (cfg.want_focal) mc_fwd_impl<T, true>(x, t, cfg, w_d, a_d, stats, scal, nbad);
  else mc_fwd_impl<T, false>(x, t, cfg, w_d, a_d, stats, scal, nbad);
}

// backward. gtp, gps: [N, C] incoming gradients of tp and ps; g: [4] grads of (ce_sum, -, smooth_sum, focal_sum)
template <class T, bool FO>
void mc_bwd_impl(const T* x, const int64_t* t, const McCfg& cfg, const double* w_d, const double* a_d,
                 const double* gtp_d, const double* gps_d, const double* g, T* gx, int64_t* nbad) {
  using F = typename Compute<T>::F;
  constexpr int B = Compute<T>::B;
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * nch;
  std::vector<F> w(C), a(C), gtp(N * C), gps(N * C);
  F wall = 0;
  for (int64_t c = 0; c < C; ++c) { w[c] = (F)w_d[c]; a[c] = (F)a_d[c]; wall += w[c]; }
  const bool sq = cfg.squared;
  for (int64_t k = 0; k < N * C; ++k) { gtp[k] = (F)gtp_d[k]; gps[k] = (F)(sq ? 2 * gps_d[k] : gps_d[k]); }
  const F g_ce = (F)g[0], g_sm = cfg.want_smooth ? (F)g[2] : F(0), g_fo = cfg.want_focal ? (F)g[3] : F(0);
  const F gamma = (F)cfg.gamma;
  constexpr bool want_fo = FO;
  std::vector<int64_t> bad_part(items, 0);

  parallel_items(items, cfg.nthreads, [&](int64_t item) {
    const int64_t n = item / nch, ch = item % nch;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const T* xn = x + n * C * S;
    T* gn = gx + n * C * S;
    const int64_t* tn = t + n * S;
    const F* gtpn = gtp.data() + n * C;
    const F* gpsn = gps.data() + n * C;
    std::vector<F> buf(C * B), dpb(C * B);
    int64_t nb = 0;
    for (int64_t s = s0; s < s1; s += B) {
      const int L = (int)std::min<int64_t>(B, s1 - s);
      alignas(64) int32_t ti[B];
      alignas(64) F vm[B], m[B], se[B], so[B], inv[B], logse[B], xt[B], wt[B], at[B], pt[B], dot[B], cf[B], cce[B], csm[B];
      for (int i = 0; i < B; ++i) {
        int64_t tt = i < L ? tn[s + i] : cfg.ignore;
        bool valid = tt != cfg.ignore;
        bool in_range = tt >= 0 && tt < C;
        nb += valid && !in_range;  // out-of-range label: counted (the caller raises), never used
        valid = valid && in_range;
        ti[i] = valid ? (int32_t)tt : -1;
        vm[i] = valid ? F(1) : F(0);
        xt[i] = 0; wt[i] = 0; at[i] = 0; pt[i] = 0; se[i] = 0; so[i] = 0; dot[i] = 0;
      }
      if (L == B) {
        for (int64_t c = 0; c < C; ++c) {
          const T* xr = xn + c * S + s;
          F* b = buf.data() + c * B;
#pragma omp simd
          for (int i = 0; i < B; ++i) b[i] = (F)xr[i];
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const T* xr = xn + c * S + s;
          F* b = buf.data() + c * B;
          for (int i = 0; i < B; ++i) b[i] = i < L ? (F)xr[i] : F(0);
        }
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) m[i] = buf[i];
      for (int64_t c = 0; c < C; ++c) {
        const F* b = buf.data() + c * B;
        const F wc = w[c], ac = a[c];
        const int32_t cc = (int32_t)c;
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          m[i] = b[i] > m[i] ? b[i] : m[i];
          bool y = ti[i] == cc;
          xt[i] += y ? b[i] : F(0);
          wt[i] += y ? wc : F(0);
          at[i] += y ? ac : F(0);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        F* b = buf.data() + c * B;
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          F e = mexp(b[i] - m[i]);
          b[i] = e;
          se[i] += e;
        }
      }
      if (want_fo) {  // a separate pass: inside the exp loop it slows that loop down
        for (int64_t c = 0; c < C; ++c) {
          const F* b = buf.data() + c * B;
          const int32_t cc = (int32_t)c;
#pragma omp simd
          for (int i = 0; i < B; ++i) so[i] += ti[i] == cc ? F(0) : b[i];
        }
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) { inv[i] = F(1) / se[i]; }
      if (want_fo) {
#pragma omp simd
        for (int i = 0; i < B; ++i) logse[i] = mlog(se[i]);
      }
      for (int64_t c = 0; c < C; ++c) {
        F* b = buf.data() + c * B;
        F* d = dpb.data() + c * B;
        const F gt = gtpn[c], gp = gpsn[c];
        const int32_t cc = (int32_t)c;
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          F p = b[i] * inv[i];
          b[i] = p;
          bool y = ti[i] == cc;
          F dp = vm[i] * ((y ? gt : F(0)) + gp * (sq ? p : F(1)));
          d[i] = dp;
          dot[i] += p * dp;
          pt[i] += y ? p : F(0);
        }
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) { cce[i] = g_ce * vm[i] * wt[i]; csm[i] = g_sm * vm[i]; cf[i] = 0; }
      if (want_fo) {
        // h = -(1 - p)^g log p; p dh/dp = q^g (g p log(p) / q - 1), with log(p) / q -> -1 as q -> 0
        // (q^(g-1) is never formed: it is infinite at q = 0 for g < 1)
        alignas(64) F logpt[B], q[B], pw[B];
        softmax_focal<F, B>(xt, m, so, se, inv, logse, gamma, logpt, q, pw);
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          F r = q[i] > F(0) ? logpt[i] / q[i] : F(-1);
          F A = pw[i] * (gamma * pt[i] * r - F(1));
          cf[i] = vm[i] > F(0) ? g_fo * at[i] * A : F(0);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        const F* b = buf.data() + c * B;
        const F* d = dpb.data() + c * B;
        const F wc = w[c];
        const int32_t cc = (int32_t)c;
        alignas(64) F out[B];
#pragma omp simd
        for (int i = 0; i < B; ++i) {
          F p = b[i];
          F y = ti[i] == cc ? F(1) : F(0);
          out[i] = p * (d[i] - dot[i]) + cce[i] * (p - y) + csm[i] * (wall * p - wc) + cf[i] * (y - p);
        }
        T* gr = gn + c * S + s;
        if (L == B) {
#pragma omp simd
          for (int i = 0; i < B; ++i) gr[i] = (T)out[i];
        } else {
          for (int i = 0; i < L; ++i) gr[i] = (T)out[i];
        }
      }
    }
    bad_part[item] = nb;
  });
  int64_t nb = 0;
  for (int64_t item = 0; item < items; ++item) nb += bad_part[item];
  *nbad = nb;
}

template <class T>
void mc_bwd(const T* x, const int64_t* t, const McCfg& cfg, const double* w_d, const double* a_d,
            const double* gtp_d, const double* gps_d, const double* g, T* gx, int64_t* nbad) {
  if constexpr (std::is_same<T, float>::value) {
    if (!(cfg.want_focal && g[3] != 0.0)) return mc_bwd_vec(x, t, cfg, w_d, gtp_d, gps_d, g, gx, nbad);
  }
  if (cfg.want_focal && g[3] != 0.0) mc_bwd_impl<T, true>(x, t, cfg, w_d, a_d, gtp_d, gps_d, g, gx, nbad);
  else mc_bwd_impl<T, false>(x, t, cfg, w_d, a_d, gtp_d, gps_d, g, gx, nbad);
}

// ===================== multilabel / binary sigmoid, float target =====================
struct MlCfg {
  int64_t N, C, S;
  int has_ignore;
  double ignore;
  int squared, want_absdiff, want_bce, want_focal, nthreads;
  double gamma;
};

// softplus pieces: e = exp(-|x|), p = sigmoid(x), 1 - p = sigmoid(-x) (no cancellation), l1 = log1p(e)
// computed as log(w) - d / w with w = 1 + e and d = (w - 1) - e its rounding (exact to O(d^2); keeps e when
// 1 + e rounds to 1, which log(1 + e) loses: the focal term of confident elements needs it)
template <class F>
inline void sig_parts(F x, F& p, F& omp, F& spn, F& spp) {
  F ax = x < F(0) ? -x : x;
  F e = mexp(-ax);
  F w = F(1) + e;
  F r = F(1) / w;
  p = x >= F(0) ? r : e * r;
  omp = x >= F(0) ? e * r : r;
  F l1 = mlog(w) - ((w - F(1)) - e) * r;
  spn = l1 + (x < F(0) ? -x : F(0));  // softplus(-x) = -log sigmoid(x)
  spp = l1 + (x > F(0) ? x : F(0));   // softplus(x)  = -log(1 - sigmoid(x))
}

// sigmoid focal term of one element, h = ce * q^g with q = 1 - p_t = y (1 - p) + (1 - y) p, in log space:
// pw = q^g and dq = g q^(g-1) dq/dx = g (1 - 2y) exp((g - 1) log q + log p + log(1 - p)), finite at q = 0
// (hard targets: log q = -softplus(+-x) exactly, and the term -> 0 for g > 0; q^(g-1) alone is infinite for g < 1)
template <class F>
inline void sig_focal(F y, F p, F omp, F spn, F spp, F gamma, F& pw, F& dq) {
  const F q = y * omp + (F(1) - y) * p;
  F pq;  // q^(g-1) p (1 - p)
  if (gamma == F(0)) { pw = F(1); pq = F(0); }
  else if (gamma == F(1)) { pw = q; pq = p * omp; }
  else if (gamma == F(2)) { pw = q * q; pq = q * p * omp; }
  else {
    const F tiny = std::numeric_limits<F>::min();
    const F logq = y == F(1) ? -spp : (y == F(0) ? -spn : mlog(q > tiny ? q : tiny));
    pw = q > F(0) ? mexp(gamma * logq) : F(0);
    pq = mexp((gamma - F(1)) * logq - spn - spp);
  }
  dq = gamma * (F(1) - F(2) * y) * pq;
}

// ===================== sigmoid: explicit SIMD float32 path (issue 23) =====================
// The generic ml loops below are not vectorised by gcc on AVX2 (~50 ns per element, 15x BCE-with-logits at
// 8x3x128x128). Same arithmetic as sig_parts / ml_fwd / ml_bwd without the focal term, 8 lanes (vf), one
// (n, c) row chunk per work item as there; lane sums in float32 inside a chunk, chunks reduced in double in a
// fixed order (thread-count independent). Focal and float64 keep the generic code.
inline void vsig_parts(vf x, vf& p, vf& omp, vf& spn, vf& spp) {
  const vf zero = vsplat(0.f), one = vsplat(1.f);
  vf ax = vsel(x < zero, -x, x);
  vf e = vexp(-ax);
  vf w = one + e;
  vf r = one / w;
  vi pos = x >= zero;
  p = vsel(pos, r, e * r);
  omp = vsel(pos, e * r, r);
  vf l1 = vlog(w) - ((w - one) - e) * r;
  spn = l1 + vsel(x < zero, -x, zero);
  spp = l1 + vsel(x > zero, x, zero);
}

// lanes of a row chunk: x, y (0 where ignored or padding) and the kept mask vm (1/0)
inline void vml_load(const float* xr, const float* yr, int64_t s, int L, bool has_ign, float ign, vf& xv, vf& yv,
                     vf& vm) {
  const vf zero = vsplat(0.f);
  const vi lane = {0, 1, 2, 3, 4, 5, 6, 7};
  xv = load_x(xr + s, L);
  vf yy = load_x(yr + s, L);
  vi keep = lane < visplat(L);
  if (has_ign) keep &= yy != vsplat(ign);
  vm = vsel(keep, vsplat(1.f), zero);
  yv = vsel(keep, yy, zero);
}

void ml_fwd_vec(const float* x, const float* y, const MlCfg& cfg, const double* w_d, const double* pw_d,
                double* stats, double* scal) {
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * C * nch;
  const int64_t PW = 8;
  std::vector<double> part(items * PW, 0.0);
  const bool sq = cfg.squared, has_ign = cfg.has_ignore;
  const float ign = (float)cfg.ignore;
  parallel_items(items, cfg.nthreads, [&](int64_t item) {
    const int64_t nc = item / nch, ch = item % nch, c = nc % C;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const float* xr = x + nc * S;
    const float* yr = y + nc * S;
    const float wc = (float)w_d[c], pwc = (float)pw_d[c];
    const vf zero = vsplat(0.f), one = vsplat(1.f);
    vf atp = zero, aps = zero, ays = zero, aad = zero, abce = zero, acnt = zero;
    for (int64_t s = s0; s < s1; s += VL) {
      const int L = (int)std::min<int64_t>(VL, s1 - s);
      vf xv, yy, v, pp, oo, a1, a2;
      vml_load(xr, yr, s, L, has_ign, ign, xv, yy, v);
      vsig_parts(xv, pp, oo, a1, a2);
      atp += v * pp * yy;
      aps += v * (sq ? pp * pp : pp);
      ays += v * (sq ? yy * yy : yy);
      vf dd = pp - yy;
      aad += v * vsel(dd < zero, -dd, dd);
      abce += v * wc * (pwc * yy * a1 + (one - yy) * a2);
      acnt += v;
    }
    double* pp = part.data() + item * PW;
    for (int k = 0; k < PW; ++k) pp[k] = 0;
    hsum_d(atp, pp[0]); hsum_d(aps, pp[1]); hsum_d(ays, pp[2]); hsum_d(aad, pp[3]);
    hsum_d(abce, pp[4]); hsum_d(acnt, pp[5]);
  });
  std::fill(stats, stats + N * 4 * C, 0.0);
  std::fill(scal, scal + 4, 0.0);
  for (int64_t item = 0; item < items; ++item) {
    const int64_t nc = item / nch, n = nc / C, c = nc % C;
    const double* pp = part.data() + item * PW;
    for (int k = 0; k < 4; ++k) stats[n * 4 * C + k * C + c] += pp[k];
    scal[0] += pp[4]; scal[1] += pp[5];
  }
}

void ml_bwd_vec(const float* x, const float* y, const MlCfg& cfg, const double* w_d, const double* pw_d,
                const double* gst, const double* g, float* gx) {
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * C * nch;
  const bool sq = cfg.squared, has_ign = cfg.has_ignore;
  const float ign = (float)cfg.ignore;
  const float g_bce = (float)g[0];
  parallel_items(items, cfg.nthreads, [&](int64_t item) {
    const int64_t nc = item / nch, ch = item % nch, c = nc % C, n = nc / C;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const float* xr = x + nc * S;
    const float* yr = y + nc * S;
    float* gr = gx + nc * S;
    const float wc = (float)w_d[c], pwc = (float)pw_d[c];
    const float gt = (float)gst[n * 3 * C + c], gp = (float)gst[n * 3 * C + C + c];
    const float ga = (float)gst[n * 3 * C + 2 * C + c];
    const vf zero = vsplat(0.f), one = vsplat(1.f);
    for (int64_t s = s0; s < s1; s += VL) {
      const int L = (int)std::min<int64_t>(VL, s1 - s);
      vf xv, yy, v, pp, oo, a1, a2;
      vml_load(xr, yr, s, L, has_ign, ign, xv, yy, v);
      vsig_parts(xv, pp, oo, a1, a2);
      vf dd = pp - yy;
      vf sgn = vsel(dd > zero, one, vsel(dd < zero, -one, zero));
      vf dp = v * (gt * yy + gp * (sq ? 2.0f * pp : one) + ga * sgn);
      vf out = dp * pp * (one - pp) + g_bce * v * wc * (pp * (one - yy + pwc * yy) - pwc * yy);
      if (L == VL) {
        vstore(gr + s, out);
      } else {
        for (int i = 0; i < L; ++i) gr[s + i] = out[i];
      }
    }
  });
}

// stats: [N, 4, C] (tp, ps, ys, absdiff); scal: [4] (bce_sum, count, -, focal_sum)
template <class T>
void ml_fwd(const T* x, const T* y, const MlCfg& cfg, const double* w_d, const double* pw_d, const double* a_d,
            const double* an_d, double* stats, double* scal) {
  if constexpr (std::is_same<T, float>::value) {
    if (!cfg.want_focal) return ml_fwd_vec(x, y, cfg, w_d, pw_d, stats, scal);
  }
  using F = typename Compute<T>::F;
  constexpr int B = Compute<T>::B;
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * C * nch;
  const int64_t PW = 8;
  std::vector<double> part(items * PW, 0.0);
  const F gamma = (F)cfg.gamma;
  const bool sq = cfg.squared, want_fo = cfg.want_focal, has_ign = cfg.has_ignore;
  const F ign = (F)cfg.ignore;
  parallel_items(items, cfg.nthreads, [&](int64_t item) {
    const int64_t nc = item / nch, ch = item % nch, c = nc % C;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const T* xr = x + nc * S;
    const T* yr = y + nc * S;
    const F wc = (F)w_d[c], pwc = (F)pw_d[c], ac = (F)a_d[c], anc = (F)an_d[c];
    alignas(64) F atp[B] = {}, aps[B] = {}, ays[B] = {}, aad[B] = {}, abce[B] = {}, acnt[B] = {}, afo[B] = {};
    for (int64_t s = s0; s < s1; s += B) {
      const int L = (int)std::min<int64_t>(B, s1 - s);
      alignas(64) F xv[B], yv[B], vm[B], p[B], om[B], spn[B], spp[B];
      for (int i = 0; i < B; ++i) {
        F xx = i < L ? (F)xr[s + i] : F(0);
        F yy = i < L ? (F)yr[s + i] : F(0);
        bool valid = i < L && !(has_ign && yy == ign);
        vm[i] = valid ? F(1) : F(0);
        yv[i] = valid ? yy : F(0);
        xv[i] = xx;
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) {
        F pp, oo, a1, a2;
        sig_parts<F>(xv[i], pp, oo, a1, a2);
        p[i] = pp; om[i] = oo; spn[i] = a1; spp[i] = a2;
        F yy = yv[i], v = vm[i];
        atp[i] += v * pp * yy;
        aps[i] += v * (sq ? pp * pp : pp);
        ays[i] += v * (sq ? yy * yy : yy);
        F dd = pp - yy;
        aad[i] += v * (dd < F(0) ? -dd : dd);
        abce[i] += v * wc * (pwc * yy * a1 + (F(1) - yy) * a2);
        acnt[i] += v;
      }
      if (want_fo) {
        for (int i = 0; i < B; ++i) {
          F yy = yv[i];
          F ce = yy * spn[i] + (F(1) - yy) * spp[i];
          F at = ac * yy + anc * (F(1) - yy);
          F pw, dq;
          sig_focal<F>(yy, p[i], om[i], spn[i], spp[i], gamma, pw, dq);
          afo[i] += vm[i] * at * ce * pw;
        }
      }
    }
    double* pp = part.data() + item * PW;
    for (int k = 0; k < PW; ++k) pp[k] = 0;
    for (int i = 0; i < B; ++i) {
      pp[0] += atp[i]; pp[1] += aps[i]; pp[2] += ays[i]; pp[3] += aad[i];
      pp[4] += abce[i]; pp[5] += acnt[i]; pp[6] += afo[i];
    }
  });
  std::fill(stats, stats + N * 4 * C, 0.0);
  std::fill(scal, scal + 4, 0.0);
  for (int64_t item = 0; item < items; ++item) {
    const int64_t nc = item / nch, n = nc / C, c = nc % C;
    const double* pp = part.data() + item * PW;
    for (int k = 0; k < 4; ++k) stats[n * 4 * C + k * C + c] += pp[k];
    scal[0] += pp[4]; scal[1] += pp[5]; scal[3] += pp[6];
  }
}

// gst: [N, 3, C] incoming grads of (tp, ps, absdiff); g: [4] grads of (bce_sum, -, -, focal_sum)
template <class T>
void ml_bwd(const T* x, const T* y, const MlCfg& cfg, const double* w_d, const double* pw_d, const double* a_d,
            const double* an_d, const double* gst, const double* g, T* gx) {
  if constexpr (std::is_same<T, float>::value) {
    if (!(cfg.want_focal && g[3] != 0.0)) return ml_bwd_vec(x, y, cfg, w_d, pw_d, gst, g, gx);
  }
  using F = typename Compute<T>::F;
  constexpr int B = Compute<T>::B;
  const int64_t N = cfg.N, C = cfg.C, S = cfg.S;
  const int64_t nch = (S + CHUNK - 1) / CHUNK;
  const int64_t items = N * C * nch;
  const F gamma = (F)cfg.gamma;
  const bool sq = cfg.squared, has_ign = cfg.has_ignore;
  const F ign = (F)cfg.ignore;
  const F g_bce = (F)g[0], g_fo = cfg.want_focal ? (F)g[3] : F(0);
  const bool want_fo = cfg.want_focal && g_fo != F(0);
  parallel_items(items, cfg.nthreads, [&](int64_t item) {
    const int64_t nc = item / nch, ch = item % nch, c = nc % C, n = nc / C;
    const int64_t s0 = ch * CHUNK, s1 = std::min(S, s0 + CHUNK);
    const T* xr = x + nc * S;
    const T* yr = y + nc * S;
    T* gr = gx + nc * S;
    const F wc = (F)w_d[c], pwc = (F)pw_d[c], ac = (F)a_d[c], anc = (F)an_d[c];
    const F gt = (F)gst[n * 3 * C + c], gp = (F)gst[n * 3 * C + C + c], ga = (F)gst[n * 3 * C + 2 * C + c];
    for (int64_t s = s0; s < s1; s += B) {
      const int L = (int)std::min<int64_t>(B, s1 - s);
      alignas(64) F xv[B], yv[B], vm[B], p[B], om[B], spn[B], spp[B], out[B];
      for (int i = 0; i < B; ++i) {
        F xx = i < L ? (F)xr[s + i] : F(0);
        F yy = i < L ? (F)yr[s + i] : F(0);
        bool valid = i < L && !(has_ign && yy == ign);
        vm[i] = valid ? F(1) : F(0);
        yv[i] = valid ? yy : F(0);
        xv[i] = xx;
      }
#pragma omp simd
      for (int i = 0; i < B; ++i) {
        F pp, oo, a1, a2;
        sig_parts<F>(xv[i], pp, oo, a1, a2);
        p[i] = pp; om[i] = oo; spn[i] = a1; spp[i] = a2;
        F yy = yv[i], v = vm[i];
        F dd = pp - yy;
        F sgn = dd > F(0) ? F(1) : (dd < F(0) ? F(-1) : F(0));
        F dp = v * (gt * yy + gp * (sq ? F(2) * pp : F(1)) + ga * sgn);
        out[i] = dp * pp * (F(1) - pp) + g_bce * v * wc * (pp * (F(1) - yy + pwc * yy) - pwc * yy);
      }
      if (want_fo) {
        for (int i = 0; i < B; ++i) {
          F yy = yv[i], pp = p[i], oo = om[i];
          F ce = yy * spn[i] + (F(1) - yy) * spp[i];
          F at = ac * yy + anc * (F(1) - yy);
          F pw, dq;
          sig_focal<F>(yy, pp, oo, spn[i], spp[i], gamma, pw, dq);
          F dce = (F(1) - yy) * pp - yy * oo;  // p - y without cancellation near p = 1
          F d = dce * pw + ce * dq;
          out[i] += vm[i] > F(0) ? g_fo * at * d : F(0);
        }
      }
      if (L == B) {
#pragma omp simd
        for (int i = 0; i < B; ++i) gr[s + i] = (T)out[i];
      } else {
        for (int i = 0; i < L; ++i) gr[s + i] = (T)out[i];
      }
    }
  });
}

}  // namespace


// ---------------------------------------------------------------------------------------------------------
// Lovász: argsort in decreasing order, one row per (image, class), by an LSD radix sort on order-preserving
// integer keys of the float errors (stable; 11-bit digits: 3 passes for float32, 6 for float64). O(P) per row
// instead of a comparison sort; rows run on separate threads.
template <typename F, typename U>
static void argsort_desc_row(const F* v, int64_t n, int64_t* out) {
  constexpr int BITS = 8 * sizeof(U);
  constexpr int DIG = 11, NB = 1 << DIG, PASSES = (BITS + DIG - 1) / DIG;
  std::vector<U> k1(n), k2(n);
  std::vector<int64_t> i2(n);
  for (int64_t i = 0; i < n; ++i) {
    U b;
    std::memcpy(&b, &v[i], sizeof(U));
    const U mask = (b >> (BITS - 1)) ? ~U(0) : (U(1) << (BITS - 1));
    k1[i] = ~(b ^ mask);  // ascending order of ~key == descending order of the float
    out[i] = i;
  }
  U* ka = k1.data(); U* kb = k2.data();
  int64_t* ia = out; int64_t* ib = i2.data();
  std::vector<int64_t> cnt(NB);
  for (int pass = 0; pass < PASSES; ++pass) {
    const int shift = pass * DIG;
    std::fill(cnt.begin(), cnt.end(), 0);
    for (int64_t i = 0; i < n; ++i) cnt[(ka[i] >> shift) & (NB - 1)]++;
    int64_t sum = 0;
    for (int d = 0; d < NB; ++d) { const int64_t c = cnt[d]; cnt[d] = sum; sum += c; }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = cnt[(ka[i] >> shift) & (NB - 1)]++;
      kb[pos] = ka[i];
      ib[pos] = ia[i];
    }
    std::swap(ka, kb);
    std::swap(ia, ib);
  }
  if (ia != out) std::memcpy(out, ia, sizeof(int64_t) * n);
}

template <typename F, typename U>
static void argsort_desc(const F* v, int64_t rows, int64_t n, int64_t* out, int nthreads) {
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    for (int64_t r; (r = next.fetch_add(1)) < rows;) argsort_desc_row<F, U>(v + r * n, n, out + r * n);
  };
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, rows));
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

// Lovász extension of the Jaccard loss along each row, after a radix argsort: one pass in sorted order
// accumulates the foreground/background counts, the Lovász gradient g_k = J_k - J_{k-1} and the loss
// sum_k e_(k) g_k (hinge: relu(e_(k)) g_k), and writes d loss / d e_i = g at the element's original position.
// Foreground of element i in row r: labels[(r / C) * n + i] == r % C (index targets, label < 0 = ignored), or
// fg[r * n + i] in [0, 1] (dense targets, fg < 0 = ignored). Ignored elements are left out entirely.
template <typename F, typename U>
static inline U desc_key(F v) {  // order-preserving integer key, inverted: ascending key == descending value
  constexpr int BITS = 8 * sizeof(U);
  U b;
  std::memcpy(&b, &v, sizeof(U));
  const U mask = (b >> (BITS - 1)) ? ~U(0) : (U(1) << (BITS - 1));
  return ~(b ^ mask);
}

template <typename F, typename U>
static inline F key_value(U key) {  // inverse of desc_key
  constexpr int BITS = 8 * sizeof(U);
  const U top = U(1) << (BITS - 1);
  const U kk = ~key;
  const U b = (kk & top) ? (kk ^ top) : ~kk;
  F v;
  std::memcpy(&v, &b, sizeof(U));
  return v;
}

template <typename F, typename U>
static void lovasz_rows(const F* e, int64_t rows, int64_t n, int64_t C, const int64_t* labels, const F* fg,
                        int hinge, F* grad, double* loss, double* gts_out, int nthreads) {
  constexpr int BITS = 8 * sizeof(U);
  constexpr int DIG = 11, NB = 1 << DIG, PASSES = (BITS + DIG - 1) / DIG;
  constexpr uint32_t FG = 0x80000000u, IDX = 0x7fffffffu;  // payload: element index | foreground bit (labels)
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    std::vector<U> ka(n), kb(n);
    std::vector<uint32_t> pa(n), pb(n);
    std::vector<int64_t> cnt((size_t)PASSES * NB);
    for (int64_t r; (r = next.fetch_add(1)) < rows;) {
      const F* er = e + r * n;
      F* gr = grad + r * n;
      const int64_t* lab = labels ? labels + (r / C) * n : nullptr;
      const F* fr = fg ? fg + r * n : nullptr;
      const int64_t cls = r % C;
      // keys of the kept elements (ignored ones are left out and get a zero gradient) + all digit histograms
      std::fill(cnt.begin(), cnt.end(), 0);
      int64_t m = 0;
      double gts = 0;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t payload = (uint32_t)i;
        if (lab) {
          if (lab[i] < 0) { gr[i] = 0; continue; }
          if (lab[i] == cls) { payload |= FG; gts += 1.0; }
        } else {
          if (fr[i] < 0) { gr[i] = 0; continue; }
          gts += (double)fr[i];
        }
        const U k = desc_key<F, U>(er[i]);
        ka[m] = k;
        pa[m] = payload;
        for (int p = 0; p < PASSES; ++p) cnt[(size_t)p * NB + ((k >> (p * DIG)) & (NB - 1))]++;
        ++m;
      }
      U* k1 = ka.data(); U* k2 = kb.data();
      uint32_t* p1 = pa.data(); uint32_t* p2 = pb.data();
      for (int p = 0; p < PASSES && m > 0; ++p) {
        int64_t* c = cnt.data() + (size_t)p * NB;
        if (c[(k1[0] >> (p * DIG)) & (NB - 1)] == m) continue;  // every key shares this digit: nothing to do
        int64_t sum = 0;
        for (int d = 0; d < NB; ++d) { const int64_t v = c[d]; c[d] = sum; sum += v; }
        const int shift = p * DIG;
        for (int64_t i = 0; i < m; ++i) {
          const int64_t pos = c[(k1[i] >> shift) & (NB - 1)]++;
          k2[pos] = k1[i];
          p2[pos] = p1[i];
        }
        std::swap(k1, k2);
        std::swap(p1, p2);
      }
      // one pass in decreasing error order: counts, Lovász gradient, loss; gradient scattered back
      double cf = 0, cb = 0, prev = 0, acc = 0;
      for (int64_t k = 0; k < m; ++k) {
        const uint32_t pl = p1[k];
        const int64_t i = pl & IDX;
        const double f = lab ? ((pl & FG) ? 1.0 : 0.0) : (double)fr[i];
        cf += f;
        cb += 1.0 - f;
        const double J = 1.0 - (gts - cf) / (gts + cb);
        const double g = J - prev;
        prev = J;
        const double ev = (double)key_value<F, U>(k1[k]);
        if (hinge) {  // relu(e) g, with relu(NaN) = NaN as torch (the gradient is 0 there, as torch's)
          acc += ev > 0 ? ev * g : (ev == ev ? 0.0 : ev);
          gr[i] = (F)(ev > 0 ? g : 0.0);
        } else {
          acc += ev * g;
          gr[i] = (F)g;
        }
      }
      loss[r] = acc;
      gts_out[r] = gts;
    }
  };
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, rows));
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

extern "C" {
int seglab_abi_version() { return 4; }
void argsort_desc_f32(const float* v, int64_t rows, int64_t n, int64_t* out, int nthreads) {
  argsort_desc<float, uint32_t>(v, rows, n, out, nthreads);
}
void argsort_desc_f64(const double* v, int64_t rows, int64_t n, int64_t* out, int nthreads) {
  argsort_desc<double, uint64_t>(v, rows, n, out, nthreads);
}
void lovasz_f32(const float* e, int64_t rows, int64_t n, int64_t C, const int64_t* labels, const float* fg, int hinge,
                float* grad, double* loss, double* gts, int nthreads) {
  lovasz_rows<float, uint32_t>(e, rows, n, C, labels, fg, hinge, grad, loss, gts, nthreads);
}
void lovasz_f64(const double* e, int64_t rows, int64_t n, int64_t C, const int64_t* labels, const double* fg, int hinge,
                double* grad, double* loss, double* gts, int nthreads) {
  lovasz_rows<double, uint64_t>(e, rows, n, C, labels, fg, hinge, grad, loss, gts, nthreads);
}

#define SEGLAB_MC(T, SUF)                                                                                   \
  void mc_fwd_##SUF(const T* x, const int64_t* t, int64_t N, int64_t C, int64_t S, int64_t ignore,         \
                    int squared, int want_smooth, int want_focal, double gamma, const double* w,           \
                    const double* a, double* stats, double* scal, int64_t* nbad, int nthreads) {           \
    McCfg cfg{N, C, S, ignore, squared, 1, want_smooth, want_focal, nthreads, gamma};                       \
    mc_fwd<T>(x, t, cfg, w, a, stats, scal, nbad);                                                         \
  }                                                                                                         \
  void mc_bwd_##SUF(const T* x, const int64_t* t, int64_t N, int64_t C, int64_t S, int64_t ignore,         \
                    int squared, int want_smooth, int want_focal, double gamma, const double* w,           \
                    const double* a, const double* gst, const double* g, T* gx, int64_t* nbad,             \
                    int nthreads) {                                                                         \
    McCfg cfg{N, C, S, ignore, squared, 1, want_smooth, want_focal, nthreads, gamma};                       \
    std::vector<double> gtp(N * C), gps(N * C); /* gst: [N, 3, C] grads of (tp, ps, ys); ys is constant */  \
    for (int64_t n = 0; n < N; ++n)                                                                         \
      for (int64_t c = 0; c < C; ++c) {                                                                     \
        gtp[n * C + c] = gst[n * 3 * C + c];                                                                \
        gps[n * C + c] = gst[n * 3 * C + C + c];                                                            \
      }                                                                                                     \
    mc_bwd<T>(x, t, cfg, w, a, gtp.data(), gps.data(), g, gx, nbad);                                       \
  }                                                                                                         \
  /* the same in the compute dtype (what the autograd wrapper hands out / receives; ABI 4): statistics are   \
     accumulated in double as above and rounded once to T; stats_out [3, N, C] (tp, ps, ys planes), scal_out \
     [4]; incoming grads of tp, ps as strided (N, C) T arrays (NULL = zero), of the 4 sums as doubles */      \
  void mc_fwd_cd_##SUF(const T* x, const int64_t* t, int64_t N, int64_t C, int64_t S, int64_t ignore,      \
                       int squared, int want_smooth, int want_focal, double gamma, const double* w,        \
                       const double* a, T* stats_out, T* scal_out, int64_t* nbad, int nthreads) {          \
    McCfg cfg{N, C, S, ignore, squared, 1, want_smooth, want_focal, nthreads, gamma};                       \
    std::vector<double> st(N * 3 * C);                                                                      \
    double sc[4];                                                                                           \
    mc_fwd<T>(x, t, cfg, w, a, st.data(), sc, nbad);                                                       \
    for (int64_t n = 0; n < N; ++n)                                                                         \
      for (int64_t k = 0; k < 3; ++k)                                                                       \
        for (int64_t c = 0; c < C; ++c) stats_out[(k * N + n) * C + c] = (T)st[(n * 3 + k) * C + c];       \
    for (int k = 0; k < 4; ++k) scal_out[k] = (T)sc[k];                                                     \
  }                                                                                                         \
  void mc_bwd_cd_##SUF(const T* x, const int64_t* t, int64_t N, int64_t C, int64_t S, int64_t ignore,      \
                       int squared, int want_smooth, int want_focal, double gamma, const double* w,        \
                       const double* a, const T* gtp_in, int64_t tp_s0, int64_t tp_s1, const T* gps_in,   \
                       int64_t ps_s0, int64_t ps_s1, double g0, double g1, double g2, double g3, T* gx,    \
                       int64_t* nbad, int nthreads) {                                                       \
    McCfg cfg{N, C, S, ignore, squared, 1, want_smooth, want_focal, nthreads, gamma};                       \
    std::vector<double> gtp(N * C, 0.0), gps(N * C, 0.0);                                                   \
    for (int64_t n = 0; n < N; ++n)                                                                         \
      for (int64_t c = 0; c < C; ++c) {                                                                     \
        if (gtp_in) gtp[n * C + c] = (double)gtp_in[n * tp_s0 + c * tp_s1];                                 \
        if (gps_in) gps[n * C + c] = (double)gps_in[n * ps_s0 + c * ps_s1];                                 \
      }                                                                                                     \
    const double g[4] = {g0, g1, g2, g3};                                                                   \
    mc_bwd<T>(x, t, cfg, w, a, gtp.data(), gps.data(), g, gx, nbad);                                       \
  }                                                                                                         \
  void ml_fwd_##SUF(const T* x, const T* y, int64_t N, int64_t C, int64_t S, int has_ignore, double ignore, \
                    int squared, int want_focal, double gamma, const double* w, const double* pw,          \
                    const double* a, const double* an, double* stats, double* scal, int nthreads) {        \
    MlCfg cfg{N, C, S, has_ignore, ignore, squared, 1, 1, want_focal, nthreads, gamma};                     \
    ml_fwd<T>(x, y, cfg, w, pw, a, an, stats, scal);                                                           \
  }                                                                                                         \
  void ml_bwd_##SUF(const T* x, const T* y, int64_t N, int64_t C, int64_t S, int has_ignore, double ignore, \
                    int squared, int want_focal, double gamma, const double* w, const double* pw,          \
                    const double* a, const double* an, const double* gst, const double* g, T* gx,         \
                    int nthreads) {                                                                         \
    MlCfg cfg{N, C, S, has_ignore, ignore, squared, 1, 1, want_focal, nthreads, gamma};                     \
    ml_bwd<T>(x, y, cfg, w, pw, a, an, gst, g, gx);                                                            \
  }

SEGLAB_MC(float, f32)
SEGLAB_MC(double, f64)
}
