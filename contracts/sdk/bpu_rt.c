/* bpu_rt.c: the SDK's runtime: _start, mem and 64-bit division routines, method and args. */
/*
 * Contracts are linked with -nostdlib, so this file supplies what the compiler and the SDK
 * expect: the entry point, memcpy/memmove/memset/memcmp/strlen (marked no_builtin so the
 * compiler does not turn their loops back into calls to themselves) and libgcc's 64-bit
 * division helpers (RV32IM divides 32-bit values only).
 */
#include "bpu.h"

int main(void);

/* Entry: the VM (and qemu) set sp; everything else needs no setup (.bss is zero). */
__attribute__((noreturn)) void _start(void)
{
    bpu_exit(main());
}

/* ---- memory ---- */

/* Word copies whatever the alignment: the VM (docs/contract-abi.md) and qemu allow misaligned
 * loads and stores, and contracts often copy 32-byte ids to odd offsets (after a key tag).
 * The asm keeps the compiler from splitting the accesses into bytes. */
__attribute__((no_builtin)) void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (; n >= 4; n -= 4, d += 4, s += 4) {
        uint32_t w;
        __asm__ volatile("lw %0, 0(%1)" : "=r"(w) : "r"(s) : "memory");
        __asm__ volatile("sw %0, 0(%1)" : : "r"(w), "r"(d) : "memory");
    }
    while (n--)
        *d++ = *s++;
    return dst;
}

__attribute__((no_builtin)) void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d <= s || d >= s + n)
        return memcpy(dst, src, n);
    while (n--)
        d[n] = s[n];
    return dst;
}

__attribute__((no_builtin)) void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    if (((uintptr_t)d & 3) == 0) {
        uint32_t w = (uint8_t)c * 0x01010101u;
        for (; n >= 4; n -= 4, d += 4)
            *(uint32_t *)d = w;
    }
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

__attribute__((no_builtin)) int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

__attribute__((no_builtin)) size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* ---- 64-bit division (libgcc names) ---- */

static uint64_t udivmod64(uint64_t n, uint64_t d, uint64_t *rem)
{
    if (d == 0) { /* as RISC-V's DIVU/REMU: all ones, remainder n */
        *rem = n;
        return ~(uint64_t)0;
    }
    if ((n >> 32) == 0 && (d >> 32) == 0) {
        *rem = (uint32_t)n % (uint32_t)d;
        return (uint32_t)n / (uint32_t)d;
    }
    uint64_t q = 0, r = 0;
    for (int i = 63; i >= 0; i--) {
        r = r << 1 | ((n >> i) & 1);
        if (r >= d) {
            r -= d;
            q |= (uint64_t)1 << i;
        }
    }
    *rem = r;
    return q;
}

uint64_t __udivdi3(uint64_t n, uint64_t d)
{
    uint64_t r;
    return udivmod64(n, d, &r);
}

uint64_t __umoddi3(uint64_t n, uint64_t d)
{
    uint64_t r;
    udivmod64(n, d, &r);
    return r;
}

int64_t __divdi3(int64_t n, int64_t d)
{
    uint64_t r, un = n < 0 ? -(uint64_t)n : (uint64_t)n, ud = d < 0 ? -(uint64_t)d : (uint64_t)d;
    uint64_t q = udivmod64(un, ud, &r);
    return (int64_t)((n < 0) != (d < 0) ? -q : q);
}

int64_t __moddi3(int64_t n, int64_t d)
{
    uint64_t r, un = n < 0 ? -(uint64_t)n : (uint64_t)n, ud = d < 0 ? -(uint64_t)d : (uint64_t)d;
    udivmod64(un, ud, &r);
    return (int64_t)(n < 0 ? -r : r);
}

/* ---- method and arguments ---- */

int bpu_method_is(const char *name)
{
    static char method[65];
    static uint32_t mlen = BPU_ABSENT;
    if (mlen == BPU_ABSENT)
        mlen = bpu_method(method, sizeof method);
    uint32_t n = (uint32_t)strlen(name);
    return n == mlen && n <= sizeof method && memcmp(method, name, n) == 0;
}

static uint8_t args_buf[BPU_MAX_ARGS];

struct bpu_args bpu_args(void)
{
    uint32_t len = bpu_calldata(args_buf, sizeof args_buf);
    if (len > sizeof args_buf)
        BPU_REVERT("arguments too long");
    struct bpu_args a = {args_buf, len, 0};
    return a;
}

const uint8_t *bpu_arg_bytes(struct bpu_args *a, uint32_t n)
{
    if (n > a->len - a->pos)
        BPU_REVERT("bad arguments");
    const uint8_t *p = a->data + a->pos;
    a->pos += n;
    return p;
}

uint32_t bpu_arg_u32(struct bpu_args *a) { return bpu_le32(bpu_arg_bytes(a, 4)); }
uint64_t bpu_arg_u64(struct bpu_args *a) { return bpu_le64(bpu_arg_bytes(a, 8)); }
const uint8_t *bpu_arg_id(struct bpu_args *a) { return bpu_arg_bytes(a, 32); }
uint8_t bpu_arg_u8(struct bpu_args *a) { return *bpu_arg_bytes(a, 1); }

const uint8_t *bpu_arg_rest(struct bpu_args *a, uint32_t *len)
{
    *len = a->len - a->pos;
    return bpu_arg_bytes(a, *len);
}

void bpu_arg_end(const struct bpu_args *a)
{
    if (a->pos != a->len)
        BPU_REVERT("bad arguments");
}
