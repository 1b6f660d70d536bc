/* strings.c: string handling: reverse, search, itoa/atoi, byte-wise edits (pure differential). */
#include "util.h"

static char text[] = "the quick brown fox jumps over the lazy dog; THE QUICK BROWN FOX";

static void reverse(char *s, uint32_t n)
{
    for (uint32_t i = 0; i < n / 2; i++) {
        char t = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = t;
    }
}

static int find(const char *hay, const char *needle)
{
    uint32_t h = (uint32_t)strlen(hay), n = (uint32_t)strlen(needle);
    for (uint32_t i = 0; i + n <= h; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return (int)i;
    return -1;
}

static int64_t atoi64(const char *s)
{
    int neg = *s == '-';
    s += neg;
    int64_t v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return neg ? -v : v;
}

int main(void)
{
    uint32_t n = (uint32_t)strlen(text);
    put_u64(n);
    put_char(' ');
    put_i64(find(text, "fox"));
    put_char(' ');
    put_i64(find(text, "FOX"));
    put_char(' ');
    put_i64(find(text, "cat"));
    put_char('\n');
    reverse(text, n);
    put_str(text);
    put_char('\n');
    for (uint32_t i = 0; i < n; i++) {
        char c = text[i];
        if (c >= 'a' && c <= 'z')
            text[i] = (char)(c - 32);
        else if (c >= 'A' && c <= 'Z')
            text[i] = (char)(c + 32);
    }
    put_str(text);
    put_char('\n');
    /* misaligned copies and moves */
    char buf[80];
    memset(buf, '.', sizeof buf);
    memcpy(buf + 3, text + 1, 40);
    memmove(buf + 5, buf + 3, 40);
    memmove(buf + 1, buf + 5, 30);
    buf[79] = 0;
    put_str(buf);
    put_char('\n');
    put_i64(atoi64("-9223372036854775807") - 1);
    put_char(' ');
    put_i64(atoi64("1234567890123"));
    put_char('\n');
    flush();
    return find(text, "LAZY") == -1 ? 9 : 10;
}
