#ifndef FLOWGATE_KERNELS_H
#define FLOWGATE_KERNELS_H
/* Small-product and fused-epilogue kernels behind FlowgateCore's DenseKernels (docs/architecture.md).
 * All matrices are column-major here (libxsmm's convention); the Swift side maps its row-major
 * products onto them. */
#include <stddef.h>

/* Activation codes shared with Swift (FlowgateCore.DenseKernels.activationCode). */
enum { FGK_IDENTITY = 0, FGK_RELU = 1, FGK_SILU = 2 };

/* libxsmm JIT kernel for C(m×n) = A(m×k)·B(k×n) + beta·C, no transposes, column-major, with the
 * given leading dimensions; NULL when libxsmm cannot generate one. Thread-safe (libxsmm locks its
 * code registry); callers cache the result per shape. */
const void *fgk_xsmm_dispatch(int m, int n, int k, int lda, int ldb, int ldc, float beta);
/* Initialises libxsmm (once per process; later calls do nothing and return 0), then hands back
 * to the kernel the pages of the mappings libxsmm_init made that hold only zeros: its dispatch
 * registry and descriptor keys are fixed-size tables (8 MB of keys for 131072 entries, cleared at
 * start) of which a server fills a few dozen entries. Returns the bytes released, or 0. Call it
 * before other threads run: a write to such a page between its check and its release would be
 * lost. */
long fgk_xsmm_init_compact(void);

/* Drops the resident pages of [start, start + length) (page-aligned, private anonymous memory)
 * that hold only zeros, with madvise(MADV_DONTNEED): they read back as zeros. Pages never touched
 * are not read. Returns the bytes released, or -1 (misaligned start, mincore failure). */
long fgk_release_zero_pages(void *start, long length);

/* Runs a kernel from fgk_xsmm_dispatch. */
void fgk_xsmm_run(const void *kernel, const float *a, const float *b, float *c);

/* 1 when this CPU has AVX2 and FMA (the fused epilogues below run only then). */
int fgk_has_avx2_fma(void);

/* Per row of z (rows × width, row-major): z += bias, then h = act(z) (h may equal z).
 * Returns 0, touching nothing, when the CPU lacks AVX2/FMA or the code is unknown. */
int fgk_bias_act(int act, float *z, const float *bias, float *h, long rows, long width);

/* dx[i] = dy[i] · act'(z[i]) (dx may equal dy). Returns 0, touching nothing, when the CPU lacks
 * AVX2/FMA or the code is unknown. */
int fgk_act_backward(int act, const float *z, const float *dy, float *dx, long count);

/* BLIS, for `flowgate bench kernels` only: loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) so that
 * its BLAS symbols (sgemm_, cblas_sgemm) never replace OpenBLAS's in this process. Returns 1 when
 * loaded (single-threaded), else 0 with a message in err. */
int fgk_blis_load(char *err, size_t errlen);
/* Row-major C = alpha·op(A)·op(B) + beta·C through bli_sgemm (typed API, general strides). */
void fgk_blis_sgemm(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                    const float *b, long ldb, float beta, float *c, long ldc);

/* The shared object (path) that defines the code at `address`, via dladdr; "?" when unknown. For
 * the benchmark's proof that each library is really the one called. */
const char *fgk_library_of(const void *address);
/* Addresses of the entry points each benchmark column calls. */
const void *fgk_blis_entry(void);
const void *fgk_xsmm_entry(void);
const void *fgk_openblas_entry(void);

#endif
