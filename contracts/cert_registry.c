/* cert_registry.c: a certificate registry: issue and revoke certificate hashes, query status. */
/*
 * State: "c" ++ cert hash(32) -> status(u8: 1 issued, 2 revoked) ++ issuer id(32)
 *        ++ issued height(u64) ++ revoked height(u64, 0 while issued) ++ metadata.
 * Methods, argument layouts and events: contracts/README.md.
 */
#include "bpu.h"

#define MAX_METADATA 4096u
#define HEAD 49u /* status + issuer + two heights */

enum { UNKNOWN = 0, ISSUED = 1, REVOKED = 2 };

static uint8_t rec[HEAD + MAX_METADATA];

static void cert_key(uint8_t key[33], const uint8_t cert[32])
{
    key[0] = 'c';
    memcpy(key + 1, cert, 32);
}

/* Loads the record of `cert` into rec; returns its length, or 0 when unknown. */
static uint32_t load(const uint8_t key[33])
{
    uint32_t n = bpu_get(key, 33, rec, sizeof rec);
    if (n == BPU_ABSENT)
        return 0;
    BPU_REQUIRE(n >= HEAD && n <= sizeof rec, "corrupt state");
    return n;
}

static void issue(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *cert = bpu_arg_id(&a);
    uint32_t mlen;
    const uint8_t *meta = bpu_arg_rest(&a, &mlen);
    BPU_REQUIRE(mlen <= MAX_METADATA, "metadata too long");

    uint8_t key[33];
    cert_key(key, cert);
    BPU_REQUIRE(load(key) == 0, "already issued");
    rec[0] = ISSUED;
    bpu_caller(rec + 1);
    bpu_put64(rec + 33, bpu_height());
    bpu_put64(rec + 41, 0);
    memcpy(rec + HEAD, meta, mlen);
    bpu_set(key, sizeof key, rec, HEAD + mlen);

    uint8_t ev[64];
    memcpy(ev, cert, 32);
    memcpy(ev + 32, rec + 1, 32);
    BPU_EMIT("Issued", ev, sizeof ev);
}

static void revoke(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *cert = bpu_arg_id(&a);
    bpu_arg_end(&a);

    uint8_t key[33], caller[32];
    cert_key(key, cert);
    uint32_t n = load(key);
    BPU_REQUIRE(n != 0, "unknown certificate");
    bpu_caller(caller);
    BPU_REQUIRE(memcmp(rec + 1, caller, 32) == 0, "not issuer");
    BPU_REQUIRE(rec[0] == ISSUED, "already revoked");
    rec[0] = REVOKED;
    bpu_put64(rec + 41, bpu_height());
    bpu_set(key, sizeof key, rec, n);
    BPU_EMIT("Revoked", cert, 32);
}

static void status(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *cert = bpu_arg_id(&a);
    bpu_arg_end(&a);

    uint8_t key[33];
    cert_key(key, cert);
    uint32_t n = load(key);
    if (n == 0) {
        memset(rec, 0, HEAD);
        n = HEAD;
    }
    bpu_return(rec, n);
}

int main(void)
{
    if (bpu_method_is("status"))
        status();
    else if (bpu_method_is("issue"))
        issue();
    else if (bpu_method_is("revoke"))
        revoke();
    else
        BPU_REVERT("unknown method");
    return 0;
}
