// C++ shim around the Verilated blake3_hasher alone: reset, one-cycle steps, header/beat/output handshakes (for sim/src/blake3.rs).
//
// One B3Sim owns one model and is not thread-safe; the Rust side owns it from one thread. The
// Rust side loads the header fields and the current message beat, then calls b3_sim_step once per
// clock cycle with the valid/ready levels it wants driven; the step reports which handshakes
// happened in that cycle and keeps a copy of the output block taken, if any.

#include "Vblake3_hasher.h"
#include "verilated.h"

#include <cstdint>
#include <cstring>
#include <memory>

namespace {

// Bits of b3_sim_step's drive argument.
constexpr uint32_t kDriveHdrValid = 1u << 0;
constexpr uint32_t kDriveMsgValid = 1u << 1;
constexpr uint32_t kDriveOutReady = 1u << 2;

// Bits of b3_sim_step's result.
constexpr uint32_t kHdrTaken = 1u << 0;
constexpr uint32_t kMsgTaken = 1u << 1;
constexpr uint32_t kOutTaken = 1u << 2;
constexpr uint32_t kOutLast = 1u << 3;
constexpr uint32_t kBusy = 1u << 4;  // busy_o after the clock edge

template <std::size_t N>
void bytes_to(VlWide<N>& port, const uint8_t* src) {
  for (std::size_t i = 0; i < N; i++) {
    uint32_t w;
    std::memcpy(&w, src + 4 * i, 4);
    port[i] = w;
  }
}

template <std::size_t N>
void bytes_from(const VlWide<N>& port, uint8_t* dst) {
  for (std::size_t i = 0; i < N; i++) {
    uint32_t w = port[i];
    std::memcpy(dst + 4 * i, &w, 4);
  }
}

}  // namespace

struct B3Sim {
  std::unique_ptr<VerilatedContext> ctx;
  std::unique_ptr<Vblake3_hasher> top;
  uint64_t cycles = 0;
  uint8_t out[64] = {};

  void edge() {
    top->clk_i = 1;
    top->eval();
    cycles++;
    // Falling edge without an eval (as in shim.cpp): nothing uses it; the next step's eval sees
    // clk_i low together with the new inputs.
    top->clk_i = 0;
  }
};

extern "C" {

B3Sim* b3_sim_new(void) {
  auto* s = new B3Sim();
  s->ctx = std::make_unique<VerilatedContext>();
  s->top = std::make_unique<Vblake3_hasher>(s->ctx.get(), "blake3_hasher");
  s->top->clk_i = 0;
  s->top->s_hdr_valid_i = 0;
  s->top->s_msg_valid_i = 0;
  s->top->m_out_ready_i = 0;
  s->top->rst_ni = 0;
  s->top->eval();
  return s;
}

void b3_sim_free(B3Sim* s) {
  if (s) {
    s->top->final();
    delete s;
  }
}

// Holds reset for `cycles` cycles (at least 1) with every valid and ready low, then releases it.
void b3_sim_reset(B3Sim* s, uint32_t cycles) {
  auto* t = s->top.get();
  t->s_hdr_valid_i = 0;
  t->s_msg_valid_i = 0;
  t->m_out_ready_i = 0;
  t->rst_ni = 0;
  for (uint32_t i = 0; i < (cycles ? cycles : 1); i++) {
    t->eval();
    s->edge();
  }
  t->rst_ni = 1;
  t->eval();
}

uint64_t b3_sim_cycles(const B3Sim* s) { return s->cycles; }

// Loads the header fields (driven while the header is offered). key: 32 bytes.
void b3_sim_set_header(B3Sim* s, uint32_t mode, const uint8_t* key, uint32_t flags,
                       uint64_t ctx_len, uint64_t len, uint32_t out_blocks) {
  auto* t = s->top.get();
  t->s_hdr_mode_i = mode & 3;
  bytes_to(t->s_hdr_key_i, key);
  t->s_hdr_flags_i = flags & 0xFF;
  t->s_hdr_ctx_len_i = ctx_len;
  t->s_hdr_len_i = len;
  t->s_hdr_out_blocks_i = out_blocks;
}

// Loads the message beat offered from now on. data: 64 bytes.
void b3_sim_set_beat(B3Sim* s, const uint8_t* data) { bytes_to(s->top->s_msg_data_i, data); }

// One clock cycle with the given valid/ready levels; returns the handshakes of the cycle.
uint32_t b3_sim_step(B3Sim* s, uint32_t drive) {
  auto* t = s->top.get();
  t->s_hdr_valid_i = (drive & kDriveHdrValid) != 0;
  t->s_msg_valid_i = (drive & kDriveMsgValid) != 0;
  t->m_out_ready_i = (drive & kDriveOutReady) != 0;
  t->eval();
  uint32_t r = 0;
  if (t->s_hdr_valid_i && t->s_hdr_ready_o) r |= kHdrTaken;
  if (t->s_msg_valid_i && t->s_msg_ready_o) r |= kMsgTaken;
  if (t->m_out_valid_o && t->m_out_ready_i) {
    r |= kOutTaken;
    if (t->m_out_last_o) r |= kOutLast;
    bytes_from(t->m_out_data_o, s->out);
  }
  s->edge();
  if (t->busy_o) r |= kBusy;  // a register output: settled by the edge's eval
  return r;
}

// Copies the output block taken by the last step that reported one. out: 64 bytes.
void b3_sim_out(const B3Sim* s, uint8_t* out) { std::memcpy(out, s->out, 64); }

}  // extern "C"
