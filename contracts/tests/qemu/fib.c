/* fib.c: recursion: naive Fibonacci, Ackermann, Tower of Hanoi (pure differential program). */
#include "util.h"

static uint32_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static uint32_t ack(uint32_t m, uint32_t n)
{
    if (m == 0)
        return n + 1;
    if (n == 0)
        return ack(m - 1, 1);
    return ack(m - 1, ack(m, n - 1));
}

static uint32_t moves;
static uint32_t trace;

static void hanoi(int n, int from, int to, int via)
{
    if (n == 0)
        return;
    hanoi(n - 1, from, via, to);
    moves++;
    trace = trace * 7 + (uint32_t)(from * 3 + to);
    hanoi(n - 1, via, to, from);
}

int main(void)
{
    for (uint32_t n = 0; n <= 22; n += 2) {
        put_u64(fib(n));
        put_char(' ');
    }
    put_char('\n');
    put_u64(ack(2, 3));
    put_char(' ');
    put_u64(ack(3, 3));
    put_char('\n');
    hanoi(12, 0, 2, 1);
    put_u64(moves);
    put_char(' ');
    put_u64(trace);
    put_char('\n');
    flush();
    return (int)(fib(15) % 128);
}
