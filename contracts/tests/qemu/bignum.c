/* bignum.c: 64-bit multiply/divide mix and a 256-bit multiply (pure differential program). */
#include "util.h"

/* r[0..16) = x[0..8) * y[0..8), 32-bit limbs, little-endian */
static void mul256(uint32_t r[16], const uint32_t x[8], const uint32_t y[8])
{
    memset(r, 0, 16 * sizeof r[0]);
    for (int i = 0; i < 8; i++) {
        uint64_t carry = 0;
        for (int j = 0; j < 8; j++) {
            uint64_t t = (uint64_t)x[i] * y[j] + r[i + j] + carry;
            r[i + j] = (uint32_t)t;
            carry = t >> 32;
        }
        r[i + 8] = (uint32_t)carry;
    }
}

/* Divides the 512-bit r by a 32-bit d in place; returns the remainder. */
static uint32_t divsmall(uint32_t r[16], uint32_t d)
{
    uint64_t rem = 0;
    for (int i = 15; i >= 0; i--) {
        uint64_t cur = rem << 32 | r[i];
        r[i] = (uint32_t)(cur / d);
        rem = cur % d;
    }
    return (uint32_t)rem;
}

int main(void)
{
    uint64_t s = 0x0123456789abcdefULL;
    int64_t acc = -7;
    for (int i = 0; i < 300; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t d = (s >> (i % 61)) | 1;
        uint64_t q = s / d, m = s % d;
        int64_t sq = (int64_t)s / (int64_t)(d | 0x8000000000000000ULL >> (i % 64));
        int64_t sm = (int64_t)s % (int64_t)((i % 7) - 3 == 0 ? 1 : (i % 7) - 3);
        acc = acc * 3 + (int64_t)(q ^ m) + sq - sm;
        if (i % 30 == 0) {
            put_u64(q);
            put_char(' ');
            put_u64(m);
            put_char(' ');
            put_i64(sq);
            put_char(' ');
            put_i64(sm);
            put_char('\n');
        }
    }
    put_i64(acc);
    put_char('\n');
    /* signed edge cases */
    volatile int64_t mn = (int64_t)0x8000000000000000ULL, m1 = -1, z = 0;
    put_i64(mn / m1);
    put_char(' ');
    put_i64(mn % m1);
    put_char(' ');
    put_u64((uint64_t)mn / (uint64_t)z);
    put_char(' ');
    put_i64(mn % z);
    put_char('\n');
    uint32_t x[8], y[8], r[16];
    for (int i = 0; i < 8; i++) {
        x[i] = 0xffffffffu - (uint32_t)i * 0x01010101u;
        y[i] = 0x9e3779b9u * (uint32_t)(i + 1);
    }
    mul256(r, x, y);
    put_hex((const uint8_t *)r, sizeof r);
    put_char('\n');
    for (int k = 0; k < 5; k++) {
        put_u64(divsmall(r, 1000000007u - (uint32_t)k * 2));
        put_char(' ');
    }
    put_char('\n');
    flush();
    return (int)(acc & 0x7f);
}
