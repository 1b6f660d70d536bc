/* token.c: a fungible token contract: init, mint (owner only), transfer, balance, supply. */
/*
 * State: "owner" -> 32-byte id of the owner; "supply" -> u64 total minted;
 * "b" ++ id(32) -> u64 balance (absent = 0; a balance that drops to 0 is deleted).
 * Ids are caller ids: SHA-256 of the member's SEC1 public key (bpu_caller).
 * Methods, argument layouts and events: contracts/README.md.
 */
#include "bpu.h"

static const char OWNER[] = "owner";
static const char SUPPLY[] = "supply";

static uint64_t get_u64(const void *key, uint32_t klen)
{
    uint8_t v[8];
    uint32_t n = bpu_get(key, klen, v, sizeof v);
    if (n == BPU_ABSENT)
        return 0;
    if (n != 8)
        BPU_REVERT("corrupt state");
    return bpu_le64(v);
}

static void set_u64(const void *key, uint32_t klen, uint64_t value)
{
    uint8_t v[8];
    bpu_put64(v, value);
    bpu_set(key, klen, v, sizeof v);
}

static void balance_key(uint8_t key[33], const uint8_t id[32])
{
    key[0] = 'b';
    memcpy(key + 1, id, 32);
}

static uint64_t balance_of(const uint8_t id[32])
{
    uint8_t key[33];
    balance_key(key, id);
    return get_u64(key, sizeof key);
}

static void set_balance(const uint8_t id[32], uint64_t value)
{
    uint8_t key[33];
    balance_key(key, id);
    if (value == 0)
        bpu_delete(key, sizeof key);
    else
        set_u64(key, sizeof key, value);
}

static void init(void)
{
    struct bpu_args a = bpu_args();
    bpu_arg_end(&a);
    uint8_t owner[32];
    BPU_REQUIRE(bpu_get(OWNER, sizeof OWNER - 1, owner, sizeof owner) == BPU_ABSENT,
                "already initialized");
    bpu_caller(owner);
    bpu_set(OWNER, sizeof OWNER - 1, owner, sizeof owner);
}

static void mint(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *to = bpu_arg_id(&a);
    uint64_t amount = bpu_arg_u64(&a);
    bpu_arg_end(&a);

    uint8_t owner[32], caller[32];
    BPU_REQUIRE(bpu_get(OWNER, sizeof OWNER - 1, owner, sizeof owner) == 32, "not initialized");
    bpu_caller(caller);
    BPU_REQUIRE(memcmp(owner, caller, 32) == 0, "not owner");

    uint64_t supply = get_u64(SUPPLY, sizeof SUPPLY - 1);
    BPU_REQUIRE(supply + amount >= supply, "overflow");
    uint64_t balance = balance_of(to); /* balance <= supply, so it cannot overflow */
    set_u64(SUPPLY, sizeof SUPPLY - 1, supply + amount);
    set_balance(to, balance + amount);

    uint8_t ev[40];
    memcpy(ev, to, 32);
    bpu_put64(ev + 32, amount);
    BPU_EMIT("Mint", ev, sizeof ev);
}

static void transfer(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *to = bpu_arg_id(&a);
    uint64_t amount = bpu_arg_u64(&a);
    bpu_arg_end(&a);

    uint8_t from[32];
    bpu_caller(from);
    uint64_t from_balance = balance_of(from);
    BPU_REQUIRE(from_balance >= amount, "insufficient balance");
    set_balance(from, from_balance - amount);
    set_balance(to, balance_of(to) + amount); /* total supply bounds every balance */

    uint8_t ev[72];
    memcpy(ev, from, 32);
    memcpy(ev + 32, to, 32);
    bpu_put64(ev + 64, amount);
    BPU_EMIT("Transfer", ev, sizeof ev);
}

static void balance(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *id = bpu_arg_id(&a);
    bpu_arg_end(&a);
    uint8_t out[8];
    bpu_put64(out, balance_of(id));
    bpu_return(out, sizeof out);
}

static void supply(void)
{
    uint8_t out[8];
    bpu_put64(out, get_u64(SUPPLY, sizeof SUPPLY - 1));
    bpu_return(out, sizeof out);
}

static void owner(void)
{
    uint8_t out[32];
    BPU_REQUIRE(bpu_get(OWNER, sizeof OWNER - 1, out, sizeof out) == 32, "not initialized");
    bpu_return(out, sizeof out);
}

int main(void)
{
    if (bpu_method_is("transfer"))
        transfer();
    else if (bpu_method_is("balance"))
        balance();
    else if (bpu_method_is("mint"))
        mint();
    else if (bpu_method_is("init"))
        init();
    else if (bpu_method_is("supply"))
        supply();
    else if (bpu_method_is("owner"))
        owner();
    else
        BPU_REVERT("unknown method");
    return 0;
}
