/* Exact top-k inner-product scan over rows stored in descending-norm order (see index_format/norm_scan.py).
 *
 * One call scores every query of a batch: for each query, rows are visited in stored order (or in the order of an
 * ascending `rows` filter) and the scan stops at the first row whose Cauchy-Schwarz bound ||q|| * norms[row] falls
 * below the current k-th best score, so no row after it can enter the top-k. The bound is checked before every row:
 * in C that costs one multiply and one compare per group of 8 rows, so the scan stops within 7 rows of the ideal
 * row instead of at the end of a numpy-sized block.
 * The top-k is a min-heap of size k. Several queries share each block of rows read from memory. The GIL is released
 * while scanning.
 *
 * Vectors may be unaligned (faiss's mapped codes start after its header): every load goes through an aligned(1)
 * vector type. On x86-64 the dot product is compiled twice (AVX2+FMA and baseline SSE) and picked at load time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v8sf __attribute__((vector_size(32)));
typedef float v8sf_u __attribute__((vector_size(32), aligned(1)));
typedef float f32_u __attribute__((aligned(1)));

/* On x86-64 the scan is compiled twice, for AVX2+FMA and for the baseline (SSE2), and picked at import by CPU
 * features. (GCC's target_clones("arch=haswell") dispatches on the CPU *model*: on an AMD EPYC with AVX2, FMA and
 * AVX-512 it ran the SSE2 clone.) */
#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX2_CLONE 1
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define HAVE_AVX2_CLONE 0
#endif

/* Slack on the bound: float32 rounding can make a computed score exceed the exact bound by a few ulps. */
static const double BOUND_SLACK = 1.0 + 1e-5;

static inline __attribute__((always_inline)) float hsum(v8sf a) {
    float s = 0.0f;
    for (int l = 0; l < 8; l++) s += a[l];
    return s;
}

static inline __attribute__((always_inline)) float dot(const float *q, const char *row, Py_ssize_t d) {
    const f32_u *x = (const f32_u *)row;
    v8sf acc = {0};
    Py_ssize_t j = 0;
    for (; j + 8 <= d; j += 8) acc += *(const v8sf *)(q + j) * *(const v8sf_u *)(x + j);
    float s = hsum(acc);
    for (; j < d; j++) s += q[j] * x[j];
    return s;
}

typedef int v8si __attribute__((vector_size(32)));

/* Lane-wise sums of pairs of lanes picked from two vectors (a generic shuffle: AVX on the haswell clone). */
static inline __attribute__((always_inline)) v8sf pair_sum(v8sf a, v8sf b, v8si even, v8si odd) {
    return __builtin_shuffle(a, b, even) + __builtin_shuffle(a, b, odd);
}

/* Eight rows at once: eight independent accumulator chains keep both FMA units busy (four chains are latency-bound
 * on 64 dimensions), and one transposing reduction turns the eight accumulators into the eight sums. With `next`
 * (the following 8 consecutive rows, 8 * d floats further; NULL: none), four cache lines of it are requested per
 * step of 8 dimensions, so the next group arrives evenly while this one is scored. Always inlined: a NULL `next`
 * is a constant at each call site and its branch compiles away. */
static inline __attribute__((always_inline)) void dot8(const float *q, const char *const r[8], Py_ssize_t d,
                                                       const char *next, float out[8]) {
    v8sf a[8] = {{0}};
    Py_ssize_t j = 0;
    for (; j + 8 <= d; j += 8) {
        if (next) {
            const char *line = next + j * 32;
            __builtin_prefetch(line, 0, 0);
            __builtin_prefetch(line + 64, 0, 0);
            __builtin_prefetch(line + 128, 0, 0);
            __builtin_prefetch(line + 192, 0, 0);
        }
        v8sf qv = *(const v8sf *)(q + j);
        for (int g = 0; g < 8; g++) a[g] += qv * *(const v8sf_u *)((const f32_u *)r[g] + j);
    }
    const v8si e1 = {0, 8, 2, 10, 4, 12, 6, 14}, o1 = {1, 9, 3, 11, 5, 13, 7, 15};
    const v8si e2 = {0, 1, 8, 9, 4, 5, 12, 13}, o2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const v8si e3 = {0, 1, 2, 3, 8, 9, 10, 11}, o3 = {4, 5, 6, 7, 12, 13, 14, 15};
    v8sf s01 = pair_sum(a[0], a[1], e1, o1), s23 = pair_sum(a[2], a[3], e1, o1);
    v8sf s45 = pair_sum(a[4], a[5], e1, o1), s67 = pair_sum(a[6], a[7], e1, o1);
    v8sf s0123 = pair_sum(s01, s23, e2, o2), s4567 = pair_sum(s45, s67, e2, o2);
    v8sf sums = pair_sum(s0123, s4567, e3, o3);
    for (int g = 0; g < 8; g++) out[g] = sums[g];
    for (; j < d; j++)
        for (int g = 0; g < 8; g++) out[g] += q[j] * ((const f32_u *)r[g])[j];
}

/* Min-heap of (score, row) keyed on score; among equal scores the larger row is "smaller" so that it is evicted
 * first, which keeps the earlier (larger-norm) row on ties. */
static inline int worse(float sa, int64_t ra, float sb, int64_t rb) { return sa < sb || (sa == sb && ra > rb); }

static inline __attribute__((always_inline)) void sift_down(float *hs, int64_t *hr, Py_ssize_t k, Py_ssize_t i) {
    for (;;) {
        Py_ssize_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && worse(hs[l], hr[l], hs[m], hr[m])) m = l;
        if (r < k && worse(hs[r], hr[r], hs[m], hr[m])) m = r;
        if (m == i) return;
        float ts = hs[i]; hs[i] = hs[m]; hs[m] = ts;
        int64_t tr = hr[i]; hr[i] = hr[m]; hr[m] = tr;
        i = m;
    }
}

static inline __attribute__((always_inline)) void sift_up(float *hs, int64_t *hr, Py_ssize_t i) {
    while (i > 0) {
        Py_ssize_t p = (i - 1) / 2;
        if (!worse(hs[i], hr[i], hs[p], hr[p])) return;
        float ts = hs[i]; hs[i] = hs[p]; hs[p] = ts;
        int64_t tr = hr[i]; hr[i] = hr[p]; hr[p] = tr;
        i = p;
    }
}

/* Heap contents → best first (score descending, then row ascending); pad to k with (-inf, -1). */
static void heap_to_sorted(float *hs, int64_t *hr, Py_ssize_t size, Py_ssize_t k) {
    for (Py_ssize_t end = size - 1; end > 0; end--) {
        float ts = hs[0]; hs[0] = hs[end]; hs[end] = ts;
        int64_t tr = hr[0]; hr[0] = hr[end]; hr[end] = tr;
        sift_down(hs, hr, end, 0);
    }
    for (Py_ssize_t i = size; i < k; i++) {
        hs[i] = -INFINITY;
        hr[i] = -1;
    }
}

/* The rows to scan: all N stored rows, or the ascending subset `rows` (n of them). */
typedef struct {
    const char *vectors;
    Py_ssize_t row_bytes, d;
    const float *norms;
    Py_ssize_t n_all, n;
    const int64_t *rows;
    int64_t offset; /* added to the row numbers written to the results (a delta segment's rows follow the main's) */
} Table;

/* One query's scan state; its heap lives in the caller's output rows. */
typedef struct {
    const float *q; /* private copy, readable as v8sf up to d rounded up to 8 */
    double qn;      /* ||q|| with slack */
    float *hs;
    int64_t *hr;
    Py_ssize_t k, size, scanned;
    float kth;
    int stopped;
} Query;

/* Scan positions [start, stop) of the table for one query, stopping (q->stopped) at the first group of 8 rows whose
 * bound is below the k-th best score. Returns -1 if a visited row breaks "strictly ascending within [0, n_all)": only
 * visited rows are read, so they are checked here (each against the one before it, so the visited prefix is valid). */
static inline __attribute__((always_inline)) int scan_range_body(const Table *t, Query *st, Py_ssize_t start,
                                                                  Py_ssize_t stop) {
    const int64_t *rows = t->rows;
    Py_ssize_t i = start, k = st->k;
    if (!rows) {
        /* Unfiltered: the eight rows are consecutive, and once the heap is full a group none of whose scores beats
         * the k-th best (most groups) is dropped with one vector compare. */
        const Py_ssize_t rb = t->row_bytes;
        while (i + 8 <= stop) {
            if (st->size == k && st->qn * (double)t->norms[i] < (double)st->kth) {
                st->stopped = 1;
                return 0;
            }
            const char *base = t->vectors + i * rb;
            const char *ptr[8] = {base,          base + rb,     base + 2 * rb, base + 3 * rb,
                                  base + 4 * rb, base + 5 * rb, base + 6 * rb, base + 7 * rb};
            float scores[8];
            /* Requesting the next group while scoring this one: each row is its own short stream (8 at once) that
             * the hardware prefetcher learns too late. Measured per single query, interleaved rounds (2026-12-02):
             * instacart (48,688 x 384, unit norms, whole table scanned) 6.8 -> 3.5 ms; synthetic 1M x 64
             * 327 -> 231 us; gowalla_als 12.8 -> 12.4 us. Two groups ahead: instacart 4.5 ms. */
            dot8(st->q, ptr, t->d, base + 8 * rb, scores);
            st->scanned += 8;
            if (st->size == k) {
                int beats = 0;
                for (int g = 0; g < 8; g++) beats |= scores[g] > st->kth;
                if (!beats) {
                    i += 8;
                    continue;
                }
            }
            for (int g = 0; g < 8; g++) {
                float s = scores[g];
                if (st->size < k) {
                    st->hs[st->size] = s;
                    st->hr[st->size] = i + g + t->offset;
                    sift_up(st->hs, st->hr, st->size);
                    st->size++;
                    if (st->size == k) st->kth = st->hs[0];
                } else if (s > st->kth) {
                    st->hs[0] = s;
                    st->hr[0] = i + g + t->offset;
                    sift_down(st->hs, st->hr, k, 0);
                    st->kth = st->hs[0];
                }
            }
            i += 8;
        }
    }
    while (i < stop) {
        Py_ssize_t count = stop - i < 8 ? stop - i : 8;
        int64_t group[8];
        const char *ptr[8];
        float scores[8];
        for (Py_ssize_t g = 0; g < count; g++) {
            int64_t row = (int64_t)(i + g);
            if (rows) {
                row = rows[i + g];
                if (row >= t->n_all || (i + g == 0 ? row < 0 : row <= rows[i + g - 1])) return -1;
            }
            group[g] = row;
            ptr[g] = t->vectors + row * t->row_bytes;
        }
        /* the bound of the group's first row covers the whole group and every row after it */
        if (st->size == k && st->qn * (double)t->norms[group[0]] < (double)st->kth) {
            st->stopped = 1;
            return 0;
        }
        if (count == 8) {
            dot8(st->q, ptr, t->d, NULL, scores);
        } else {
            for (Py_ssize_t g = 0; g < count; g++) scores[g] = dot(st->q, ptr[g], t->d);
        }
        for (Py_ssize_t g = 0; g < count; g++) {
            float s = scores[g];
            if (st->size < k) {
                st->hs[st->size] = s;
                st->hr[st->size] = group[g] + t->offset;
                sift_up(st->hs, st->hr, st->size);
                st->size++;
                if (st->size == k) st->kth = st->hs[0];
            } else if (s > st->kth) {
                st->hs[0] = s;
                st->hr[0] = group[g] + t->offset;
                sift_down(st->hs, st->hr, k, 0);
                st->kth = st->hs[0];
            }
        }
        st->scanned += count;
        i += count;
    }
    return 0;
}

static int scan_range_base(const Table *t, Query *st, Py_ssize_t start, Py_ssize_t stop) {
    return scan_range_body(t, st, start, stop);
}

#if HAVE_AVX2_CLONE
TARGET_AVX2 static int scan_range_avx2(const Table *t, Query *st, Py_ssize_t start, Py_ssize_t stop) {
    return scan_range_body(t, st, start, stop);
}
#endif

typedef int (*ScanRange)(const Table *, Query *, Py_ssize_t, Py_ssize_t);
static ScanRange scan_range = scan_range_base;
static const char *simd = "baseline";

static void pick_scan_range(void) {
#if HAVE_AVX2_CLONE
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        scan_range = scan_range_avx2;
        simd = "avx2+fma";
    }
#endif
}

/* One query's scan state over its own output rows: q copied into `copy` (padded with zeros to a multiple of 8 floats,
 * the only part read beyond d), its norm with slack. seeded: hs/hr already hold k results (row -1: a placeholder
 * whose score a row must beat), made a full heap at once, so the bound stops the scan at the first row that cannot
 * beat the k-th. */
static Query start_query(float *copy, const float *q, Py_ssize_t d, Py_ssize_t padded, float *hs, int64_t *hr,
                         Py_ssize_t k, int seeded) {
    memcpy(copy, q, (size_t)d * sizeof(float));
    memset(copy + d, 0, (size_t)(padded - d) * sizeof(float));
    double qn = 0.0;
    for (Py_ssize_t j = 0; j < d; j++) qn += (double)copy[j] * copy[j];
    Query st = {copy, sqrt(qn) * BOUND_SLACK, hs, hr, k, 0, 0, -INFINITY, 0};
    if (seeded) {
        for (Py_ssize_t j = 1; j < k; j++) sift_up(hs, hr, j);
        st.size = k;
        st.kth = hs[0];
    }
    return st;
}

/* The heap → best first, padded with (-inf, -1); placeholders left from seeding read as padding too. */
static void end_query(Query *st) {
    heap_to_sorted(st->hs, st->hr, st->size, st->k);
    for (Py_ssize_t j = st->k - 1; j >= 0 && st->hr[j] < 0; j--) st->hs[j] = -INFINITY;
}

/* Queries of a batch go through the rows together in blocks of ~BLOCK_BYTES, so a block read from memory serves
 * every query of the group that has not stopped yet (unit-norm data scans everything: one query at a time would
 * stream the whole matrix from memory once per query). */
#define BLOCK_BYTES 65536
#define GROUP_QUERIES 16

static int scan_group(const Table *t, Query *queries, Py_ssize_t count) {
    if (count == 1) return scan_range(t, &queries[0], 0, t->n);
    Py_ssize_t block = BLOCK_BYTES / t->row_bytes / 8 * 8; /* whole groups of 8: stops as in a single-query scan */
    if (block < 64) block = 64;
    for (Py_ssize_t start = 0; start < t->n; start += block) {
        Py_ssize_t stop = t->n - start < block ? t->n : start + block;
        int active = 0;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (queries[i].stopped) continue;
            if (scan_range(t, &queries[i], start, stop) < 0) return -1;
            active |= !queries[i].stopped;
        }
        if (!active) break;
    }
    return 0;
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t min_bytes, const char *name) {
    if (PyObject_GetBuffer(obj, view, writable ? (PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) : PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len < min_bytes) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, needs %zd", name, view->len, min_bytes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
             "scan(vectors, norms, queries, d, k, rows, out_scores, out_rows, seeded=False, offset=0) -> rows scored\n\n"
             "vectors: (N, d) float32 bytes; norms: (N,) float32; queries: (nq, d) float32; rows: None or (n,)\n"
             "ascending int64 row numbers (all < N, checked by the caller); out_scores (nq, k) float32 and out_rows\n"
             "(nq, k) int64 are filled best first, padded with -inf / -1. seeded: the out arrays already hold each\n"
             "query's k results to merge with (any order; row -1: a placeholder whose score a row must beat, e.g. a\n"
             "floor); scanned rows enter only by beating the k-th, and the scan stops as soon as none can. offset:\n"
             "added to the scanned rows' numbers in the results (ties between equal scores keep the lower number).");

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *vec_obj, *norm_obj, *q_obj, *rows_obj, *os_obj, *or_obj;
    Py_ssize_t d, k;
    int seeded = 0;
    long long offset = 0;
    if (!PyArg_ParseTuple(args, "OOOnnOOO|pL:scan", &vec_obj, &norm_obj, &q_obj, &d, &k, &rows_obj, &os_obj, &or_obj,
                          &seeded, &offset))
        return NULL;
    if (d <= 0 || k <= 0) {
        PyErr_SetString(PyExc_ValueError, "d and k must be positive");
        return NULL;
    }
    Py_buffer vec, nrm, qb, rb = {0}, osb, orb;
    if (get_buffer(vec_obj, &vec, 0, 0, "vectors") < 0) return NULL;
    Py_ssize_t n_all = vec.len / (d * (Py_ssize_t)sizeof(float));
    if (get_buffer(norm_obj, &nrm, 0, n_all * (Py_ssize_t)sizeof(float), "norms") < 0) goto fail_vec;
    if (get_buffer(q_obj, &qb, 0, 0, "queries") < 0) goto fail_nrm;
    Py_ssize_t nq = qb.len / (d * (Py_ssize_t)sizeof(float));
    const int64_t *rows = NULL;
    Py_ssize_t n = n_all;
    if (rows_obj != Py_None) {
        if (get_buffer(rows_obj, &rb, 0, 0, "rows") < 0) goto fail_q;
        rows = (const int64_t *)rb.buf;
        n = rb.len / (Py_ssize_t)sizeof(int64_t);
    }
    if (get_buffer(os_obj, &osb, 1, nq * k * (Py_ssize_t)sizeof(float), "out_scores") < 0) goto fail_rows;
    if (get_buffer(or_obj, &orb, 1, nq * k * (Py_ssize_t)sizeof(int64_t), "out_rows") < 0) goto fail_os;

    Py_ssize_t padded = (d + 7) / 8 * 8;
    float *copies = aligned_alloc(32, (size_t)(GROUP_QUERIES * padded) * sizeof(float));
    Query *group = malloc(GROUP_QUERIES * sizeof(Query));
    if (!copies || !group) {
        free(copies);
        free(group);
        PyErr_NoMemory();
        goto fail_or;
    }
    Table table = {(const char *)vec.buf, d * (Py_ssize_t)sizeof(float), d, (const float *)nrm.buf, n_all, n, rows,
                   (int64_t)offset};
    Py_ssize_t scanned = 0;
    int status = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t first = 0; first < nq && status == 0; first += GROUP_QUERIES) {
        Py_ssize_t count = nq - first < GROUP_QUERIES ? nq - first : GROUP_QUERIES;
        for (Py_ssize_t i = 0; i < count; i++)
            group[i] = start_query(copies + i * padded, (const float *)qb.buf + (first + i) * d, d, padded,
                                   (float *)osb.buf + (first + i) * k, (int64_t *)orb.buf + (first + i) * k, k, seeded);
        status = scan_group(&table, group, count);
        for (Py_ssize_t i = 0; i < count; i++) {
            end_query(&group[i]);
            scanned += group[i].scanned;
        }
    }
    Py_END_ALLOW_THREADS;
    free(copies);
    free(group);
    if (status < 0) {
        PyErr_Format(PyExc_ValueError, "rows must be strictly ascending row numbers in [0, %zd)", n_all);
        goto fail_or;
    }
    PyBuffer_Release(&orb);
    PyBuffer_Release(&osb);
    if (rows) PyBuffer_Release(&rb);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&nrm);
    PyBuffer_Release(&vec);
    return PyLong_FromSsize_t(scanned);

fail_or:
    PyBuffer_Release(&orb);
fail_os:
    PyBuffer_Release(&osb);
fail_rows:
    if (rows) PyBuffer_Release(&rb);
fail_q:
    PyBuffer_Release(&qb);
fail_nrm:
    PyBuffer_Release(&nrm);
fail_vec:
    PyBuffer_Release(&vec);
    return NULL;
}


PyDoc_STRVAR(finish_doc,
             "finish(rows, scores, k, hidden, vectors, norms, q, subset, offset, out_scores, out_rows) -> count\n\n"
             "One query's answer from what its main search fetched, in one call: rows (n,) int64 and scores (n,)\n"
             "float32 best first (row -1: padding); hidden: None or a (N_main,) bool mask of rows to drop; the first k\n"
             "kept rows go to out_scores / out_rows ((k,), writable); then, when vectors is not None, the delta\n"
             "segment (vectors (m, d) float32 by descending norm, norms (m,), q (d,), subset None or ascending rows)\n"
             "is merged in as scan(..., seeded=True, offset) does. Returns the results (a prefix; padding after), or\n"
             "-1 when the hidden rows left fewer than k of an unpadded fetch (search again around them).");

static PyObject *finish(PyObject *self, PyObject *args) {
    PyObject *rows_obj, *scores_obj, *hidden_obj, *vec_obj, *norm_obj, *q_obj, *subset_obj, *os_obj, *or_obj;
    Py_ssize_t k;
    long long offset;
    if (!PyArg_ParseTuple(args, "OOnOOOOOLOO:finish", &rows_obj, &scores_obj, &k, &hidden_obj, &vec_obj, &norm_obj,
                          &q_obj, &subset_obj, &offset, &os_obj, &or_obj))
        return NULL;
    if (k <= 0) {
        PyErr_SetString(PyExc_ValueError, "k must be positive");
        return NULL;
    }
    Py_buffer rb, sb, hb = {0}, osb, orb;
    if (get_buffer(rows_obj, &rb, 0, 0, "rows") < 0) return NULL;
    Py_ssize_t n = rb.len / (Py_ssize_t)sizeof(int64_t);
    if (get_buffer(scores_obj, &sb, 0, n * (Py_ssize_t)sizeof(float), "scores") < 0) goto fail_rows;
    int have_hidden = hidden_obj != Py_None;
    if (have_hidden && get_buffer(hidden_obj, &hb, 0, 0, "hidden") < 0) goto fail_scores;
    if (get_buffer(os_obj, &osb, 1, k * (Py_ssize_t)sizeof(float), "out_scores") < 0) goto fail_hidden;
    if (get_buffer(or_obj, &orb, 1, k * (Py_ssize_t)sizeof(int64_t), "out_rows") < 0) goto fail_os;

    const int64_t *rows = (const int64_t *)rb.buf;
    const float *scores = (const float *)sb.buf;
    const unsigned char *hidden = have_hidden ? (const unsigned char *)hb.buf : NULL;
    float *hs = (float *)osb.buf;
    int64_t *hr = (int64_t *)orb.buf;
    Py_ssize_t kept = 0, i = 0;
    int padded = 0;
    for (; i < n && kept < k; i++) {
        int64_t row = rows[i];
        if (row < 0) {
            padded = 1;
            break;
        }
        if (hidden && (row >= hb.len || hidden[row])) continue;
        hs[kept] = scores[i];
        hr[kept] = row;
        kept++;
    }
    Py_ssize_t result = kept;
    if (kept < k && !padded && n > 0 && i == n && rows[n - 1] >= 0 && hidden) {
        result = -1; /* hidden rows took places of an unpadded fetch: the caller searches again around them */
        goto done;
    }
    for (Py_ssize_t j = kept; j < k; j++) {
        hs[j] = -INFINITY;
        hr[j] = -1;
    }
    if (vec_obj != Py_None) {
        Py_buffer vb, nb, qb, subb = {0};
        if (get_buffer(q_obj, &qb, 0, 0, "q") < 0) goto fail_or;
        Py_ssize_t d = qb.len / (Py_ssize_t)sizeof(float);
        if (d <= 0 || get_buffer(vec_obj, &vb, 0, 0, "vectors") < 0) {
            if (d <= 0) PyErr_SetString(PyExc_ValueError, "q is empty");
            PyBuffer_Release(&qb);
            goto fail_or;
        }
        Py_ssize_t m = vb.len / (d * (Py_ssize_t)sizeof(float));
        if (get_buffer(norm_obj, &nb, 0, m * (Py_ssize_t)sizeof(float), "norms") < 0) {
            PyBuffer_Release(&vb);
            PyBuffer_Release(&qb);
            goto fail_or;
        }
        const int64_t *subset = NULL;
        Py_ssize_t count = m;
        if (subset_obj != Py_None) {
            if (get_buffer(subset_obj, &subb, 0, 0, "subset") < 0) {
                PyBuffer_Release(&nb);
                PyBuffer_Release(&vb);
                PyBuffer_Release(&qb);
                goto fail_or;
            }
            subset = (const int64_t *)subb.buf;
            count = subb.len / (Py_ssize_t)sizeof(int64_t);
        }
        Py_ssize_t pad = (d + 7) / 8 * 8;
        float *copy = aligned_alloc(32, (size_t)pad * sizeof(float));
        int status = 0;
        if (!copy) {
            PyErr_NoMemory();
            status = -2;
        } else {
            Table table = {(const char *)vb.buf, d * (Py_ssize_t)sizeof(float), d, (const float *)nb.buf, m, count,
                           subset, (int64_t)offset};
            Query st = start_query(copy, (const float *)qb.buf, d, pad, hs, hr, k, 1);
            status = scan_range(&table, &st, 0, count);
            end_query(&st);
            free(copy);
        }
        if (subset) PyBuffer_Release(&subb);
        PyBuffer_Release(&nb);
        PyBuffer_Release(&vb);
        PyBuffer_Release(&qb);
        if (status == -1) PyErr_Format(PyExc_ValueError, "subset must be strictly ascending rows in [0, %zd)", m);
        if (status < 0) goto fail_or;
        result = 0;
        while (result < k && hr[result] >= 0) result++;
    }
done:
    PyBuffer_Release(&orb);
    PyBuffer_Release(&osb);
    if (have_hidden) PyBuffer_Release(&hb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&rb);
    return PyLong_FromSsize_t(result);

fail_or:
    PyBuffer_Release(&orb);
fail_os:
    PyBuffer_Release(&osb);
fail_hidden:
    if (have_hidden) PyBuffer_Release(&hb);
fail_scores:
    PyBuffer_Release(&sb);
fail_rows:
    PyBuffer_Release(&rb);
    return NULL;
}

static PyMethodDef methods[] = {
    {"finish", finish, METH_VARARGS, finish_doc},
    {"scan", scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_norm_scan", "Exact norm-ordered top-k scan kernel.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__norm_scan(void) {
    pick_scan_range();
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddStringConstant(m, "simd", simd) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
