/* probe.c: a test contract that exercises every syscall, limit and trap of the contract VM. */
/*
 * Used by runtime/tests/contracts.rs; each method does one thing (see the switch in main).
 */
#include "bpu.h"

static uint8_t big[70000];

static void ret_u32s(const uint32_t *v, uint32_t n)
{
    uint8_t out[64];
    for (uint32_t i = 0; i < n; i++)
        bpu_put32(out + 4 * i, v[i]);
    bpu_return(out, 4 * n);
}

/* Reads and writes in an order that tests read-your-writes and the read/write sets. */
static void rw(void)
{
    uint8_t buf[16];
    uint32_t r[6];
    r[0] = bpu_get("a", 1, buf, sizeof buf); /* from state */
    bpu_set("b", 1, "B1", 2);
    r[1] = bpu_get("b", 1, buf, sizeof buf); /* own write: 2, not a read */
    r[2] = bpu_get("a", 1, buf, 1);          /* again: full length, one byte copied */
    bpu_delete("a", 1);
    r[3] = bpu_get("a", 1, buf, sizeof buf); /* own delete: absent */
    r[4] = bpu_get("c", 1, buf, sizeof buf); /* absent in state: read with no version */
    bpu_set("b", 1, "B22", 3);               /* last write wins */
    r[5] = bpu_get("b", 1, buf, sizeof buf);
    ret_u32s(r, 6);
}

/* Everything the call can learn about itself: block info, caller, method, calldata, sha256. */
static void info(void)
{
    static uint8_t out[56 + 32 + 4 + 4 + 64 + 4 + 256 + 32];
    uint8_t *p = out;
    struct bpu_block_info bi;
    bpu_block_info(&bi);
    memcpy(p, &bi, sizeof bi);
    p += sizeof bi;
    bpu_put32(p + 32, bpu_caller(p));
    p += 36;
    uint32_t n = bpu_method(p + 4, 64);
    bpu_put32(p, n);
    p += 4 + (n < 64 ? n : 64);
    n = bpu_calldata(p + 4, 256);
    bpu_put32(p, n);
    uint8_t *args = p + 4;
    p += 4 + (n < 256 ? n : 256);
    bpu_sha256(args, n < 256 ? n : 256, p);
    p += 32;
    bpu_return(out, (uint32_t)(p - out));
}

static void emit_n(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint8_t d[4];
        bpu_put32(d, i);
        BPU_EMIT("Tick", d, 4);
    }
}

int main(void)
{
    volatile uint32_t spin = 0;
    if (bpu_method_is("rw"))
        rw();
    else if (bpu_method_is("info"))
        info();
    else if (bpu_method_is("echo")) {
        uint32_t n = bpu_calldata(big, sizeof big);
        bpu_return(big, n);
    } else if (bpu_method_is("loop")) {
        for (;;)
            spin = spin + 1;
    } else if (bpu_method_is("fault")) {
        return (int)*(volatile uint32_t *)0xfffffff0u;
    } else if (bpu_method_is("write_code")) {
        *(volatile uint32_t *)(uintptr_t)&main = 0;
    } else if (bpu_method_is("illegal")) {
        __asm__ volatile(".word 0xffffffff");
    } else if (bpu_method_is("ebreak")) {
        __asm__ volatile("ebreak");
    } else if (bpu_method_is("unknown_syscall")) {
        bpu_syscall(0x1ff, 0, 0, 0, 0);
    } else if (bpu_method_is("bad_buffer")) {
        bpu_get("a", 1, (void *)0xffffff00u, 1000);
    } else if (bpu_method_is("exit3")) {
        bpu_set("x", 1, "y", 1);
        return 3;
    } else if (bpu_method_is("exit0")) {
        bpu_set("x", 1, "y", 1);
        BPU_EMIT("Done", 0, 0);
        return 0;
    } else if (bpu_method_is("revert_after_write")) {
        bpu_set("x", 1, "y", 1);
        BPU_EMIT("Never", 0, 0);
        BPU_REVERT("nope");
    } else if (bpu_method_is("max_value")) {
        bpu_set("v", 1, big, BPU_MAX_VALUE);
    } else if (bpu_method_is("big_value")) {
        bpu_set("v", 1, big, BPU_MAX_VALUE + 1);
    } else if (bpu_method_is("max_key")) {
        bpu_set(big, BPU_MAX_KEY, "v", 1);
    } else if (bpu_method_is("long_key")) {
        bpu_get(big, BPU_MAX_KEY + 1, 0, 0);
    } else if (bpu_method_is("max_events")) {
        emit_n(BPU_MAX_EVENTS);
    } else if (bpu_method_is("many_events")) {
        emit_n(BPU_MAX_EVENTS + 1);
    } else if (bpu_method_is("bad_event_name")) {
        BPU_EMIT("bad name!", 0, 0);
    } else if (bpu_method_is("empty_event_name")) {
        bpu_emit("", 0, 0, 0);
    } else if (bpu_method_is("big_event")) {
        BPU_EMIT("Big", big, BPU_MAX_EVENT_DATA + 1);
    } else if (bpu_method_is("big_response")) {
        bpu_return(big, BPU_MAX_RESPONSE + 1);
    } else if (bpu_method_is("long_reason")) {
        memset(big, 'r', sizeof big);
        bpu_revert(big, sizeof big);
    } else if (bpu_method_is("many_keys")) {
        /* one read per key until the entry limit stops the call */
        uint8_t key[4];
        for (uint32_t i = 0;; i++) {
            bpu_put32(key, i);
            bpu_get(key, 4, 0, 0);
        }
    } else {
        BPU_REVERT("unknown method");
    }
    return 0;
}
