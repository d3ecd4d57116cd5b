// sconv: structured-sparse direct convolution on the CPU, NHWC float32, SIMD intrinsics + OpenMP.
// Plain C ABI (loaded with ctypes by kernels_taichi/sconv.py); no torch headers, so it builds in seconds:
//
//     g++ -O3 -march=native -fopenmp -shared -fPIC -std=c++17 sconv.cpp -o sconv.so
//
// Needs x86-64 with AVX-512F (the fast path: 16-float vectors, 32 registers) or AVX2 + FMA (8-float vectors,
// 16 registers, smaller tiles); anything else fails to build and the Python side falls back.
//
// One kernel serves every layer kind whose sparsity is structured per block of output channels: ASK (a tap set
// per output-channel group), HetConv (3x3 taps over a group's channel block + the centre tap over all channels),
// 1xN block sparsity (per block of N output channels, the kernel over its kept input channels), and the
// transposed (backward-data) form of each. The output channels are split in blocks of OCB = 16 * NJ; block b
// computes
//     y[p, oc_b + j] = sum_{s in segs(b)} sum_{k < cn_s} x[pix(p) + (dy_s, dx_s), ch_s(k)] * w_b[s][k][j]
// where a segment s is one tap offset (dy, dx) (relative to the output pixel times the stride, padding folded in)
// with a channel list: the range c0 .. c0 + cn, or an index list. The register-blocked micro-kernel keeps
// RW pixels x OCB channels of accumulators over the whole reduction (a batch-reduce GEMM whose A rows are input
// pixels addressed by pointer: no im2col, no padded copy). A pixel whose tap falls in the padding reads a row of
// zeros; a segment in the padding for every pixel of a tile is skipped.
//
// Epilogue per output value: (+ the old output if accumulate) (+ residual) (+ bias) (ReLU).
// sconv_dw is the weight gradient of the same layer (segments with channel ranges):
//     dW_b[s][k][j] = sum_p x[pix(p) + off_s, c0_s + k] * dy[p, oc_b + j].
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <array>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
namespace simd {
constexpr int L = 16;  // floats per vector
using V = __m512;
static inline V zero() { return _mm512_setzero_ps(); }
static inline V load(const float* p) { return _mm512_loadu_ps(p); }
static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
static inline V bcast(float f) { return _mm512_set1_ps(f); }
static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
static inline V relu(V a) { return _mm512_max_ps(a, _mm512_setzero_ps()); }
}  // namespace simd
// Register tiles (rows x vectors of accumulators, 24 of the 32 zmm): NJ = 4: 6 x 4, NJ = 2: 12 x 2, NJ = 1: 24 x 1.
constexpr int RW4 = 6, RW2 = 12, RW1 = 24;
constexpr int ISA = 512;
constexpr int PREFERRED_NJ = 4;
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
namespace simd {
constexpr int L = 8;
using V = __m256;
static inline V zero() { return _mm256_setzero_ps(); }
static inline V load(const float* p) { return _mm256_loadu_ps(p); }
static inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
static inline V bcast(float f) { return _mm256_set1_ps(f); }
static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
static inline V relu(V a) { return _mm256_max_ps(a, _mm256_setzero_ps()); }
}  // namespace simd
// 16 ymm: 12 accumulators + the weights' vectors + one broadcast. 16 output channels are 2 vectors.
constexpr int RW4 = 1, RW2 = 3, RW1 = 6;
constexpr int ISA = 256;
constexpr int PREFERRED_NJ = 1;
#else
#error "sconv needs an x86-64 CPU with AVX-512F, or AVX2 and FMA (built with -march=native)"
#endif

namespace {

using simd::V;
constexpr int ROW_MIN = 8;  // row tiles (below) take 8 .. RWMAX pixels

struct Geo {
  int N, H, W, C;      // input (NHWC)
  int Ho, Wo, stride;  // output grid of the computation; padding folded into the segment offsets
  int order;           // 0: pixels in (n, h, w) order, 1: (h, w, n) (exact tap skipping on tiny images)
};

// Where output pixel (n, oh, ow) goes: y + ((n * Hy + oh * step + oy) * Wy + ow * step + ox) * ld + channel.
// step 1, offsets 0, (Hy, Wy) = (Ho, Wo) is a plain NHWC output; step s writes one phase of a stride-s
// transposed convolution straight into the full input gradient.
struct Out {
  float* y;
  int64_t ld;
  int Hy, Wy, step, oy, ox;
  float* at(int n, int oh, int ow) const {
    return y + ((int64_t)(n * Hy + oh * step + oy) * Wy + (int64_t)ow * step + ox) * ld;
  }
};

struct Segs {
  const int* ob_seg;       // [nob + 1]: block b has segments ob_seg[b] .. ob_seg[b + 1]
  const int* dy;           // [nseg]
  const int* dx;
  const int* c0;
  const int* cn;
  const int* idx_ofs;      // [nseg]: -1 for the range c0 .. c0 + cn, else the offset of its list in idx
  const int* idx;
  const int64_t* ob_wofs;  // [nob]: offset (floats) of block b's weights; its segments' weights follow in order
  const int* ob_out;       // [nob]: first output channel of block b
};

// Tile order: where the input is larger than the weights (large batches, early layers), a thread sweeps every
// block over one pixel tile before the next tile, so the tile's input rows come from memory once and stay in
// cache for the other blocks, whose weights stay in L2; else (batch 1, deep layers) it sweeps every tile with
// one block's weights before the next block, so each weight is read from memory once.
// (VGG-16's 1xN N=16 layers at batch 128: 64 ch at 32 px 1.35x, 128 ch at 16 px 1.12x faster than block
// outer; ASK_5a's layers and batch 32 the same within noise.)
bool tiles_outer(const Geo& g, const Segs& S, int nob, int nj) {
  int64_t weights = 0;
  for (int s = 0; s < S.ob_seg[nob]; ++s) weights += (int64_t)S.cn[s] * nj * 16;
  return (int64_t)g.N * g.H * g.W * g.C > weights;
}

int max_segments(const Segs& S, int nob) {
  int m = 1;
  for (int b = 0; b < nob; ++b) m = std::max(m, S.ob_seg[b + 1] - S.ob_seg[b]);
  return m;
}

// ------------------------------------------------------------------------------------------------ forward
template <int RW, int NJ>
void micro(const float* const* ptrs /*[nt][RW]*/, const int* segi, int nt, const Segs& S, const int64_t* segw,
           const float* wblk, float* const* outs, const float* const* ress, const float* bias, int relu,
           int accumulate) {
  constexpr int NV = NJ * 16 / simd::L;
  V acc[RW][NV];
#pragma GCC unroll 32
  for (int r = 0; r < RW; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[r][j] = simd::zero();
  for (int ti = 0; ti < nt; ++ti) {
    const int s = segi[ti];
    const float* const* pr = ptrs + (int64_t)ti * RW;
    const float* p[RW];
#pragma GCC unroll 32
    for (int r = 0; r < RW; ++r) p[r] = pr[r];
    const float* wt = wblk + segw[ti];
    const int cn = S.cn[s];
    const int* ix = S.idx_ofs[s] < 0 ? nullptr : S.idx + S.idx_ofs[s];
    if (!ix) {
#pragma GCC unroll 2
      for (int k = 0; k < cn; ++k) {
        V wv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) wv[j] = simd::load(wt + (int64_t)k * NJ * 16 + simd::L * j);
#pragma GCC unroll 32
        for (int r = 0; r < RW; ++r) {
          const V b = simd::bcast(p[r][k]);
#pragma GCC unroll 8
          for (int j = 0; j < NV; ++j) acc[r][j] = simd::fma(b, wv[j], acc[r][j]);
        }
      }
    } else {
#pragma GCC unroll 2
      for (int k = 0; k < cn; ++k) {
        const int c = ix[k];
        V wv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) wv[j] = simd::load(wt + (int64_t)k * NJ * 16 + simd::L * j);
#pragma GCC unroll 32
        for (int r = 0; r < RW; ++r) {
          const V b = simd::bcast(p[r][c]);
#pragma GCC unroll 8
          for (int j = 0; j < NV; ++j) acc[r][j] = simd::fma(b, wv[j], acc[r][j]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < RW; ++r) {
    float* o = outs[r];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      V v = acc[r][j];
      if (accumulate) v = simd::add(v, simd::load(o + simd::L * j));
      if (ress) v = simd::add(v, simd::load(ress[r] + simd::L * j));
      if (bias) v = simd::add(v, simd::load(bias + simd::L * j));
      if (relu) v = simd::relu(v);
      simd::store(o + simd::L * j, v);
    }
  }
}

using MicroFn = void (*)(const float* const*, const int*, int, const Segs&, const int64_t*, const float*,
                         float* const*, const float* const*, const float*, int, int);

template <int NJ, int RW>
void fill_micro(MicroFn* t) {
  t[RW] = &micro<RW, NJ>;
  if constexpr (RW > 1) fill_micro<NJ, RW - 1>(t);
}

template <int NJ, int RWMAX>
const std::array<MicroFn, RWMAX + 1>& micro_table() {
  static const std::array<MicroFn, RWMAX + 1> table = [] {  // C++11 statics: initialised once, thread-safe
    std::array<MicroFn, RWMAX + 1> t{};
    fill_micro<NJ, RWMAX>(t.data());
    return t;
  }();
  return table;
}

template <int NJ, int RWMAX>
void run_fwd(const Geo& g, const float* x, const float* wp, int nob, const Segs& S, const Out& out,
             const float* res, int64_t ldres, const float* bias, int relu, int accumulate, int nthreads) {
  const auto& table = micro_table<NJ, RWMAX>();
  const int64_t P = (int64_t)g.N * g.Ho * g.Wo;
  const int64_t ntile = (P + RWMAX - 1) / RWMAX;
  const int64_t total = ntile * nob;
  const int maxseg = max_segments(S, nob);
  const bool tile_first = tiles_outer(g, S, nob, NJ);
  std::vector<float> zeros(g.C + 16, 0.f);
  const float* zp = zeros.data();
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<const float*> ptrs((size_t)maxseg * RWMAX);
    std::vector<int> segi(maxseg);
    std::vector<int64_t> segw(maxseg);
    float* outs[RWMAX];
    const float* ress[RWMAX];
    int ns[RWMAX], ihs[RWMAX], iws[RWMAX];
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t lo = total * tid / nth, hi = total * (tid + 1) / nth;
    for (int64_t it = lo; it < hi; ++it) {
      const int ob = tile_first ? (int)(it % nob) : (int)(it / ntile);
      const int64_t p0 = (tile_first ? it / nob : it % ntile) * RWMAX;
      const int rw = (int)std::min<int64_t>(RWMAX, P - p0);
      const int oc = S.ob_out[ob];
      int n, oh, ow;
      if (g.order == 0) {
        ow = (int)(p0 % g.Wo); const int64_t q = p0 / g.Wo; oh = (int)(q % g.Ho); n = (int)(q / g.Ho);
      } else {
        n = (int)(p0 % g.N); const int64_t q = p0 / g.N; ow = (int)(q % g.Wo); oh = (int)(q / g.Wo);
      }
      for (int r = 0; r < rw; ++r) {  // one division per tile, then step through the pixels
        if (r) {
          if (g.order == 0) {
            if (++ow == g.Wo) { ow = 0; if (++oh == g.Ho) { oh = 0; ++n; } }
          } else {
            if (++n == g.N) { n = 0; if (++ow == g.Wo) { ow = 0; ++oh; } }
          }
        }
        ns[r] = n; ihs[r] = oh * g.stride; iws[r] = ow * g.stride;
        outs[r] = out.at(n, oh, ow) + oc;
        if (res) ress[r] = res + ((int64_t)(n * g.Ho + oh) * g.Wo + ow) * ldres + oc;
      }
      int nt = 0;
      int64_t wofs = 0;
      for (int s = S.ob_seg[ob]; s < S.ob_seg[ob + 1]; ++s) {
        bool any = false;
        const int off = S.idx_ofs[s] < 0 ? S.c0[s] : 0;
        const float** pt = ptrs.data() + (int64_t)nt * rw;
        for (int r = 0; r < rw; ++r) {
          const int ih = ihs[r] + S.dy[s], iw = iws[r] + S.dx[s];
          const bool ok = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
          pt[r] = ok ? x + ((int64_t)(ns[r] * g.H + ih) * g.W + iw) * g.C + off : zp;
          any |= ok;
        }
        if (any) { segi[nt] = s; segw[nt] = wofs; ++nt; }
        wofs += (int64_t)S.cn[s] * NJ * 16;
      }
      table[rw](ptrs.data(), segi.data(), nt, S, segw.data(), wp + S.ob_wofs[ob], outs, res ? ress : nullptr,
                bias ? bias + oc : nullptr, relu, accumulate);
    }
  }
}

// Row tiles for small channel counts (3x3-like kernels, |dx| <= 1): the RW pixels of a tile are consecutive in
// one output row, so a segment's pixels r = 1 .. RW-2 read base + (r - 1) * PS floats with PS = C * stride a
// compile-time constant: one base register instead of RW pointers (the generic kernel spills them at RW = 24).
// The first and last pixel keep their own pointer (a zero row where the tap falls in the padding).
template <int RW, int NJ, int PS>
void micro_row(const float* const* b3 /*[nt][3]*/, const int* segi, int nt, const Segs& S, const int64_t* segw,
               const float* wblk, float* out0, int64_t ldo, const float* res0, int64_t ldres, const float* bias,
               int relu, int accumulate) {
  constexpr int NV = NJ * 16 / simd::L;
  V acc[RW][NV];
#pragma GCC unroll 32
  for (int r = 0; r < RW; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[r][j] = simd::zero();
  for (int ti = 0; ti < nt; ++ti) {
    const int s = segi[ti];
    const float* pf = b3[3 * ti];
    const float* pm = b3[3 * ti + 1];
    const float* pl = b3[3 * ti + 2];
    const float* wt = wblk + segw[ti];
    const int cn = S.cn[s];
    const int* ix = S.idx_ofs[s] < 0 ? nullptr : S.idx + S.idx_ofs[s];
    if (!ix) {
#pragma GCC unroll 2
      for (int k = 0; k < cn; ++k) {
        V wv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) wv[j] = simd::load(wt + (int64_t)k * NJ * 16 + simd::L * j);
#pragma GCC unroll 32
        for (int r = 0; r < RW; ++r) {
          const float v = r == 0 ? pf[k] : r == RW - 1 ? pl[k] : pm[k + (r - 1) * PS];
          const V b = simd::bcast(v);
#pragma GCC unroll 8
          for (int j = 0; j < NV; ++j) acc[r][j] = simd::fma(b, wv[j], acc[r][j]);
        }
      }
    } else {
#pragma GCC unroll 2
      for (int k = 0; k < cn; ++k) {
        const int c = ix[k];
        V wv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) wv[j] = simd::load(wt + (int64_t)k * NJ * 16 + simd::L * j);
#pragma GCC unroll 32
        for (int r = 0; r < RW; ++r) {
          const float v = r == 0 ? pf[c] : r == RW - 1 ? pl[c] : pm[c + (r - 1) * PS];
          const V b = simd::bcast(v);
#pragma GCC unroll 8
          for (int j = 0; j < NV; ++j) acc[r][j] = simd::fma(b, wv[j], acc[r][j]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < RW; ++r) {
    float* o = out0 + r * ldo;
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      V v = acc[r][j];
      if (accumulate) v = simd::add(v, simd::load(o + simd::L * j));
      if (res0) v = simd::add(v, simd::load(res0 + r * ldres + simd::L * j));
      if (bias) v = simd::add(v, simd::load(bias + simd::L * j));
      if (relu) v = simd::relu(v);
      simd::store(o + simd::L * j, v);
    }
  }
}

using RowFn = void (*)(const float* const*, const int*, int, const Segs&, const int64_t*, const float*, float*,
                       int64_t, const float*, int64_t, const float*, int, int);

template <int NJ, int PS, int RW>
void fill_rows(RowFn* t) {
  t[RW] = &micro_row<RW, NJ, PS>;
  if constexpr (RW > ROW_MIN) fill_rows<NJ, PS, RW - 1>(t);
}

template <int NJ, int RWMAX, int PS>
const std::array<RowFn, RWMAX + 1>& row_table() {
  static const std::array<RowFn, RWMAX + 1> table = [] {
    std::array<RowFn, RWMAX + 1> t{};
    fill_rows<NJ, PS, RWMAX>(t.data());
    return t;
  }();
  return table;
}

template <int NJ, int RWMAX, int PS>
void run_rows(const Geo& g, const float* x, const float* wp, int nob, const Segs& S, const Out& out,
              const float* res, int64_t ldres, const float* bias, int relu, int accumulate, int nthreads) {
  const auto& table = row_table<NJ, RWMAX, PS>();
  const int ntr = (g.Wo + RWMAX - 1) / RWMAX;  // tiles per row, balanced
  const int64_t nrows = (int64_t)g.N * g.Ho;
  const int64_t ntile = nrows * ntr;
  const int64_t total = ntile * nob;
  const int maxseg = max_segments(S, nob);
  const bool tile_first = tiles_outer(g, S, nob, NJ);
  std::vector<float> zeros(g.C + 16, 0.f);
  const float* zp = zeros.data();
  const int64_t ldo = out.ld * out.step;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<const float*> b3(3 * (size_t)maxseg);
    std::vector<int> segi(maxseg);
    std::vector<int64_t> segw(maxseg);
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t lo = total * tid / nth, hi = total * (tid + 1) / nth;
    for (int64_t it = lo; it < hi; ++it) {
      const int ob = tile_first ? (int)(it % nob) : (int)(it / ntile);
      const int64_t tile = tile_first ? it / nob : it % ntile;
      const int64_t row = tile / ntr;
      const int tr = (int)(tile % ntr);
      const int ow0 = (int)((int64_t)g.Wo * tr / ntr), ow1 = (int)((int64_t)g.Wo * (tr + 1) / ntr);
      const int rw = ow1 - ow0;
      const int n = (int)(row / g.Ho), oh = (int)(row % g.Ho);
      const int oc = S.ob_out[ob];
      int nt = 0;
      int64_t wofs = 0;
      for (int s = S.ob_seg[ob]; s < S.ob_seg[ob + 1]; ++s) {
        const int ih = oh * g.stride + S.dy[s];
        if (ih >= 0 && ih < g.H) {
          const int off = S.idx_ofs[s] < 0 ? S.c0[s] : 0;
          const float* rowp = x + (int64_t)(n * g.H + ih) * g.W * g.C + off;
          const int iwf = ow0 * g.stride + S.dx[s], iwl = (ow1 - 1) * g.stride + S.dx[s];
          b3[3 * nt] = iwf >= 0 && iwf < g.W ? rowp + (int64_t)iwf * g.C : zp;
          b3[3 * nt + 1] = rowp + (int64_t)(iwf + g.stride) * g.C;  // pixels 1 .. rw-2: inside (checked)
          b3[3 * nt + 2] = iwl >= 0 && iwl < g.W ? rowp + (int64_t)iwl * g.C : zp;
          segi[nt] = s; segw[nt] = wofs; ++nt;
        }
        wofs += (int64_t)S.cn[s] * NJ * 16;
      }
      const int64_t q = row * g.Wo + ow0;
      table[rw](b3.data(), segi.data(), nt, S, segw.data(), wp + S.ob_wofs[ob], out.at(n, oh, ow0) + oc, ldo,
                res ? res + q * ldres + oc : nullptr, ldres, bias ? bias + oc : nullptr, relu, accumulate);
    }
  }
}

template <int NJ, int RWMAX>
bool try_rows(const Geo& g, const float* x, const float* wp, int nob, const Segs& S, const Out& out,
              const float* res, int64_t ldres, const float* bias, int relu, int accumulate, int nthreads) {
  if constexpr (RWMAX < ROW_MIN) {
    return false;
  } else {
    if (g.order != 0 || g.Wo < ROW_MIN) return false;
    const int ntr = (g.Wo + RWMAX - 1) / RWMAX;
    if (g.Wo / ntr < ROW_MIN) return false;
    for (int s = 0; s < S.ob_seg[nob]; ++s) {
      // The middle pixels of every tile (ow = 1 .. Wo - 2 at most) must read inside the row.
      if (S.dx[s] < -1 || S.dx[s] > 1) return false;
      if (g.stride + S.dx[s] < 0 || (int64_t)(g.Wo - 2) * g.stride + S.dx[s] >= g.W) return false;
    }
    switch (g.C * g.stride) {
      case 16: run_rows<NJ, RWMAX, 16>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return true;
      case 32: run_rows<NJ, RWMAX, 32>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return true;
      case 64: run_rows<NJ, RWMAX, 64>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return true;
      case 128: run_rows<NJ, RWMAX, 128>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return true;
    }
    return false;
  }
}

// ------------------------------------------------------------------------------------------ weight gradient
// Jobs (block b, segment s, k-block of RK channels) are split statically between threads; each job sweeps all
// images, pixel rows in chunks (x and dy of a chunk stay in L2 across the jobs), with RK x OCB accumulators kept
// in registers over a chunk, then added into dW.
template <int RK, int NJ>
void dw_micro(const float* const* xs /*per row run: x at its first pixel + off + c0 + k0*/,
              const float* const* ds /*per run: dy at its first pixel + oc*/, const int* lens, int nruns,
              int64_t xstride, int64_t dystride, float* dw /*[RK][OCB]*/) {
  constexpr int NV = NJ * 16 / simd::L;
  V acc[RK][NV];
#pragma GCC unroll 32
  for (int r = 0; r < RK; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[r][j] = simd::zero();
  for (int u = 0; u < nruns; ++u) {
    const float* xr = xs[u];
    const float* dr = ds[u];
    const int len = lens[u];
#pragma GCC unroll 2
    for (int q = 0; q < len; ++q) {
      V gv[NV];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) gv[j] = simd::load(dr + q * dystride + simd::L * j);
#pragma GCC unroll 32
      for (int r = 0; r < RK; ++r) {
        const V b = simd::bcast(xr[q * xstride + r]);
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[r][j] = simd::fma(b, gv[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < RK; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      float* o = dw + (int64_t)r * NJ * 16 + simd::L * j;
      simd::store(o, simd::add(simd::load(o), acc[r][j]));
    }
}

using DwFn = void (*)(const float* const*, const float* const*, const int*, int, int64_t, int64_t, float*);

template <int NJ, int RK>
void fill_dw(DwFn* t) {
  t[RK] = &dw_micro<RK, NJ>;
  if constexpr (RK > 1) fill_dw<NJ, RK - 1>(t);
}

template <int NJ, int RKMAX>
const std::array<DwFn, RKMAX + 1>& dw_table() {
  static const std::array<DwFn, RKMAX + 1> table = [] {
    std::array<DwFn, RKMAX + 1> t{};
    fill_dw<NJ, RKMAX>(t.data());
    return t;
  }();
  return table;
}

static inline int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

template <int NJ, int RKMAX>
void run_dw(const Geo& g, const float* x, const float* dy, int64_t lddy, int nob, const Segs& S, float* dwp,
            int nthreads) {
  const auto& table = dw_table<NJ, RKMAX>();
  struct Job { int ob, s, k0, rk; int64_t wofs; };
  std::vector<Job> jobs;
  for (int ob = 0; ob < nob; ++ob) {
    int64_t wofs = S.ob_wofs[ob];
    for (int s = S.ob_seg[ob]; s < S.ob_seg[ob + 1]; ++s) {
      for (int k0 = 0; k0 < S.cn[s]; k0 += RKMAX)
        jobs.push_back({ob, s, k0, std::min(RKMAX, S.cn[s] - k0), wofs + (int64_t)k0 * NJ * 16});
      wofs += (int64_t)S.cn[s] * NJ * 16;
    }
  }
  const int64_t njobs = (int64_t)jobs.size();
  const int chunk_pixels = (int)std::max<int64_t>(64, 131072 / (g.C + lddy));  // about half of L2
  const int rows_per_chunk = std::max(1, chunk_pixels / std::max(1, g.Wo));
  const int64_t nrows = (int64_t)g.N * g.Ho;
  const int s = g.stride;
  for (int64_t j = 0; j < njobs; ++j) memset(dwp + jobs[j].wofs, 0, sizeof(float) * jobs[j].rk * NJ * 16);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<const float*> xs(rows_per_chunk), ds(rows_per_chunk);
    std::vector<int> lens(rows_per_chunk);
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t lo = njobs * tid / nth, hi = njobs * (tid + 1) / nth;
    for (int64_t r0 = 0; r0 < nrows; r0 += rows_per_chunk) {
      const int64_t r1 = std::min<int64_t>(nrows, r0 + rows_per_chunk);
      for (int64_t ji = lo; ji < hi; ++ji) {
        const Job& J = jobs[ji];
        const int ddy = S.dy[J.s], ddx = S.dx[J.s];
        const int oc = S.ob_out[J.ob];
        // Output columns whose input column ow * s + ddx lies inside the image.
        const int w0 = std::max(0, ceil_div(-ddx, s)), w1 = std::min(g.Wo, floor_div(g.W - 1 - ddx, s) + 1);
        if (w1 <= w0) continue;
        int nr = 0;
        for (int64_t row = r0; row < r1; ++row) {
          const int n = (int)(row / g.Ho), oh = (int)(row % g.Ho);
          const int ih = oh * s + ddy;
          if (ih < 0 || ih >= g.H) continue;
          xs[nr] = x + ((int64_t)(n * g.H + ih) * g.W + (int64_t)w0 * s + ddx) * g.C + S.c0[J.s] + J.k0;
          ds[nr] = dy + ((int64_t)row * g.Wo + w0) * lddy + oc;
          lens[nr] = w1 - w0;
          ++nr;
        }
        if (nr) table[J.rk](xs.data(), ds.data(), lens.data(), nr, (int64_t)g.C * s, lddy, dwp + J.wofs);
      }
    }
  }
}

}  // namespace

extern "C" {

// What this build is: the vector width in bits (512 or 256) * 16 + the preferred NJ (output blocks of 16 * NJ
// channels; the others still work).
int sconv_info() { return ISA * 16 + PREFERRED_NJ; }

// Forward (and any transposed) convolution, see the top of the file. Output pixel (n, oh, ow) of the Ho x Wo
// grid goes to y at ((n * Hy + oh * ostep + oy) * Wy + ow * ostep + ox) * ldy; the residual (if any) is read
// at ((n * Ho + oh) * Wo + ow) * ldres. Returns 0, or a negative error code.
int sconv_fwd(const float* x, int N, int H, int W, int C, int Ho, int Wo, int stride, int order, const float* wp,
              int nob, int nj, const int* ob_seg, const int* dy, const int* dx, const int* c0, const int* cn,
              const int* idx_ofs, const int* idx, const int64_t* ob_wofs, const int* ob_out, float* y, int64_t ldy,
              int Hy, int Wy, int ostep, int oy, int ox, const float* res, int64_t ldres, const float* bias,
              int relu, int accumulate, int rows, int nthreads) {
  if (N <= 0 || Ho <= 0 || Wo <= 0 || nob <= 0) return 0;
  if (stride < 1 || ostep < 1 || nthreads < 1) return -1;
  const Geo g{N, H, W, C, Ho, Wo, stride, order};
  const Segs S{ob_seg, dy, dx, c0, cn, idx_ofs, idx, ob_wofs, ob_out};
  const Out out{y, ldy, Hy, Wy, ostep, oy, ox};
  if (rows && nj == 1 && try_rows<1, RW1>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads))
    return 0;
  if (rows && nj == 2 && try_rows<2, RW2>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads))
    return 0;
  switch (nj) {
    case 4: run_fwd<4, RW4>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return 0;
    case 2: run_fwd<2, RW2>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return 0;
    case 1: run_fwd<1, RW1>(g, x, wp, nob, S, out, res, ldres, bias, relu, accumulate, nthreads); return 0;
  }
  return -2;
}

// Weight gradient (channel ranges only), any stride. dwp: the forward's packed layout.
int sconv_dw(const float* x, int N, int H, int W, int C, int Ho, int Wo, int stride, const float* dy,
             int64_t lddy, int nob, int nj, const int* ob_seg, const int* sdy, const int* sdx, const int* c0,
             const int* cn, const int* idx_ofs, const int64_t* ob_wofs, const int* ob_out, float* dwp,
             int nthreads) {
  if (stride < 1 || nthreads < 1) return -1;
  const Geo g{N, H, W, C, Ho, Wo, stride, 0};
  const Segs S{ob_seg, sdy, sdx, c0, cn, idx_ofs, nullptr, ob_wofs, ob_out};
  for (int s = 0; s < ob_seg[nob]; ++s)
    if (idx_ofs[s] >= 0) return -3;
  switch (nj) {
    case 4: run_dw<4, RW4>(g, x, dy, lddy, nob, S, dwp, nthreads); return 0;
    case 2: run_dw<2, RW2>(g, x, dy, lddy, nob, S, dwp, nthreads); return 0;
    case 1: run_dw<1, RW1>(g, x, dy, lddy, nob, S, dwp, nthreads); return 0;
  }
  return -2;
}

// ASK weight layouts for training, parallel over blocks. Per-shape weights w: (Cout_g, Cin, T) row-major.
// Forward packing: out[ob][t][c][j] = w[ob * ocb + j][c][t] (dir 0), or the inverse (dir 1: w from out).
void ask_pack_f32(float* w, int cout, int cin, int T, int ocb, float* out, int dir, int nthreads) {
  const int nob = cout / ocb;
  constexpr int CB = 16;
  const int ncb = (cin + CB - 1) / CB;
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int ob = 0; ob < nob; ++ob)
    for (int cb = 0; cb < ncb; ++cb) {
      const int cbeg = cb * CB, cend = std::min(cin, cbeg + CB);
      for (int j = 0; j < ocb; ++j) {
        float* src = w + ((int64_t)(ob * ocb + j) * cin) * T;
        for (int c = cbeg; c < cend; ++c)
          for (int t = 0; t < T; ++t) {
            float* o = out + (((int64_t)ob * T + t) * cin + c) * ocb + j;
            if (dir == 0) *o = src[(int64_t)c * T + t]; else src[(int64_t)c * T + t] = *o;
          }
      }
    }
}

// Backward-data packing of one shape group with taps `sel` (nsel of its T): out[cb][s0 + i][co][jt] =
// w[co][cb * ocbt + jt][sel[i]], where out has S segments per input block, each (gout x ocbt).
void ask_pack_bwd_f32(const float* w, int gout, int cin, int T, const int* sel, int nsel, int ocbt, int S, int s0,
                      float* out, int nthreads) {
  const int ncb = cin / ocbt;
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int cb = 0; cb < ncb; ++cb)
    for (int co = 0; co < gout; ++co) {
      const float* src = w + ((int64_t)co * cin + (int64_t)cb * ocbt) * T;
      for (int jt = 0; jt < ocbt; ++jt)
        for (int i = 0; i < nsel; ++i)
          out[(((int64_t)cb * S + s0 + i) * gout + co) * ocbt + jt] = src[(int64_t)jt * T + sel[i]];
    }
}

}  // extern "C"
