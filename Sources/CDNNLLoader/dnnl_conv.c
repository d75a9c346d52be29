// 2-D convolutions through oneDNN (libdnnl.so.2, the library PyTorch itself uses for CPU
// convolutions), loaded at run time with dlopen so that DistillKit still runs where it is
// missing (Conv.swift then uses its im2col + BLAS path).
//
// The caller hands plain NCHW/OIHW arrays; each primitive is created once per shape and kind
// (with the layouts oneDNN prefers, `format_tag_any`) and kept, and the arrays are reordered
// into and out of those layouts around each call, in per-thread scratch buffers. Every call
// runs on the calling thread alone (OpenMP limited to one thread): DistillKit splits the batch
// across its own workers, so that results depend on the chunking only, never on thread timing.
#define _GNU_SOURCE
#include "dnnl_conv.h"
#include "dk_cpu.h"
#include "dk_max_pool_train.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>

// The entry points used, resolved with dlsym (the names are oneDNN's own).
#define DNNL_FUNCTIONS(X)                                                                       \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_memory_desc_init_by_tag) \
    X(dnnl_memory_desc_equal) X(dnnl_memory_desc_get_size) X(dnnl_memory_create)                  \
    X(dnnl_memory_destroy) X(dnnl_dilated_convolution_forward_desc_init)                          \
    X(dnnl_dilated_convolution_backward_data_desc_init)                                            \
    X(dnnl_dilated_convolution_backward_weights_desc_init) X(dnnl_primitive_attr_create)          \
    X(dnnl_primitive_attr_destroy) X(dnnl_primitive_attr_set_scratchpad_mode)                     \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) X(dnnl_primitive_desc_query)     \
    X(dnnl_primitive_desc_query_md) X(dnnl_reorder_primitive_desc_create) X(dnnl_primitive_create) \
    X(dnnl_primitive_destroy) X(dnnl_primitive_execute) X(dnnl_version)

#define DECLARE_POINTER(name) static __typeof__(name) *p_##name;
DNNL_FUNCTIONS(DECLARE_POINTER)
#undef DECLARE_POINTER
static void (*p_omp_set_num_threads)(int);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static char description[256] = "oneDNN not loaded yet";
static dnnl_engine_t engine;

static void load_once(void) {
    // DISTILL_MAX_CPU_ISA (dk_cpu.h) reaches oneDNN's JIT through its own variable, read when
    // its first primitive is made; a value the user set is left as is.
    const int limit = dk_cpu_isa_limit();
    const char *user = getenv("ONEDNN_MAX_CPU_ISA");
    if ((limit == 0 || limit == 1) && !(user && *user)) setenv("ONEDNN_MAX_CPU_ISA", limit == 1 ? "AVX2" : "SSE41", 1);
    void *handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(description, sizeof description,
                 "oneDNN could not be loaded (%s); install it with: apt-get install libdnnl2", dlerror());
        return;
    }
#define RESOLVE(name)                                                                            \
    p_##name = (__typeof__(name) *)dlsym(handle, #name);                                         \
    if (!p_##name) {                                                                             \
        snprintf(description, sizeof description, "the loaded oneDNN has no %s", #name);       \
        return;                                                                                  \
    }
    DNNL_FUNCTIONS(RESOLVE)
#undef RESOLVE
    // oneDNN's OpenMP runtime (absent in a sequential build: then there is nothing to limit).
    p_omp_set_num_threads = (void (*)(int))dlsym(handle, "omp_set_num_threads");
    const dnnl_version_t *v = p_dnnl_version();
    if (v->major != 2) {
        snprintf(description, sizeof description, "oneDNN %d.%d.%d found; DistillKit uses the 2.x API",
                 v->major, v->minor, v->patch);
        return;
    }
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        snprintf(description, sizeof description, "oneDNN %d.%d.%d: no CPU engine", v->major, v->minor, v->patch);
        return;
    }
    snprintf(description, sizeof description, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    loaded = 1;
}

int dk_dnnl_load(char *message, int capacity) {
    pthread_once(&once, load_once);
    if (!loaded && message && capacity > 0) snprintf(message, (size_t)capacity, "%s", description);
    return loaded ? 0 : -1;
}

const char *dk_dnnl_description(void) {
    pthread_once(&once, load_once);
    return description;
}

// ---- Per-thread state: a stream and scratch buffers that only grow ------------------------------

enum { kSlots = 6 };
static __thread dnnl_stream_t thread_stream;
static __thread void *thread_slot[kSlots];
static __thread size_t thread_slot_size[kSlots];

static void *scratch(int slot, size_t bytes) {
    if (bytes > thread_slot_size[slot]) {
        free(thread_slot[slot]);
        size_t rounded = (bytes + 4095) & ~(size_t)4095;
        thread_slot[slot] = aligned_alloc(64, rounded);
        thread_slot_size[slot] = thread_slot[slot] ? rounded : 0;
    }
    return thread_slot[slot];
}

// ---- Primitives, created once per shape and kind -------------------------------------------------

enum kind { kForward, kForwardBias, kBackwardData, kBackwardWeights, kBackwardWeightsBias };
enum { kMaxArgs = 4 };

/// One argument of a primitive: the caller's plain layout, the primitive's own, and the reorder
/// between them (into the primitive's for inputs, out of it for outputs) when they differ.
typedef struct {
    int id, is_output;
    dnnl_memory_desc_t user, inner;
    dnnl_primitive_t reorder;
} argument;

typedef struct entry {
    dk_dnnl_shape shape;
    enum kind kind;
    dnnl_primitive_t primitive;  // NULL: oneDNN cannot run this (kept so it is not retried)
    dnnl_memory_desc_t scratchpad;
    argument args[kMaxArgs];
    int count;
    const char *implementation;
    struct entry *next;
} entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *cache;

static void plain(dnnl_memory_desc_t *md, int ndims, dnnl_dim_t a, dnnl_dim_t b, dnnl_dim_t c, dnnl_dim_t d,
                  dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, d};
    p_dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag);
}

/// The descriptors of a convolution's source, weights, bias and destination for `s`: activations
/// (source and destination) in layout `activations`, weights in layout `weight_layout`.
static void conv_descriptors(const dk_dnnl_shape *s, dnnl_format_tag_t activations, dnnl_format_tag_t weight_layout,
                             dnnl_memory_desc_t *src, dnnl_memory_desc_t *weights, dnnl_memory_desc_t *bias,
                             dnnl_memory_desc_t *dst) {
    plain(src, 4, s->n, s->c, s->h, s->w, activations);
    plain(weights, 4, s->o, s->c, s->r, s->s, weight_layout);
    plain(bias, 1, s->o, 0, 0, 0, dnnl_x);
    plain(dst, 4, s->n, s->o, s->p, s->q, activations);
}

/// Fills `arg` for argument `id` of `pd`; 0 on success.
static int add_argument(entry *e, const_dnnl_primitive_desc_t pd, int id, int is_output, const dnnl_memory_desc_t *user) {
    argument *a = &e->args[e->count++];
    a->id = id;
    a->is_output = is_output;
    a->user = *user;
    const dnnl_memory_desc_t *inner = p_dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, id);
    if (!inner) return -1;
    a->inner = *inner;
    a->reorder = NULL;
    if (p_dnnl_memory_desc_equal(&a->user, &a->inner)) return 0;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = is_output ? &a->inner : &a->user, *to = is_output ? &a->user : &a->inner;
    if (p_dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL) != dnnl_success) return -1;
    int status = p_dnnl_primitive_create(&a->reorder, rpd);
    p_dnnl_primitive_desc_destroy(rpd);
    return status == dnnl_success ? 0 : -1;
}

/// The forward primitive descriptor of `s` (format `any`), also the hint for the backward ones.
static dnnl_primitive_desc_t forward_descriptor(const dk_dnnl_shape *s, int bias, const_dnnl_primitive_attr_t attr) {
    dnnl_memory_desc_t src, weights, bias_md, dst;
    conv_descriptors(s, dnnl_format_tag_any, dnnl_format_tag_any, &src, &weights, &bias_md, &dst);
    dnnl_dims_t strides = {s->stride_h, s->stride_w}, dilation = {s->dilation_h - 1, s->dilation_w - 1};
    dnnl_dims_t padding = {s->pad_h, s->pad_w};
    dnnl_convolution_desc_t d;
    if (p_dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct, &src, &weights,
                                                     bias ? &bias_md : NULL, &dst, strides, dilation, padding,
                                                     padding) != dnnl_success)
        return NULL;
    dnnl_primitive_desc_t pd;
    return p_dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL) == dnnl_success ? pd : NULL;
}

static void build(entry *e) {
    // oneDNN sizes a primitive's work split for the OpenMP threads it sees when the primitive is
    // created (the weight gradient's reduction, for one): one, as every call runs on one thread.
    // Created for two and run on one, the weight gradient took 2.7 times as long (measured).
    if (p_omp_set_num_threads) p_omp_set_num_threads(1);
    const dk_dnnl_shape *s = &e->shape;
    dnnl_primitive_attr_t attr;
    if (p_dnnl_primitive_attr_create(&attr) != dnnl_success) return;
    p_dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    dnnl_memory_desc_t src, weights, bias, dst, src_any, weights_any, bias_any, dst_any;
    conv_descriptors(s, dnnl_nchw, dnnl_oihw, &src, &weights, &bias, &dst);
    conv_descriptors(s, dnnl_format_tag_any, dnnl_format_tag_any, &src_any, &weights_any, &bias_any, &dst_any);
    dnnl_dims_t strides = {s->stride_h, s->stride_w}, dilation = {s->dilation_h - 1, s->dilation_w - 1};
    dnnl_dims_t padding = {s->pad_h, s->pad_w};
    int with_bias = e->kind == kForwardBias || e->kind == kBackwardWeightsBias;
    dnnl_primitive_desc_t pd = NULL, hint = NULL;
    dnnl_convolution_desc_t d;
    int ok = 1;
    if (e->kind == kForward || e->kind == kForwardBias) {
        pd = forward_descriptor(s, with_bias, attr);
        ok = pd && add_argument(e, pd, DNNL_ARG_SRC, 0, &src) == 0 && add_argument(e, pd, DNNL_ARG_WEIGHTS, 0, &weights) == 0
             && (!with_bias || add_argument(e, pd, DNNL_ARG_BIAS, 0, &bias) == 0)
             && add_argument(e, pd, DNNL_ARG_DST, 1, &dst) == 0;
    } else {
        hint = forward_descriptor(s, with_bias, NULL);
        if (e->kind == kBackwardData) {
            ok = hint && p_dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &src_any, &weights_any,
                                                                            &dst_any, strides, dilation, padding, padding) == dnnl_success
                 && p_dnnl_primitive_desc_create(&pd, &d, attr, engine, hint) == dnnl_success;
            ok = ok && add_argument(e, pd, DNNL_ARG_DIFF_DST, 0, &dst) == 0 && add_argument(e, pd, DNNL_ARG_WEIGHTS, 0, &weights) == 0
                 && add_argument(e, pd, DNNL_ARG_DIFF_SRC, 1, &src) == 0;
        } else {
            ok = hint && p_dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &src_any, &weights_any,
                                                                               with_bias ? &bias_any : NULL, &dst_any, strides, dilation,
                                                                               padding, padding) == dnnl_success
                 && p_dnnl_primitive_desc_create(&pd, &d, attr, engine, hint) == dnnl_success;
            ok = ok && add_argument(e, pd, DNNL_ARG_DIFF_DST, 0, &dst) == 0 && add_argument(e, pd, DNNL_ARG_SRC, 0, &src) == 0
                 && add_argument(e, pd, DNNL_ARG_DIFF_WEIGHTS, 1, &weights) == 0
                 && (!with_bias || add_argument(e, pd, DNNL_ARG_DIFF_BIAS, 1, &bias) == 0);
        }
    }
    if (ok) {
        const dnnl_memory_desc_t *pad = p_dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        const char *name = NULL;
        p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
        e->implementation = name ? strdup(name) : "unknown";
        if (pad) e->scratchpad = *pad; else memset(&e->scratchpad, 0, sizeof e->scratchpad);
        if (p_dnnl_primitive_create(&e->primitive, pd) != dnnl_success) e->primitive = NULL;
    }
    if (pd) p_dnnl_primitive_desc_destroy(pd);
    if (hint) p_dnnl_primitive_desc_destroy(hint);
    p_dnnl_primitive_attr_destroy(attr);
}

/// The cached primitive for (shape, kind), built on first use; NULL when oneDNN cannot run it.
static entry *lookup(const dk_dnnl_shape *s, enum kind kind) {
    if (dk_dnnl_load(NULL, 0) != 0) return NULL;
    pthread_mutex_lock(&cache_lock);
    entry *e = cache;
    while (e && !(e->kind == kind && memcmp(&e->shape, s, sizeof *s) == 0)) e = e->next;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (e) {
            e->shape = *s;
            e->kind = kind;
            build(e);
            e->next = cache;
            cache = e;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return e && e->primitive ? e : NULL;
}

/// Runs `e` on this thread with the caller's arrays `pointers` (in `e->args` order, plain
/// layouts); an argument whose layout differs goes through this thread's scratch slot i. Bit i of
/// `ready`: argument i is already in its primitive layout in that slot (the backward passes share
/// the output gradient's); an output with a NULL pointer is left there, in the primitive's layout.
static int run(const entry *e, void *const *pointers, unsigned ready) {
    if (p_omp_set_num_threads) p_omp_set_num_threads(1);
    if (!thread_stream && p_dnnl_stream_create(&thread_stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        thread_stream = NULL;
        return -1;
    }
    dnnl_memory_t user[kMaxArgs] = {0}, inner[kMaxArgs] = {0}, pad = NULL;
    dnnl_exec_arg_t exec[kMaxArgs + 1];
    int status = 0;
    for (int i = 0; i < e->count && status == 0; i++) {
        const argument *a = &e->args[i];
        if (pointers[i]) status |= p_dnnl_memory_create(&user[i], &a->user, engine, pointers[i]) != dnnl_success;
        if (a->reorder && status == 0) {
            void *buffer = scratch(i, p_dnnl_memory_desc_get_size(&a->inner));
            status |= !buffer || p_dnnl_memory_create(&inner[i], &a->inner, engine, buffer) != dnnl_success;
            if (status == 0 && !a->is_output && !(ready & (1u << i))) {
                dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, user[i]}, {DNNL_ARG_TO, inner[i]}};
                status |= !user[i] || p_dnnl_primitive_execute(a->reorder, thread_stream, 2, r) != dnnl_success;
            }
        }
        exec[i].arg = a->id;
        exec[i].memory = inner[i] ? inner[i] : user[i];
        status |= !exec[i].memory;
    }
    int count = e->count;
    size_t pad_size = p_dnnl_memory_desc_get_size(&e->scratchpad);
    if (status == 0 && pad_size > 0) {
        void *buffer = scratch(kSlots - 1, pad_size);
        status |= !buffer || p_dnnl_memory_create(&pad, &e->scratchpad, engine, buffer) != dnnl_success;
        exec[count].arg = DNNL_ARG_SCRATCHPAD;
        exec[count].memory = pad;
        count++;
    }
    if (status == 0) status |= p_dnnl_primitive_execute(e->primitive, thread_stream, count, exec) != dnnl_success;
    for (int i = 0; i < e->count && status == 0; i++) {
        const argument *a = &e->args[i];
        if (!a->reorder || !a->is_output || !user[i]) continue;
        dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, inner[i]}, {DNNL_ARG_TO, user[i]}};
        status |= p_dnnl_primitive_execute(a->reorder, thread_stream, 2, r) != dnnl_success;
    }
    if (status == 0) status |= p_dnnl_stream_wait(thread_stream) != dnnl_success;
    for (int i = 0; i < e->count; i++) {
        if (user[i]) p_dnnl_memory_destroy(user[i]);
        if (inner[i]) p_dnnl_memory_destroy(inner[i]);
    }
    if (pad) p_dnnl_memory_destroy(pad);
    return status ? -1 : 0;
}

const char *dk_dnnl_forward_implementation(const dk_dnnl_shape *shape) {
    entry *e = lookup(shape, kForwardBias);
    return e ? e->implementation : NULL;
}

int dk_dnnl_conv_forward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *bias, float *dst) {
    entry *e = lookup(shape, bias ? kForwardBias : kForward);
    if (!e) return -1;
    // Arguments in `build`'s order: src, weights, [bias,] dst.
    void *pointers[4] = {(void *)src, (void *)weights, bias ? (void *)bias : dst, dst};
    return run(e, pointers, 0);
}

int dk_dnnl_conv_backward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *diff_dst,
                          float *diff_src, float *diff_weights, float *diff_bias) {
    entry *data = diff_src ? lookup(shape, kBackwardData) : NULL;
    entry *grads = diff_weights ? lookup(shape, diff_bias ? kBackwardWeightsBias : kBackwardWeights) : NULL;
    if ((diff_src && !data) || (diff_weights && !grads)) return -1;
    if (data) {
        void *pointers[3] = {(void *)diff_dst, (void *)weights, diff_src};
        if (run(data, pointers, 0) != 0) return -1;
    }
    if (grads) {
        // diff_dst is argument 0 of both: when both passes want it in the same blocked layout,
        // the data pass's reorder (still in scratch slot 0) serves this one too.
        const argument *mine = &grads->args[0], *theirs = data ? &data->args[0] : NULL;
        const unsigned shared = theirs && mine->reorder && theirs->reorder && p_dnnl_memory_desc_equal(&mine->inner, &theirs->inner);
        void *pointers[4] = {(void *)diff_dst, (void *)src, diff_weights, diff_bias};
        if (run(grads, pointers, shared) != 0) return -1;
    }
    if (diff_bias && !diff_weights) {  // the bias gradient alone: sums of diff_dst per channel
        int plane = shape->p * shape->q;
        for (int oc = 0; oc < shape->o; oc++) diff_bias[oc] = 0;
        for (int img = 0; img < shape->n; img++)
            for (int oc = 0; oc < shape->o; oc++) {
                const float *g = diff_dst + ((size_t)img * shape->o + oc) * plane;
                float total = 0;
                for (int t = 0; t < plane; t++) total += g[t];
                diff_bias[oc] += total;
            }
    }
    return 0;
}

// ---- Activations kept in the primitives' blocked layout -------------------------------------------

/// Whether `md` is the `n×c×h×w` tensor of `like` in layout `tag`.
static int has_layout(const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *like, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t blocked;
    return p_dnnl_memory_desc_init_by_tag(&blocked, like->ndims, like->dims, dnnl_f32, tag) == dnnl_success
           && p_dnnl_memory_desc_equal(md, &blocked);
}

int dk_dnnl_channel_block(const dk_dnnl_shape *shape, int with_bias) {
    const entry *forward = lookup(shape, with_bias ? kForwardBias : kForward);
    const entry *data = lookup(shape, kBackwardData);
    const entry *grads = lookup(shape, with_bias ? kBackwardWeightsBias : kBackwardWeights);
    if (!forward || !data || !grads) return 0;
    const argument *dst = &forward->args[forward->count - 1], *data_diff_dst = &data->args[0], *grads_diff_dst = &grads->args[0];
    if (!dst->reorder || !p_dnnl_memory_desc_equal(&dst->inner, &data_diff_dst->inner)
        || !p_dnnl_memory_desc_equal(&dst->inner, &grads_diff_dst->inner))
        return 0;
    const struct { dnnl_format_tag_t tag; int block; } layouts[] = {{dnnl_nChw16c, 16}, {dnnl_nChw8c, 8}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (shape->o % layouts[i].block == 0 && has_layout(&dst->inner, &dst->user, layouts[i].tag)) return layouts[i].block;
    return 0;
}

int dk_dnnl_conv_relu_maxpool_forward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *bias,
                                      float *pooled, int32_t *argmax) {
    // Each chunk's shape is a primitive of its own: its layout is looked up, not assumed.
    entry *e = lookup(shape, bias ? kForwardBias : kForward);
    const int block = dk_dnnl_channel_block(shape, bias != NULL);
    if (!e || block == 0) return -1;
    // src, weights, [bias,] dst: the output is left in its blocked layout, in scratch slot `out`.
    const int out = e->count - 1;
    void *pointers[4] = {(void *)src, (void *)weights, NULL, NULL};
    if (bias) pointers[2] = (void *)bias;
    if (run(e, pointers, 0) != 0) return -1;
    const float *blocked = scratch(out, p_dnnl_memory_desc_get_size(&e->args[out].inner));
    return dk_max_pool2x2_blocked_forward(blocked, (size_t)shape->n, (size_t)shape->o, (size_t)shape->p, (size_t)shape->q,
                                          (size_t)block, 1, pooled, argmax);
}

int dk_dnnl_conv_relu_maxpool_backward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *pooled_grad,
                                       const int32_t *argmax, float *diff_src, float *diff_weights, float *diff_bias) {
    entry *data = diff_src ? lookup(shape, kBackwardData) : NULL;
    entry *grads = lookup(shape, diff_bias ? kBackwardWeightsBias : kBackwardWeights);
    const int block = dk_dnnl_channel_block(shape, diff_bias != NULL);
    if ((diff_src && !data) || !grads || block == 0) return -1;
    // The output gradient, routed to the winners straight into its blocked layout in scratch
    // slot 0, where both passes read their argument 0.
    float *diff_dst = scratch(0, p_dnnl_memory_desc_get_size(&grads->args[0].inner));
    if (!diff_dst || dk_max_pool2x2_blocked_backward(pooled_grad, argmax, (size_t)shape->n, (size_t)shape->o, (size_t)shape->p,
                                                     (size_t)shape->q, (size_t)block, diff_dst) != 0)
        return -1;
    if (data) {  // diff_dst, weights, diff_src
        void *pointers[3] = {NULL, (void *)weights, diff_src};
        if (run(data, pointers, 1u) != 0) return -1;
    }
    void *pointers[4] = {NULL, (void *)src, diff_weights, diff_bias};  // diff_dst, src, diff_weights, [diff_bias]
    return run(grads, pointers, 1u);
}

#else  // built without oneDNN's headers: the convolutions always use the im2col path

int dk_dnnl_load(char *message, int capacity) {
    if (message && capacity > 0) snprintf(message, (size_t)capacity, "%s", dk_dnnl_description());
    return -1;
}
const char *dk_dnnl_description(void) { return "oneDNN headers were not installed at build time (apt-get install libdnnl-dev)"; }
const char *dk_dnnl_forward_implementation(const dk_dnnl_shape *shape) { (void)shape; return NULL; }
int dk_dnnl_conv_forward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *bias, float *dst) {
    (void)shape; (void)src; (void)weights; (void)bias; (void)dst;
    return -1;
}
int dk_dnnl_conv_backward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *diff_dst,
                          float *diff_src, float *diff_weights, float *diff_bias) {
    (void)shape; (void)src; (void)weights; (void)diff_dst; (void)diff_src; (void)diff_weights; (void)diff_bias;
    return -1;
}

int dk_dnnl_channel_block(const dk_dnnl_shape *shape, int with_bias) { (void)shape; (void)with_bias; return 0; }
int dk_dnnl_conv_relu_maxpool_forward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *bias,
                                      float *pooled, int32_t *argmax) {
    (void)shape; (void)src; (void)weights; (void)bias; (void)pooled; (void)argmax;
    return -1;
}
int dk_dnnl_conv_relu_maxpool_backward(const dk_dnnl_shape *shape, const float *src, const float *weights, const float *pooled_grad,
                                       const int32_t *argmax, float *diff_src, float *diff_weights, float *diff_bias) {
    (void)shape; (void)src; (void)weights; (void)pooled_grad; (void)argmax; (void)diff_src; (void)diff_weights; (void)diff_bias;
    return -1;
}

#endif
