/* crc32.c: table-driven and bitwise CRC-32 and Adler-32 (pure differential program). */
#include "util.h"

static uint32_t table[256];

static uint32_t crc_bitwise(const uint8_t *p, uint32_t n)
{
    uint32_t c = 0xffffffffu;
    for (uint32_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static uint32_t crc_table(const uint8_t *p, uint32_t n)
{
    uint32_t c = 0xffffffffu;
    for (uint32_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

static uint32_t adler32(const uint8_t *p, uint32_t n)
{
    uint32_t a = 1, b = 0;
    for (uint32_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

static uint8_t buf[3000];

int main(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
        table[i] = c;
    }
    const char *check = "123456789";
    uint32_t a = crc_table((const uint8_t *)check, 9);
    put_hex((const uint8_t *)&a, 4);
    put_char('\n');
    for (uint32_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i ^ (i >> 3) ^ 0x5a);
    int ok = 1;
    for (uint32_t n = 0; n <= sizeof buf; n += 333) {
        uint32_t x = crc_table(buf, n), y = crc_bitwise(buf, n), z = adler32(buf, n);
        ok &= x == y;
        put_hex((const uint8_t *)&x, 4);
        put_char(' ');
        put_hex((const uint8_t *)&z, 4);
        put_char('\n');
    }
    flush();
    return ok ? 42 : 1;
}
