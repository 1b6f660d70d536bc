/* sort.c: quicksort and insertion sort of pseudo-random signed data (pure differential program). */
#include "util.h"

static int32_t a[2000], b[2000];
static uint32_t seed = 12345;

static uint32_t rnd(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
}

static void quicksort(int32_t *v, int lo, int hi)
{
    while (lo < hi) {
        int32_t pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                int32_t t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (j - lo < hi - i) {
            quicksort(v, lo, j);
            lo = i;
        } else {
            quicksort(v, i, hi);
            hi = j;
        }
    }
}

static void insertion(int32_t *v, int n)
{
    for (int i = 1; i < n; i++) {
        int32_t x = v[i];
        int j = i - 1;
        for (; j >= 0 && v[j] > x; j--)
            v[j + 1] = v[j];
        v[j + 1] = x;
    }
}

int main(void)
{
    int n = 2000;
    for (int i = 0; i < n; i++)
        a[i] = b[i] = (int32_t)rnd() >> (rnd() % 20);
    quicksort(a, 0, n - 1);
    insertion(b, n);
    int same = memcmp(a, b, sizeof a) == 0;
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum = sum * 31 + (uint32_t)a[i];
        if (i % 200 == 0) {
            put_i64(a[i]);
            put_char(' ');
        }
    }
    put_str(same ? "\nsame " : "\nDIFFERENT ");
    put_u64(sum);
    put_char('\n');
    flush();
    return same ? 0 : 1;
}
