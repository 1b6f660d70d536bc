/* util.h: output helpers for the pure test programs (write and exit only, so qemu runs them). */
#ifndef UTIL_H
#define UTIL_H
#include "bpu.h"

static char out_buf[4096];
static uint32_t out_len;

static inline void flush(void)
{
    bpu_write(1, out_buf, out_len);
    out_len = 0;
}
static inline void put_char(char c)
{
    if (out_len == sizeof out_buf)
        flush();
    out_buf[out_len++] = c;
}
static inline void put_str(const char *s)
{
    while (*s)
        put_char(*s++);
}
static inline void put_hex(const uint8_t *p, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (uint32_t i = 0; i < n; i++) {
        put_char(digits[p[i] >> 4]);
        put_char(digits[p[i] & 15]);
    }
}
static inline void put_u64(uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_char(tmp[--n]);
}
static inline void put_i64(int64_t v)
{
    if (v < 0) {
        put_char('-');
        put_u64(-(uint64_t)v);
    } else {
        put_u64((uint64_t)v);
    }
}
#endif
