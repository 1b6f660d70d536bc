/* bpu.h: the C SDK for bpu contracts: syscall wrappers, byte helpers and an argument reader. */
/*
 * A contract is one C file that includes this header and defines `int main(void)`. The SDK's
 * `_start` (bpu_rt.c) calls main and exits with its result: 0 = success with an empty
 * response (unless bpu_return ended the call first), anything else = revert "exit code n".
 * The syscalls and their gas are specified in docs/contract-abi.md; the wrappers below are
 * one ecall each. Build with contracts/build.sh.
 *
 * Only `bpu_write` and `bpu_exit` exist under qemu-riscv32 (Linux numbers 64 and 93), so pure
 * programs that use nothing else run both on the contract VM and on qemu.
 */
#ifndef BPU_H
#define BPU_H

#include <stddef.h>
#include <stdint.h>

/* ---- syscall numbers (docs/contract-abi.md) ---- */
#define BPU_SYS_WRITE 64
#define BPU_SYS_EXIT 93
#define BPU_SYS_STATE_GET 0x100
#define BPU_SYS_STATE_SET 0x101
#define BPU_SYS_STATE_DELETE 0x102
#define BPU_SYS_METHOD 0x103
#define BPU_SYS_CALLDATA 0x104
#define BPU_SYS_CALLER 0x105
#define BPU_SYS_RETURN 0x106
#define BPU_SYS_REVERT 0x107
#define BPU_SYS_EMIT 0x108
#define BPU_SYS_SHA256 0x109
#define BPU_SYS_BLOCK_INFO 0x10a

/* state_get's result when the key is absent. */
#define BPU_ABSENT 0xffffffffu

/* Limits the contract service enforces (a call exceeding one reverts). */
#define BPU_MAX_KEY 256u
#define BPU_MAX_VALUE 65536u
#define BPU_MAX_RESPONSE 65536u
#define BPU_MAX_EVENTS 64u
#define BPU_MAX_EVENT_NAME 64u
#define BPU_MAX_EVENT_DATA 4096u

/* ---- raw ecall ---- */
static inline uint32_t bpu_syscall(uint32_t n, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    register uint32_t a0 __asm__("a0") = a;
    register uint32_t a1 __asm__("a1") = b;
    register uint32_t a2 __asm__("a2") = c;
    register uint32_t a3 __asm__("a3") = d;
    register uint32_t a7 __asm__("a7") = n;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a3), "r"(a7) : "memory");
    return a0;
}
#define BPU_P(p) ((uint32_t)(uintptr_t)(p))

/* ---- process (Linux numbers: also work under qemu-riscv32) ---- */
static inline uint32_t bpu_write(int fd, const void *buf, uint32_t len)
{
    return bpu_syscall(BPU_SYS_WRITE, (uint32_t)fd, BPU_P(buf), len, 0);
}
static inline __attribute__((noreturn)) void bpu_exit(int code)
{
    bpu_syscall(BPU_SYS_EXIT, (uint32_t)code, 0, 0, 0);
    __builtin_unreachable();
}

/* ---- state: keys are at most 256 bytes, values at most 64 KiB ---- */

/* Copies up to `cap` bytes of the value of `key` into `buf`; returns the value's full length,
 * or BPU_ABSENT when the key has no value. Sees this call's own earlier writes. */
static inline uint32_t bpu_get(const void *key, uint32_t klen, void *buf, uint32_t cap)
{
    return bpu_syscall(BPU_SYS_STATE_GET, BPU_P(key), klen, BPU_P(buf), cap);
}
static inline void bpu_set(const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    bpu_syscall(BPU_SYS_STATE_SET, BPU_P(key), klen, BPU_P(val), vlen);
}
static inline void bpu_delete(const void *key, uint32_t klen)
{
    bpu_syscall(BPU_SYS_STATE_DELETE, BPU_P(key), klen, 0, 0);
}

/* ---- the call ---- */

/* Copies up to `cap` bytes of the method name; returns its full length. */
static inline uint32_t bpu_method(void *buf, uint32_t cap)
{
    return bpu_syscall(BPU_SYS_METHOD, BPU_P(buf), cap, 0, 0);
}
/* Copies up to `cap` bytes of the call's arguments; returns their full length. */
static inline uint32_t bpu_calldata(void *buf, uint32_t cap)
{
    return bpu_syscall(BPU_SYS_CALLDATA, BPU_P(buf), cap, 0, 0);
}
/* Writes the caller's 32-byte id (SHA-256 of its SEC1 public key); returns its membership
 * index. */
static inline uint32_t bpu_caller(uint8_t id[32])
{
    return bpu_syscall(BPU_SYS_CALLER, BPU_P(id), 0, 0, 0);
}
/* Ends the call successfully with `len` bytes of response. */
static inline __attribute__((noreturn)) void bpu_return(const void *buf, uint32_t len)
{
    bpu_syscall(BPU_SYS_RETURN, BPU_P(buf), len, 0, 0);
    __builtin_unreachable();
}
/* Ends the call as a revert: no writes, no events; `len` bytes of reason (UTF-8). */
static inline __attribute__((noreturn)) void bpu_revert(const void *reason, uint32_t len)
{
    bpu_syscall(BPU_SYS_REVERT, BPU_P(reason), len, 0, 0);
    __builtin_unreachable();
}
/* Emits an event: name of 1..64 characters from [A-Za-z0-9_.-], data up to 4 KiB. */
static inline void bpu_emit(const char *name, uint32_t nlen, const void *data, uint32_t dlen)
{
    bpu_syscall(BPU_SYS_EMIT, BPU_P(name), nlen, BPU_P(data), dlen);
}
/* out = SHA-256(data[0..len]). */
static inline void bpu_sha256(const void *data, uint32_t len, uint8_t out[32])
{
    bpu_syscall(BPU_SYS_SHA256, BPU_P(data), len, BPU_P(out), 0);
}

/* What block_info fills (little-endian, 56 bytes; docs/contract-abi.md). */
struct bpu_block_info {
    uint64_t height;           /* height of the block being built */
    uint64_t time_ms;          /* its time, milliseconds since the Unix epoch */
    uint8_t tx_id[32];         /* id of the transaction */
    uint32_t contract_version; /* installed version of the called contract */
    uint32_t caller_index;     /* membership index of the transaction's creator */
};
static inline void bpu_block_info(struct bpu_block_info *info)
{
    bpu_syscall(BPU_SYS_BLOCK_INFO, BPU_P(info), sizeof *info, 0, 0);
}
static inline uint64_t bpu_height(void)
{
    struct bpu_block_info info;
    bpu_block_info(&info);
    return info.height;
}

/* ---- memory and strings (bpu_rt.c; the compiler may also call these) ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- little-endian helpers ---- */
static inline uint32_t bpu_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t bpu_le64(const uint8_t *p)
{
    return (uint64_t)bpu_le32(p) | (uint64_t)bpu_le32(p + 4) << 32;
}
static inline void bpu_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void bpu_put64(uint8_t *p, uint64_t v)
{
    bpu_put32(p, (uint32_t)v);
    bpu_put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- convenience ---- */

/* Reverts with a C string as the reason. */
#define BPU_REVERT(msg) bpu_revert((msg), (uint32_t)(sizeof(msg) - 1))
/* Reverts with `msg` unless `cond` holds. */
#define BPU_REQUIRE(cond, msg)                                                                 \
    do {                                                                                       \
        if (!(cond))                                                                           \
            BPU_REVERT(msg);                                                                   \
    } while (0)
/* Emits an event whose name is a string literal. */
#define BPU_EMIT(name, data, len) bpu_emit((name), (uint32_t)(sizeof(name) - 1), (data), (len))

/* Whether the called method is `name` (a C string). Reads the method name once. */
int bpu_method_is(const char *name);

/* ---- argument reader: arguments are concatenated fixed-size values ---- */

/* Call arguments, read once into a static buffer by bpu_args(). */
struct bpu_args {
    const uint8_t *data;
    uint32_t len;
    uint32_t pos;
};
/* The call's arguments; reverts "arguments too long" beyond BPU_MAX_ARGS bytes. */
#define BPU_MAX_ARGS 8192u
struct bpu_args bpu_args(void);
/* Each reader takes the next value or reverts "bad arguments" when too few bytes remain. */
const uint8_t *bpu_arg_bytes(struct bpu_args *a, uint32_t n);
uint32_t bpu_arg_u32(struct bpu_args *a);
uint64_t bpu_arg_u64(struct bpu_args *a);
const uint8_t *bpu_arg_id(struct bpu_args *a); /* 32 bytes */
uint8_t bpu_arg_u8(struct bpu_args *a);
/* Everything not yet read (possibly nothing); *len receives its length. */
const uint8_t *bpu_arg_rest(struct bpu_args *a, uint32_t *len);
/* Reverts "bad arguments" unless every byte was read. */
void bpu_arg_end(const struct bpu_args *a);

#endif
