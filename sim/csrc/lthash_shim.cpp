// C++ shim around the Verilated lthash_unit alone: reset, one-cycle steps, command/data/response handshakes (for sim/src/lthash.rs).
//
// One LtSim owns one model and is not thread-safe; the Rust side owns it from one thread. The
// Rust side loads the command fields and the current data beat, then calls lt_sim_step once per
// clock cycle with the valid/ready levels it wants driven; the step reports which handshakes
// happened in that cycle and keeps a copy of the response beat taken, if any.

#include "Vlthash_unit.h"
#include "verilated.h"

#include <cstdint>
#include <cstring>
#include <memory>

namespace {

// Bits of lt_sim_step's drive argument.
constexpr uint32_t kDriveCmdValid = 1u << 0;
constexpr uint32_t kDriveDataValid = 1u << 1;
constexpr uint32_t kDriveRspReady = 1u << 2;

// Bits of lt_sim_step's result.
constexpr uint32_t kCmdTaken = 1u << 0;
constexpr uint32_t kDataTaken = 1u << 1;
constexpr uint32_t kRspTaken = 1u << 2;
constexpr uint32_t kRspLast = 1u << 3;
constexpr uint32_t kIdle = 1u << 4;  // idle_o after the clock edge

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

struct LtSim {
  std::unique_ptr<VerilatedContext> ctx;
  std::unique_ptr<Vlthash_unit> top;
  uint64_t cycles = 0;
  uint8_t rsp[64] = {};

  void edge() {
    top->clk_i = 1;
    top->eval();
    cycles++;
    // Falling edge without an eval (as in shim.cpp): the next step's eval sees clk_i low
    // together with the new inputs.
    top->clk_i = 0;
  }
};

extern "C" {

LtSim* lt_sim_new(void) {
  auto* s = new LtSim();
  s->ctx = std::make_unique<VerilatedContext>();
  s->top = std::make_unique<Vlthash_unit>(s->ctx.get(), "lthash_unit");
  s->top->clk_i = 0;
  s->top->s_cmd_valid_i = 0;
  s->top->s_data_valid_i = 0;
  s->top->m_rsp_ready_i = 0;
  s->top->rst_ni = 0;
  s->top->eval();
  return s;
}

void lt_sim_free(LtSim* s) {
  if (s) {
    s->top->final();
    delete s;
  }
}

// Holds reset for `cycles` cycles (at least 1) with every valid and ready low, then releases it.
void lt_sim_reset(LtSim* s, uint32_t cycles) {
  auto* t = s->top.get();
  t->s_cmd_valid_i = 0;
  t->s_data_valid_i = 0;
  t->m_rsp_ready_i = 0;
  t->rst_ni = 0;
  for (uint32_t i = 0; i < (cycles ? cycles : 1); i++) {
    t->eval();
    s->edge();
  }
  t->rst_ni = 1;
  t->eval();
}

uint64_t lt_sim_cycles(const LtSim* s) { return s->cycles; }

// Loads the command fields (driven while a command is offered).
void lt_sim_set_cmd(LtSim* s, uint32_t op, uint32_t scratch, uint64_t len) {
  auto* t = s->top.get();
  t->s_cmd_op_i = op & 7;
  t->s_cmd_scratch_i = scratch & 1;
  t->s_cmd_len_i = len;
}

// Loads the data beat offered from now on. data: 64 bytes.
void lt_sim_set_data(LtSim* s, const uint8_t* data) { bytes_to(s->top->s_data_i, data); }

// One clock cycle with the given valid/ready levels; returns the handshakes of the cycle.
uint32_t lt_sim_step(LtSim* s, uint32_t drive) {
  auto* t = s->top.get();
  t->s_cmd_valid_i = (drive & kDriveCmdValid) != 0;
  t->s_data_valid_i = (drive & kDriveDataValid) != 0;
  t->m_rsp_ready_i = (drive & kDriveRspReady) != 0;
  t->eval();
  uint32_t r = 0;
  if (t->s_cmd_valid_i && t->s_cmd_ready_o) r |= kCmdTaken;
  if (t->s_data_valid_i && t->s_data_ready_o) r |= kDataTaken;
  if (t->m_rsp_valid_o && t->m_rsp_ready_i) {
    r |= kRspTaken;
    if (t->m_rsp_last_o) r |= kRspLast;
    bytes_from(t->m_rsp_data_o, s->rsp);
  }
  s->edge();
  if (t->idle_o) r |= kIdle;  // settled by the edge's eval
  return r;
}

// Copies the response beat taken by the last step that reported one. out: 64 bytes.
void lt_sim_rsp(const LtSim* s, uint8_t* out) { std::memcpy(out, s->rsp, 64); }

}  // extern "C"
