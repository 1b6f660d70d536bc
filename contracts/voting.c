/* voting.c: simple on-chain polls: create a proposal, one vote per member, tally. */
/*
 * State: "p" ++ proposal(32) -> options(u32) ++ deadline height(u64) ++ creator id(32);
 *        "v" ++ proposal(32) ++ voter id(32) -> option(u32);
 *        "t" ++ proposal(32) ++ option(u32 LE) -> votes(u64), absent = 0.
 * Votes are accepted while the block height is <= the deadline.
 * Methods, argument layouts and events: contracts/README.md.
 */
#include "bpu.h"

#define MAX_OPTIONS 32u

struct proposal {
    uint32_t options;
    uint64_t deadline;
};

static void key_of(uint8_t *key, char tag, const uint8_t id[32])
{
    key[0] = (uint8_t)tag;
    memcpy(key + 1, id, 32);
}

static struct proposal load(const uint8_t id[32])
{
    uint8_t key[33], rec[44];
    key_of(key, 'p', id);
    BPU_REQUIRE(bpu_get(key, sizeof key, rec, sizeof rec) == sizeof rec, "unknown proposal");
    struct proposal p = {bpu_le32(rec), bpu_le64(rec + 4)};
    BPU_REQUIRE(p.options >= 1 && p.options <= MAX_OPTIONS, "corrupt state");
    return p;
}

static uint64_t count_of(const uint8_t key[37])
{
    uint8_t v[8];
    uint32_t n = bpu_get(key, 37, v, sizeof v);
    if (n == BPU_ABSENT)
        return 0;
    BPU_REQUIRE(n == 8, "corrupt state");
    return bpu_le64(v);
}

static void create(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *id = bpu_arg_id(&a);
    uint32_t options = bpu_arg_u32(&a);
    uint64_t deadline = bpu_arg_u64(&a);
    bpu_arg_end(&a);

    BPU_REQUIRE(options >= 1 && options <= MAX_OPTIONS, "bad option count");
    BPU_REQUIRE(deadline >= bpu_height(), "deadline passed");
    uint8_t key[33], rec[44];
    key_of(key, 'p', id);
    BPU_REQUIRE(bpu_get(key, sizeof key, 0, 0) == BPU_ABSENT, "proposal exists");
    bpu_put32(rec, options);
    bpu_put64(rec + 4, deadline);
    bpu_caller(rec + 12);
    bpu_set(key, sizeof key, rec, sizeof rec);

    uint8_t ev[44];
    memcpy(ev, id, 32);
    bpu_put32(ev + 32, options);
    bpu_put64(ev + 36, deadline);
    BPU_EMIT("Created", ev, sizeof ev);
}

static void vote(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *id = bpu_arg_id(&a);
    uint32_t option = bpu_arg_u32(&a);
    bpu_arg_end(&a);

    struct proposal p = load(id);
    BPU_REQUIRE(bpu_height() <= p.deadline, "voting closed");
    BPU_REQUIRE(option < p.options, "no such option");

    uint8_t vkey[65], opt[4];
    key_of(vkey, 'v', id);
    bpu_caller(vkey + 33);
    BPU_REQUIRE(bpu_get(vkey, sizeof vkey, 0, 0) == BPU_ABSENT, "already voted");
    bpu_put32(opt, option);
    bpu_set(vkey, sizeof vkey, opt, sizeof opt);

    uint8_t tkey[37], v[8];
    key_of(tkey, 't', id);
    bpu_put32(tkey + 33, option);
    bpu_put64(v, count_of(tkey) + 1);
    bpu_set(tkey, sizeof tkey, v, sizeof v);

    uint8_t ev[68];
    memcpy(ev, id, 32);
    memcpy(ev + 32, vkey + 33, 32);
    bpu_put32(ev + 64, option);
    BPU_EMIT("Voted", ev, sizeof ev);
}

static void tally(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *id = bpu_arg_id(&a);
    bpu_arg_end(&a);

    struct proposal p = load(id);
    uint8_t out[12 + 8 * MAX_OPTIONS], tkey[37];
    bpu_put32(out, p.options);
    bpu_put64(out + 4, p.deadline);
    key_of(tkey, 't', id);
    for (uint32_t i = 0; i < p.options; i++) {
        bpu_put32(tkey + 33, i);
        bpu_put64(out + 12 + 8 * i, count_of(tkey));
    }
    bpu_return(out, 12 + 8 * p.options);
}

int main(void)
{
    if (bpu_method_is("vote"))
        vote();
    else if (bpu_method_is("tally"))
        tally();
    else if (bpu_method_is("create"))
        create();
    else
        BPU_REVERT("unknown method");
    return 0;
}
