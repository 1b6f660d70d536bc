/* iot_anchor.c: anchors IoT data batches: devices, per-device sequenced Merkle roots. */
/*
 * State: "d" ++ device(32) -> owner id(32);
 *        "a" ++ device(32) ++ sequence(u64 LE) -> root(32) ++ count(u32) ++ height(u64).
 * The gateway collects a device's readings into a batch, computes its Merkle root (RFC 6962)
 * and anchors it under the next sequence number; one anchor per (device, sequence).
 * Methods, argument layouts and events: contracts/README.md.
 */
#include "bpu.h"

static void device_key(uint8_t key[33], const uint8_t device[32])
{
    key[0] = 'd';
    memcpy(key + 1, device, 32);
}

static void anchor_key(uint8_t key[41], const uint8_t device[32], uint64_t seq)
{
    key[0] = 'a';
    memcpy(key + 1, device, 32);
    bpu_put64(key + 33, seq);
}

static void register_device(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *device = bpu_arg_id(&a);
    bpu_arg_end(&a);

    uint8_t key[33], ev[64];
    device_key(key, device);
    BPU_REQUIRE(bpu_get(key, sizeof key, 0, 0) == BPU_ABSENT, "device exists");
    memcpy(ev, device, 32);
    bpu_caller(ev + 32);
    bpu_set(key, sizeof key, ev + 32, 32);
    BPU_EMIT("DeviceRegistered", ev, sizeof ev);
}

static void anchor(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *device = bpu_arg_id(&a);
    uint64_t seq = bpu_arg_u64(&a);
    const uint8_t *root = bpu_arg_id(&a);
    uint32_t count = bpu_arg_u32(&a);
    bpu_arg_end(&a);

    uint8_t dkey[33], owner[32], caller[32];
    device_key(dkey, device);
    BPU_REQUIRE(bpu_get(dkey, sizeof dkey, owner, sizeof owner) == 32, "unknown device");
    bpu_caller(caller);
    BPU_REQUIRE(memcmp(owner, caller, 32) == 0, "not device owner");
    BPU_REQUIRE(count > 0, "empty batch");

    uint8_t akey[41];
    anchor_key(akey, device, seq);
    BPU_REQUIRE(bpu_get(akey, sizeof akey, 0, 0) == BPU_ABSENT, "already anchored");
    uint8_t rec[44];
    memcpy(rec, root, 32);
    bpu_put32(rec + 32, count);
    bpu_put64(rec + 36, bpu_height());
    bpu_set(akey, sizeof akey, rec, sizeof rec);

    uint8_t ev[76];
    memcpy(ev, device, 32);
    bpu_put64(ev + 32, seq);
    memcpy(ev + 40, root, 32);
    bpu_put32(ev + 72, count);
    BPU_EMIT("Anchored", ev, sizeof ev);
}

static void lookup(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *device = bpu_arg_id(&a);
    uint64_t seq = bpu_arg_u64(&a);
    bpu_arg_end(&a);

    uint8_t akey[41], rec[44];
    anchor_key(akey, device, seq);
    BPU_REQUIRE(bpu_get(akey, sizeof akey, rec, sizeof rec) == sizeof rec, "no such anchor");
    bpu_return(rec, sizeof rec);
}

static void device_owner(void)
{
    struct bpu_args a = bpu_args();
    const uint8_t *device = bpu_arg_id(&a);
    bpu_arg_end(&a);

    uint8_t key[33], owner[32];
    device_key(key, device);
    BPU_REQUIRE(bpu_get(key, sizeof key, owner, sizeof owner) == 32, "unknown device");
    bpu_return(owner, sizeof owner);
}

int main(void)
{
    if (bpu_method_is("anchor"))
        anchor();
    else if (bpu_method_is("lookup"))
        lookup();
    else if (bpu_method_is("register_device"))
        register_device();
    else if (bpu_method_is("device_owner"))
        device_owner();
    else
        BPU_REVERT("unknown method");
    return 0;
}
