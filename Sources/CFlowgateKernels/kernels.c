/* Small-product and fused-epilogue kernels behind FlowgateCore's DenseKernels.
 *
 * The package is compiled for baseline x86-64 (SSE2); the epilogues here are compiled for
 * AVX2 + FMA per function (target attribute) and run only after a runtime CPU check, so the binary
 * still runs on any x86-64 (callers fall back to the Swift code when these return 0). */
#define _GNU_SOURCE
#include "flowgate_kernels.h"

#include <dlfcn.h>
#include <pthread.h>
#include <libxsmm.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define FGK_X86 1
#else
#define FGK_X86 0
#endif

/* ---- libxsmm ---------------------------------------------------------------------------- */

/* One dispatch at a time. libxsmm's registry may answer NULL to a thread that finds another one
 * generating code at the same moment, and a NULL sends that shape to OpenBLAS for good in the
 * caller's table: the same product would then round differently depending on which test or
 * worker thread dispatched first (a CI run's two-thread training test differed between runs).
 * Dispatch happens once per shape and table, so the lock costs nothing on the hot path; a NULL
 * is asked for again once. */
static pthread_mutex_t fgk_dispatch_lock = PTHREAD_MUTEX_INITIALIZER;
/* Set (under the lock) once a kernel was dispatched: from then on libxsmm must never be
 * finalised (fgk_xsmm_init_compact), since its kernels live in memory it owns. */
static int fgk_dispatched = 0;

const void *fgk_xsmm_dispatch(int m, int n, int k, int lda, int ldb, int ldc, float beta) {
    const float alpha = 1;
    const int flags = LIBXSMM_GEMM_FLAG_NONE;
    const int prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
    pthread_mutex_lock(&fgk_dispatch_lock);
    fgk_dispatched = 1;
    libxsmm_smmfunction f = libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, &prefetch);
    if (f == NULL) f = libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, &prefetch);
    pthread_mutex_unlock(&fgk_dispatch_lock);
    return (const void *)f;
}

void fgk_xsmm_run(const void *kernel, const float *a, const float *b, float *c) {
    ((libxsmm_smmfunction)kernel)(a, b, c);
}

/* ---- libxsmm's start-up memory ----------------------------------------------------------- */

/* The anonymous private read-write mappings of this process, sorted by start. Returns the count
 * written (at most `capacity`), or -1 when /proc/self/maps cannot be read. */
static long fgk_anonymous_mappings(uintptr_t *starts, uintptr_t *ends, long capacity) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) return -1;
    char line[512];
    long n = 0;
    while (n < capacity && fgets(line, sizeof line, f) != NULL) {
        unsigned long a, b, offset, inode;
        char perm[8], dev[32];
        int used = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %31s %lu%n", &a, &b, perm, &offset, dev, &inode, &used) != 6) continue;
        if (inode != 0 || strcmp(perm, "rw-p") != 0) continue;
        /* Unnamed only: [heap] and [stack] are the process's own (the heap may grow meanwhile). */
        const char *name = line + used;
        while (*name == ' ' || *name == '\t') name++;
        if (*name != '\n' && *name != 0) continue;
        starts[n] = a;
        ends[n] = b;
        n++;
    }
    fclose(f);
    return n;
}

long fgk_release_zero_pages(void *start, long length) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || ((uintptr_t)start % (uintptr_t)page) != 0 || length < 0) return -1;
    const long pages = length / page;
    unsigned char resident[4096];
    long released = 0;
    for (long first = 0; first < pages; first += (long)sizeof resident) {
        const long chunk = pages - first < (long)sizeof resident ? pages - first : (long)sizeof resident;
        unsigned char *base = (unsigned char *)start + first * page;
        if (mincore(base, (size_t)(chunk * page), resident) != 0) return -1;
        for (long i = 0; i < chunk; i++) {
            if ((resident[i] & 1) == 0) continue; /* never touched: reading it would fault it in */
            const uint64_t *words = (const uint64_t *)(base + i * page);
            uint64_t any = 0;
            for (long w = 0; w < page / 8; w++) any |= words[w];
            if (any != 0) continue;
            /* A private anonymous page dropped with MADV_DONTNEED reads back as zeros: the same
             * contents, without the memory. */
            if (madvise(base + i * page, (size_t)page, MADV_DONTNEED) == 0) released += page;
        }
    }
    return released;
}

long fgk_xsmm_init_compact(void) {
    enum { capacity = 4096 };
    static uintptr_t before_start[capacity], before_end[capacity], after_start[capacity], after_end[capacity];
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static long done = 0;
    pthread_mutex_lock(&lock);
    if (done) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    done = 1;
    /* libxsmm initialises itself in a constructor when the program loads; with nothing dispatched
     * yet, finalising and initialising again reallocates its tables inside the window below. */
    pthread_mutex_lock(&fgk_dispatch_lock);
    if (fgk_dispatched) {
        /* Kernels are in use: their code and registry stay as they are. */
        pthread_mutex_unlock(&fgk_dispatch_lock);
        pthread_mutex_unlock(&lock);
        return 0;
    }
    libxsmm_finalize();
    const long nb = fgk_anonymous_mappings(before_start, before_end, capacity);
    libxsmm_init();
    const long na = fgk_anonymous_mappings(after_start, after_end, capacity);
    /* Still under the dispatch lock: no kernel can be registered (a write into the tables)
     * between a page's check and its release. */
    long released = 0;
    if (nb >= 0 && na >= 0) {
        for (long i = 0; i < na; i++) {
            /* Only mappings libxsmm_init made (not there, with these bounds, before it). */
            int existed = 0;
            for (long j = 0; j < nb && !existed; j++) existed = before_start[j] == after_start[i] && before_end[j] == after_end[i];
            if (existed || after_end[i] - after_start[i] < (1u << 20)) continue;
            /* libxsmm locks its tables in memory (mlock), and locked pages cannot be released:
             * unlock them first (the contents stay; the pages that are not zero stay resident). */
            munlock((void *)after_start[i], (size_t)(after_end[i] - after_start[i]));
            const long r = fgk_release_zero_pages((void *)after_start[i], (long)(after_end[i] - after_start[i]));
            if (r > 0) released += r;
        }
    }
    pthread_mutex_unlock(&fgk_dispatch_lock);
    pthread_mutex_unlock(&lock);
    return released;
}

/* ---- CPU check -------------------------------------------------------------------------- */

int fgk_has_avx2_fma(void) {
#if FGK_X86
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 0;
#endif
}

/* ---- AVX2 + FMA epilogues --------------------------------------------------------------- */
#if FGK_X86
#define FGK_AVX2 __attribute__((target("avx2,fma")))

/* e^x on eight lanes: Cephes expf (the same range reduction and polynomial as the Swift
 * SIMDMath.exp), x clamped to [-87.33654, 88.376]. */
static inline FGK_AVX2 __m256 fgk_exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.376f));
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shifter);
    __m256 n = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000)), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

static inline FGK_AVX2 __m256 fgk_sigmoid8(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, fgk_exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

/* Mask of the first `count` (0..8) lanes, for the tails. */
static inline FGK_AVX2 __m256i fgk_tail_mask(long count) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), lanes);
}

static inline FGK_AVX2 __m256 fgk_apply(int act, __m256 v) {
    switch (act) {
    case FGK_RELU: return _mm256_max_ps(v, _mm256_setzero_ps());
    case FGK_SILU: return _mm256_mul_ps(v, fgk_sigmoid8(v));
    default: return v;
    }
}

static FGK_AVX2 void fgk_bias_act_avx2(int act, float *z, const float *bias, float *h, long rows, long width) {
    for (long r = 0; r < rows; r++) {
        float *zr = z + r * width, *hr = h + r * width;
        long j = 0;
        for (; j + 8 <= width; j += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(zr + j), _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(zr + j, v);
            _mm256_storeu_ps(hr + j, fgk_apply(act, v));
        }
        if (j < width) {
            __m256i m = fgk_tail_mask(width - j);
            __m256 v = _mm256_add_ps(_mm256_maskload_ps(zr + j, m), _mm256_maskload_ps(bias + j, m));
            _mm256_maskstore_ps(zr + j, m, v);
            _mm256_maskstore_ps(hr + j, m, fgk_apply(act, v));
        }
    }
}

static inline FGK_AVX2 __m256 fgk_derivative_times(int act, __m256 v, __m256 g) {
    if (act == FGK_RELU) {
        return _mm256_and_ps(g, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
    }
    /* SiLU: g · s · (1 + v · (1 − s)) */
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = fgk_sigmoid8(v);
    return _mm256_mul_ps(_mm256_mul_ps(g, s), _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
}

static FGK_AVX2 void fgk_act_backward_avx2(int act, const float *z, const float *dy, float *dx, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        _mm256_storeu_ps(dx + i, fgk_derivative_times(act, _mm256_loadu_ps(z + i), _mm256_loadu_ps(dy + i)));
    }
    if (i < count) {
        __m256i m = fgk_tail_mask(count - i);
        __m256 out = fgk_derivative_times(act, _mm256_maskload_ps(z + i, m), _mm256_maskload_ps(dy + i, m));
        _mm256_maskstore_ps(dx + i, m, out);
    }
}
#endif

int fgk_bias_act(int act, float *z, const float *bias, float *h, long rows, long width) {
#if FGK_X86
    if (act < FGK_IDENTITY || act > FGK_SILU || !fgk_has_avx2_fma()) return 0;
    fgk_bias_act_avx2(act, z, bias, h, rows, width);
    return 1;
#else
    (void)act; (void)z; (void)bias; (void)h; (void)rows; (void)width;
    return 0;
#endif
}

int fgk_act_backward(int act, const float *z, const float *dy, float *dx, long count) {
#if FGK_X86
    if ((act != FGK_RELU && act != FGK_SILU) || !fgk_has_avx2_fma()) return 0;
    fgk_act_backward_avx2(act, z, dy, dx, count);
    return 1;
#else
    (void)act; (void)z; (void)dy; (void)dx; (void)count;
    return 0;
#endif
}

/* ---- BLIS (benchmark only) -------------------------------------------------------------- */

typedef void (*fgk_bli_sgemm_fn)(int, int, long, long, long, const float *, const float *, long, long,
                                 const float *, long, long, const float *, float *, long, long);
static fgk_bli_sgemm_fn fgk_bli_sgemm;
/* BLIS's trans_t values (blis.h: BLIS_NO_TRANSPOSE = 0, BLIS_TRANSPOSE = BLIS_BITVAL_TRANS = 0x08). */
enum { FGK_BLIS_NO_TRANSPOSE = 0x0, FGK_BLIS_TRANSPOSE = 0x08 };

int fgk_blis_load(char *err, size_t errlen) {
    if (fgk_bli_sgemm) return 1;
    static const char *const names[] = {"libblis.so.4", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4",
                                        "/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4",
                                        "/usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4"};
    void *handle = NULL;
    const char *last = "not found";
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !handle; i++) {
        handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!handle) last = dlerror();
    }
    if (!handle) {
        snprintf(err, errlen, "cannot load BLIS (apt-get install libblis-dev): %s", last);
        return 0;
    }
    void (*set_threads)(long) = (void (*)(long))dlsym(handle, "bli_thread_set_num_threads");
    fgk_bli_sgemm_fn f = (fgk_bli_sgemm_fn)dlsym(handle, "bli_sgemm");
    if (!f || !set_threads) {
        snprintf(err, errlen, "BLIS library lacks bli_sgemm or bli_thread_set_num_threads");
        return 0;
    }
    set_threads(1);
    fgk_bli_sgemm = f;
    return 1;
}

void fgk_blis_sgemm(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                    const float *b, long ldb, float beta, float *c, long ldc) {
    /* Row-major: row stride = leading dimension, column stride 1. */
    fgk_bli_sgemm(transA ? FGK_BLIS_TRANSPOSE : FGK_BLIS_NO_TRANSPOSE, transB ? FGK_BLIS_TRANSPOSE : FGK_BLIS_NO_TRANSPOSE,
                  m, n, k, &alpha, a, lda, 1, b, ldb, 1, &beta, c, ldc, 1);
}

const char *fgk_library_of(const void *address) {
    Dl_info info;
    if (address && dladdr(address, &info) && info.dli_fname) return info.dli_fname;
    return "?";
}

const void *fgk_blis_entry(void) { return (const void *)fgk_bli_sgemm; }
const void *fgk_xsmm_entry(void) { return (const void *)&libxsmm_smmdispatch; }
const void *fgk_openblas_entry(void) { return dlsym(RTLD_DEFAULT, "cblas_sgemm"); }
