/*
 * shareable_list.c - Python's ShareableList: a fixed-length list of
 * scalars in a shared memory block, in CPython's layout (the header comment
 * of mpipc/shared_memory.h draws it). Statics start with sl_.
 *
 * The block is written by other processes, so every offset, format and
 * code read from it is checked against the block's size before use, and
 * nothing read from it sizes an allocation beyond the block itself.
 */
#include "shmem/shmem.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_ALIGN   8
#define SL_FMT_LEN 8 /* each format is packed as "8s" */

/* Python's back-transform codes. */
enum { SL_CODE_PLAIN = 0, SL_CODE_STR = 1, SL_CODE_BYTES = 2, SL_CODE_NONE = 3 };

/* The formats of _types_mapping; str and bytes are "%ds". */
#define SL_FMT_INT   "q"
#define SL_FMT_FLOAT "d"
#define SL_FMT_BOOL  "xxxxxxx?"
#define SL_FMT_NONE  "xxxxxx?x"

struct mp_shareable_list {
    mp_shared_memory *shm;
    size_t n; /* Python's _list_len, read once */
};

/* A slot as the block describes it. */
struct sl_slot {
    size_t at;    /* the slot's offset in the block */
    size_t alloc; /* the bytes allocated to it */
    char fmt[SL_FMT_LEN + 1];
    int code;
};

static uint64_t sl_rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void sl_wr64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

static unsigned char *sl_buf(const mp_shareable_list *l)
{
    return mp_shared_memory_buf(l->shm);
}

/* Python's data start: the count and the N + 1 offsets. */
static size_t sl_data_start(size_t n)
{
    return (n + 2) * 8;
}

/* Where the format table starts, checked: the data area's end (the last
 * offset) must leave room for the formats and codes. */
static int sl_tables(const mp_shareable_list *l, size_t *fmts)
{
    const unsigned char *b = sl_buf(l);
    size_t size = mp_shared_memory_size(l->shm), n = l->n;
    uint64_t end = sl_rd64(b + 8 + 8 * n);
    size_t room = size - sl_data_start(n) - 9 * n; /* checked at attach */
    if (end > room)
        return mp__err(MP_EPROTO, "ShareableList data end %llu beyond the block",
                       (unsigned long long)end);
    *fmts = sl_data_start(n) + (size_t)end;
    return 0;
}

/* Python's position handling: a negative i counts from the end. */
static int sl_index(const mp_shareable_list *l, ssize_t i, size_t *pos)
{
    ssize_t n = (ssize_t)l->n;
    if (i < 0)
        i += n;
    if (i < 0 || i >= n)
        return MP_EKEY;
    *pos = (size_t)i;
    return 0;
}

/* Read slot pos's offsets, format and code, all checked against the block. */
static int sl_slot_read(const mp_shareable_list *l, size_t pos, struct sl_slot *s)
{
    const unsigned char *b = sl_buf(l);
    size_t fmts;
    int rc = sl_tables(l, &fmts);
    if (rc < 0)
        return rc;
    uint64_t lo = sl_rd64(b + 8 + 8 * pos), hi = sl_rd64(b + 16 + 8 * pos);
    if (lo > hi || sl_data_start(l->n) + hi > fmts)
        return mp__err(MP_EPROTO, "ShareableList slot %zu lies outside the data area", pos);
    s->at = sl_data_start(l->n) + (size_t)lo;
    s->alloc = (size_t)(hi - lo);
    memcpy(s->fmt, b + fmts + SL_FMT_LEN * pos, SL_FMT_LEN);
    s->fmt[SL_FMT_LEN] = '\0'; /* Python's rstrip(b'\x00') */
    s->code = (signed char)b[fmts + SL_FMT_LEN * l->n + pos];
    return 0;
}

/* The byte count a format packs: 8 for the scalars, N for "Ns"; 0 for a
 * format ShareableList never writes. */
static size_t sl_fmt_size(const char *fmt)
{
    if (!strcmp(fmt, SL_FMT_INT) || !strcmp(fmt, SL_FMT_FLOAT) || !strcmp(fmt, SL_FMT_BOOL) ||
        !strcmp(fmt, SL_FMT_NONE))
        return 8;
    size_t len = strlen(fmt), v = 0;
    if (len < 2 || fmt[len - 1] != 's')
        return 0;
    for (size_t k = 0; k + 1 < len; k++) {
        if (fmt[k] < '0' || fmt[k] > '9')
            return 0;
        v = v * 10 + (size_t)(fmt[k] - '0');
    }
    return v;
}

/* Strict UTF-8, as Python's bytes.decode("utf8"): no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static bool sl_utf8_strict(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1, min = 0x80, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2, min = 0x800, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---- writing one item --------------------------------------------------- */

/* What an item becomes: its format, code and packed bytes. */
struct sl_item {
    char fmt[SL_FMT_LEN + 1];
    int code;
    unsigned char scalar[8];
    const unsigned char *bytes; /* str/bytes: borrowed from the value */
    size_t len;                 /* str/bytes: their length */
    bool is_seq;                /* str or bytes */
};

/* Python's _types_mapping and _extract_recreation_code for one value. */
static int sl_item_of(const mp_obj *v, struct sl_item *it)
{
    memset(it, 0, sizeof *it);
    int64_t iv;
    double dv;
    bool bv;
    int rc;
    switch (mp_obj_type(v)) {
    case MP_TYPE_NONE:
        strcpy(it->fmt, SL_FMT_NONE);
        it->code = SL_CODE_NONE;
        return 0;
    case MP_TYPE_BOOL:
        (void)mp_obj_get_bool(v, &bv);
        strcpy(it->fmt, SL_FMT_BOOL);
        it->scalar[7] = bv;
        return 0;
    case MP_TYPE_INT:
        if ((rc = mp_obj_get_int(v, &iv)) < 0)
            return mp__err(rc, "argument out of range"); /* struct.error's words */
        strcpy(it->fmt, SL_FMT_INT);
        memcpy(it->scalar, &iv, 8);
        return 0;
    case MP_TYPE_FLOAT:
        (void)mp_obj_get_float(v, &dv);
        strcpy(it->fmt, SL_FMT_FLOAT);
        memcpy(it->scalar, &dv, 8);
        return 0;
    case MP_TYPE_STR:
        (void)mp_obj_get_str(v, (const char **)&it->bytes, &it->len);
        if (!sl_utf8_strict(it->bytes, it->len))
            return mp__err(MP_EVALUE, "'utf-8' codec can't encode: surrogates not allowed");
        it->code = SL_CODE_STR;
        it->is_seq = true;
        return 0;
    case MP_TYPE_BYTES:
        (void)mp_obj_get_bytes(v, &it->bytes, &it->len);
        it->code = SL_CODE_BYTES;
        it->is_seq = true;
        return 0;
    case -EINVAL:
        return -EINVAL;
    default:
        return mp__err(MP_ETYPE, "ShareableList cannot hold a value of type '%s'",
                       mp_type_name(mp_obj_type(v)));
    }
}

/* Write format, code, then the packed value, as Python's __setitem__ does
 * (in that order, with no lock, like Python). */
static void sl_item_write(mp_shareable_list *l, size_t pos, size_t fmts, size_t at,
                          const struct sl_item *it, size_t packed)
{
    unsigned char *b = sl_buf(l);
    memset(b + fmts + SL_FMT_LEN * pos, 0, SL_FMT_LEN);
    memcpy(b + fmts + SL_FMT_LEN * pos, it->fmt, strlen(it->fmt));
    b[fmts + SL_FMT_LEN * l->n + pos] = (unsigned char)(signed char)it->code;
    if (it->is_seq) {
        memcpy(b + at, it->bytes, it->len);
        memset(b + at + it->len, 0, packed - it->len);
    } else {
        memcpy(b + at, it->scalar, 8);
    }
}

/* ---- the calls ------------------------------------------------------------ */

static int sl_wrap(mp_shareable_list **out, mp_shared_memory *shm, size_t n)
{
    mp_shareable_list *l = malloc(sizeof *l);
    if (!l)
        return -ENOMEM;
    l->shm = shm;
    l->n = n;
    *out = l;
    return 0;
}

/* The slot a str or bytes of len bytes gets: Python's
 * alignment * (len // alignment + 1). */
static int sl_seq_slot(size_t len, size_t *slot, char *fmt)
{
    if (len > 9999991) /* "%ds" would need more than 8 characters */
        return mp__err(MP_EVALUE, "str/bytes item of %zu bytes is too long for ShareableList", len);
    *slot = SL_ALIGN * (len / SL_ALIGN + 1);
    snprintf(fmt, SL_FMT_LEN + 1, "%zus", *slot);
    return 0;
}

MP_API int mp_shareable_list_create(mp_shareable_list **out, const mp_obj *seq, const char *name,
                                    const mp_shared_memory_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    int t = seq ? mp_obj_type(seq) : MP_TYPE_LIST;
    if (t != MP_TYPE_LIST && t != MP_TYPE_TUPLE)
        return t < 0 ? t : mp__err(MP_ETYPE, "ShareableList needs a list or tuple");
    size_t n = seq ? (size_t)mp_obj_len(seq) : 0;
    /* First pass: every item's type and size, before anything is made. */
    size_t data = 0;
    for (size_t i = 0; i < n; i++) {
        struct sl_item it;
        size_t slot = 8;
        int rc = sl_item_of(mp_obj_list_get(seq, (ssize_t)i), &it);
        if (rc == 0 && it.is_seq)
            rc = sl_seq_slot(it.len, &slot, it.fmt);
        if (rc < 0)
            return rc;
        data += slot; /* at most n * 10 MB: no overflow on a 64-bit size_t */
    }
    size_t total = sl_data_start(n) + data + 9 * n;
    mp_shared_memory *shm;
    int rc = mp_shared_memory_create(&shm, name, total, opts);
    if (rc < 0)
        return rc;
    mp_shareable_list *l;
    if ((rc = sl_wrap(&l, shm, n)) < 0) {
        (void)mp_shared_memory_unlink(shm);
        mp_shared_memory_free(shm);
        return rc;
    }
    unsigned char *b = sl_buf(l);
    size_t off = 0, fmts = sl_data_start(n) + data;
    sl_wr64(b, n);
    for (size_t i = 0; i < n; i++) {
        struct sl_item it;
        size_t slot = 8;
        (void)sl_item_of(mp_obj_list_get(seq, (ssize_t)i), &it);
        if (it.is_seq)
            (void)sl_seq_slot(it.len, &slot, it.fmt);
        sl_wr64(b + 8 + 8 * i, off);
        sl_item_write(l, i, fmts, sl_data_start(n) + off, &it, slot);
        off += slot;
    }
    sl_wr64(b + 8 + 8 * n, off);
    *out = l;
    return 0;
}

MP_API int mp_shareable_list_attach(mp_shareable_list **out, const char *name,
                                    const mp_shared_memory_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mp_shared_memory *shm;
    int rc = mp_shared_memory_attach(&shm, name, opts);
    if (rc < 0)
        return rc;
    const unsigned char *b = mp_shared_memory_buf(shm);
    size_t size = mp_shared_memory_size(shm);
    /* The count must leave room for the offsets, formats and codes:
     * 8 * (n + 2) + 9 * n <= size. */
    uint64_t n = size >= 8 ? sl_rd64(b) : UINT64_MAX;
    if (size < 16 || n > (size - 16) / 17) {
        mp_shared_memory_free(shm);
        return mp__err(MP_EPROTO, "block '%s' does not hold a ShareableList", name);
    }
    if ((rc = sl_wrap(out, shm, (size_t)n)) < 0) {
        mp_shared_memory_free(shm);
        return rc;
    }
    size_t fmts;
    if ((rc = sl_tables(*out, &fmts)) < 0) {
        mp_shareable_list_free(*out);
        *out = NULL;
    }
    return rc;
}

MP_API mp_shared_memory *mp_shareable_list_shm(const mp_shareable_list *l)
{
    return l ? l->shm : NULL;
}

MP_API ssize_t mp_shareable_list_len(const mp_shareable_list *l)
{
    return l ? (ssize_t)l->n : -EINVAL;
}

/* Python's __getitem__: unpack by the slot's format, then apply its
 * back-transform code. */
MP_API int mp_shareable_list_get(const mp_shareable_list *l, ssize_t i, mp_obj **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!l)
        return -EINVAL;
    size_t pos;
    struct sl_slot s;
    int rc = sl_index(l, i, &pos);
    if (rc < 0)
        return mp__err(rc, "index out of range");
    if ((rc = sl_slot_read(l, pos, &s)) < 0)
        return rc;
    size_t need = sl_fmt_size(s.fmt);
    if (need == 0 || need > mp_shared_memory_size(l->shm) - s.at)
        return mp__err(MP_EPROTO, "ShareableList item %zu has format '%s'", pos, s.fmt);
    const unsigned char *p = sl_buf(l) + s.at;
    bool seq = s.fmt[strlen(s.fmt) - 1] == 's';
    size_t len = need;
    if (seq && s.code != SL_CODE_PLAIN)
        while (len > 0 && p[len - 1] == 0) /* rstrip(b'\x00') */
            len--;
    mp_obj *v = NULL;
    if (s.code == SL_CODE_NONE) {
        v = mp_obj_none();
    } else if (s.code == SL_CODE_STR && seq) {
        if (!sl_utf8_strict(p, len))
            return mp__err(MP_EVALUE, "ShareableList item %zu: 'utf-8' codec can't decode", pos);
        v = mp_obj_str((const char *)p, len);
    } else if ((s.code == SL_CODE_BYTES || s.code == SL_CODE_PLAIN) && seq) {
        v = mp_obj_bytes(p, len);
    } else if (s.code == SL_CODE_PLAIN && !strcmp(s.fmt, SL_FMT_INT)) {
        v = mp_obj_int((int64_t)sl_rd64(p));
    } else if (s.code == SL_CODE_PLAIN && !strcmp(s.fmt, SL_FMT_FLOAT)) {
        double d;
        memcpy(&d, p, sizeof d);
        v = mp_obj_float(d);
    } else if (s.code == SL_CODE_PLAIN && !strcmp(s.fmt, SL_FMT_BOOL)) {
        v = mp_obj_bool(p[7] != 0);
    } else if (s.code == SL_CODE_PLAIN && !strcmp(s.fmt, SL_FMT_NONE)) {
        v = mp_obj_bool(p[6] != 0);
    } else {
        return mp__err(MP_EPROTO, "ShareableList item %zu has format '%s' with code %d", pos, s.fmt,
                       s.code);
    }
    if (!v)
        return -ENOMEM;
    *out = v;
    return 0;
}

/* Python's __setitem__, with its checks made before anything is written. */
MP_API int mp_shareable_list_set(mp_shareable_list *l, ssize_t i, const mp_obj *v)
{
    if (!l || !v)
        return -EINVAL;
    size_t pos, fmts;
    struct sl_slot s;
    struct sl_item it;
    int rc = sl_index(l, i, &pos);
    if (rc < 0)
        return mp__err(rc, "assignment index out of range");
    if ((rc = sl_slot_read(l, pos, &s)) < 0 || (rc = sl_item_of(v, &it)) < 0)
        return rc;
    size_t packed = 8;
    if (it.is_seq) {
        if (it.len > s.alloc)
            return mp__err(MP_EVALUE, "bytes/str item exceeds available storage");
        size_t cur = sl_fmt_size(s.fmt);
        if (cur && s.fmt[strlen(s.fmt) - 1] == 's') {
            strcpy(it.fmt, s.fmt); /* Python keeps the current "Ns" */
            packed = cur;
        } else {
            snprintf(it.fmt, sizeof it.fmt, "%zus", s.alloc);
            packed = s.alloc;
        }
        if (packed < it.len)
            return mp__err(MP_EVALUE, "bytes/str item exceeds available storage");
    }
    if (packed > mp_shared_memory_size(l->shm) - s.at)
        return mp__err(MP_EPROTO, "ShareableList item %zu has format '%s'", pos, s.fmt);
    (void)sl_tables(l, &fmts); /* checked by sl_slot_read */
    sl_item_write(l, pos, fmts, s.at, &it, packed);
    return 0;
}

MP_API ssize_t mp_shareable_list_count(const mp_shareable_list *l, const mp_obj *v)
{
    if (!l || !v)
        return -EINVAL;
    ssize_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
        mp_obj *item;
        int rc = mp_shareable_list_get(l, (ssize_t)i, &item);
        if (rc < 0)
            return rc;
        count += mp_obj_equal(v, item);
        mp_obj_free(item);
    }
    return count;
}

MP_API ssize_t mp_shareable_list_index(const mp_shareable_list *l, const mp_obj *v)
{
    if (!l || !v)
        return -EINVAL;
    for (size_t i = 0; i < l->n; i++) {
        mp_obj *item;
        int rc = mp_shareable_list_get(l, (ssize_t)i, &item);
        if (rc < 0)
            return rc;
        bool eq = mp_obj_equal(v, item);
        mp_obj_free(item);
        if (eq)
            return (ssize_t)i;
    }
    return mp__err(MP_EVALUE, "value not in this container");
}

MP_API int mp_shareable_list_format(const mp_shareable_list *l, char **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!l)
        return -EINVAL;
    char *s = malloc(SL_FMT_LEN * l->n + 1);
    if (!s)
        return -ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct sl_slot slot;
        int rc = sl_slot_read(l, i, &slot);
        if (rc < 0) {
            free(s);
            return rc;
        }
        size_t k = strlen(slot.fmt);
        memcpy(s + len, slot.fmt, k);
        len += k;
    }
    s[len] = '\0';
    *out = s;
    return 0;
}

MP_API void mp_shareable_list_free(mp_shareable_list *l)
{
    if (!l)
        return;
    mp_shared_memory_free(l->shm);
    free(l);
}
