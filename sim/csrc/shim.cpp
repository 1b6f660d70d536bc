// C++ shim around the Verilated bpu_top: drives its AXI4-Lite slave, serves its AXI4 DMA master from a host-memory arena, counts interrupts.
//
// One BpuSim owns one model. It is not thread-safe: the Rust side (sim/src/lib.rs) serialises every
// call. The arena is owned by Rust; the shim reads and writes it as the device would, storing each
// aligned 8-byte word of a write beat in ascending address order with release ordering, so that a
// host that sees a later word (say a completion's phase bit) also sees the earlier ones.

#include "Vbpu_top.h"
#include "verilated.h"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>

namespace {

constexpr unsigned kBytes = BPU_SIM_DW / 8;  // DMA bus width in bytes
constexpr unsigned kQueues = BPU_SIM_NQ;

// Copy bus lanes in and out of Verilator's port representation (uint64_t up to 64 bits, VlWide above).
template <typename T>
void lanes_to(T& port, const uint8_t* src) {
  if constexpr (sizeof(T) <= 8) {
    uint64_t v = 0;
    std::memcpy(&v, src, kBytes);
    port = static_cast<T>(v);
  } else {
    for (unsigned i = 0; i < kBytes / 4; i++) {
      uint32_t w;
      std::memcpy(&w, src + 4 * i, 4);
      port[i] = w;
    }
  }
}

template <typename T>
void lanes_from(const T& port, uint8_t* dst) {
  if constexpr (sizeof(T) <= 8) {
    uint64_t v = static_cast<uint64_t>(port);
    std::memcpy(dst, &v, kBytes);
  } else {
    for (unsigned i = 0; i < kBytes / 4; i++) {
      uint32_t w = port[i];
      std::memcpy(dst + 4 * i, &w, 4);
    }
  }
}

template <typename T>
uint64_t strobe_bits(const T& s) {
  return static_cast<uint64_t>(s);
}

struct Burst {
  uint64_t addr;      // address of beat 0, aligned down to the bus width
  unsigned beats;     // beats in the burst
  unsigned done = 0;  // beats moved so far
  uint64_t ready_at;  // first cycle at which data may move (read latency)
  bool err = false;   // the whole burst gets an error response
};

}  // namespace

struct BpuSim {
  std::unique_ptr<VerilatedContext> ctx;
  std::unique_ptr<Vbpu_top> top;
  uint8_t* mem;
  uint64_t mem_base;
  uint64_t mem_size;
  uint64_t cycles = 0;
  unsigned latency;

  std::deque<Burst> rd;      // accepted read bursts
  std::deque<Burst> wr;      // accepted write bursts waiting for data
  std::deque<std::pair<uint64_t, bool>> bresp;  // (ready_at, err) write responses owed
  bool wr_beat_err = false;  // the write burst being received touched memory outside the arena

  uint64_t irq_count[kQueues] = {};
  // Consecutive cycles the device has been idle: pulses between blocks (an error flag on its way
  // to the register file, say) need a few cycles to land after idle_o rises.
  unsigned idle_run = 0;
  static constexpr unsigned kSettle = 4;
  uint32_t fail_reads = 0, fail_writes = 0, drop_irqs = 0;

  bool in_arena(uint64_t addr, uint64_t len) const {
    return addr >= mem_base && addr - mem_base <= mem_size && len <= mem_size - (addr - mem_base);
  }

  // Drive the slave side of the DMA master from the shim's queues (clock low).
  void drive_dma() {
    top->m_axi_arready_i = rd.size() < 4;
    top->m_axi_awready_i = wr.size() < 4;
    top->m_axi_wready_i = !wr.empty();
    bool rv = !rd.empty() && cycles >= rd.front().ready_at;
    top->m_axi_rvalid_i = rv;
    uint8_t buf[kBytes] = {};
    if (rv) {
      const Burst& b = rd.front();
      uint64_t a = b.addr + uint64_t(b.done) * kBytes;
      bool ok = !b.err && in_arena(a, kBytes);
      if (ok) std::memcpy(buf, mem + (a - mem_base), kBytes);
      top->m_axi_rresp_i = ok ? 0 : (b.err ? 2 : 3);  // SLVERR for injected faults, DECERR outside
      top->m_axi_rlast_i = (b.done + 1 == b.beats);
    } else {
      top->m_axi_rresp_i = 0;
      top->m_axi_rlast_i = 0;
    }
    lanes_to(top->m_axi_rdata_i, buf);
    bool bv = !bresp.empty() && cycles >= bresp.front().first;
    top->m_axi_bvalid_i = bv;
    top->m_axi_bresp_i = (bv && bresp.front().second) ? 2 : 0;
  }

  // Apply one write beat: ascending aligned 8-byte words, each published with release ordering.
  bool write_beat(uint64_t addr, const uint8_t* data, uint64_t strb) {
    bool ok = true;
    for (unsigned w = 0; w < kBytes; w += 8) {
      uint64_t word_strb = (strb >> w) & 0xFF;
      if (!word_strb) continue;
      uint64_t a = addr + w;
      if (!in_arena(a, 8)) {
        ok = false;
        continue;
      }
      uint8_t* p = mem + (a - mem_base);
      std::atomic_thread_fence(std::memory_order_release);
      if (word_strb == 0xFF && (reinterpret_cast<uintptr_t>(p) & 7) == 0) {
        uint64_t v;
        std::memcpy(&v, data + w, 8);
        __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELEASE);
      } else {
        for (unsigned k = 0; k < 8; k++) {
          if (word_strb >> k & 1) __atomic_store_n(p + k, data[w + k], __ATOMIC_RELEASE);
        }
      }
    }
    return ok;
  }

  // One clock cycle: drive inputs, sample handshakes, rising edge, update the shim's state.
  void cycle() {
    drive_dma();
    top->eval();

    bool ar = top->m_axi_arvalid_o && top->m_axi_arready_i;
    bool r = top->m_axi_rvalid_i && top->m_axi_rready_o;
    bool aw = top->m_axi_awvalid_o && top->m_axi_awready_i;
    bool w = top->m_axi_wvalid_o && top->m_axi_wready_i;
    bool b = top->m_axi_bvalid_i && top->m_axi_bready_o;
    uint64_t araddr = top->m_axi_araddr_o, awaddr = top->m_axi_awaddr_o;
    unsigned arlen = top->m_axi_arlen_o, awlen = top->m_axi_awlen_o;
    uint8_t wdata[kBytes];
    lanes_from(top->m_axi_wdata_o, wdata);
    uint64_t wstrb = strobe_bits(top->m_axi_wstrb_o);
    bool wlast = top->m_axi_wlast_o;

    top->clk_i = 1;
    top->eval();
    cycles++;
    // irq_o is registered: sampled right after the edge, each one-cycle pulse counts once, even
    // when it is the last thing the device does before going quiet.
    uint32_t irq = top->irq_o;

    for (unsigned q = 0; q < kQueues; q++) {
      if (irq >> q & 1) {
        if (drop_irqs) drop_irqs--;
        else irq_count[q]++;
      }
    }
    if (ar) {
      Burst nb{araddr & ~uint64_t(kBytes - 1), arlen + 1, 0, cycles + latency, false};
      if (fail_reads) {
        fail_reads--;
        nb.err = true;
      }
      rd.push_back(nb);
    }
    if (r) {
      if (++rd.front().done == rd.front().beats) rd.pop_front();
    }
    if (aw) {
      Burst nb{awaddr & ~uint64_t(kBytes - 1), awlen + 1, 0, 0, false};
      if (fail_writes) {
        fail_writes--;
        nb.err = true;
      }
      wr.push_back(nb);
    }
    if (w) {
      Burst& f = wr.front();
      uint64_t a = f.addr + uint64_t(f.done) * kBytes;
      if (!f.err && !write_beat(a, wdata, wstrb)) wr_beat_err = true;
      f.done++;
      if (wlast || f.done == f.beats) {
        bresp.emplace_back(cycles + 1, f.err || wr_beat_err || f.done != f.beats || !wlast);
        wr_beat_err = false;
        wr.pop_front();
      }
    }
    if (b) bresp.pop_front();

    // Falling edge without an eval: no logic in the design uses the falling edge, and every output
    // is a function of registers only (settled by the eval above), so a separate eval here would
    // compute nothing new. The next cycle's first eval sees clk_i low before it goes high again.
    top->clk_i = 0;
    bool idle_now = top->idle_o && rd.empty() && wr.empty() && bresp.empty();
    idle_run = idle_now ? idle_run + 1 : 0;
  }

  bool quiet() const { return idle_run >= kSettle; }
};

extern "C" {

BpuSim* bpu_sim_new(uint8_t* mem, uint64_t mem_base, uint64_t mem_size, uint32_t latency) {
  auto* s = new BpuSim();
  s->ctx = std::make_unique<VerilatedContext>();
  s->top = std::make_unique<Vbpu_top>(s->ctx.get(), "bpu_top");
  s->mem = mem;
  s->mem_base = mem_base;
  s->mem_size = mem_size;
  s->latency = latency;
  s->top->clk_i = 0;
  s->top->rst_ni = 0;
  s->top->s_axil_awvalid_i = 0;
  s->top->s_axil_wvalid_i = 0;
  s->top->s_axil_bready_i = 0;
  s->top->s_axil_arvalid_i = 0;
  s->top->s_axil_rready_i = 0;
  for (int i = 0; i < 8; i++) s->cycle();
  s->top->rst_ni = 1;
  s->cycle();
  return s;
}

void bpu_sim_free(BpuSim* s) {
  if (s) {
    s->top->final();
    delete s;
  }
}

uint32_t bpu_sim_dma_bytes(void) { return kBytes; }
uint32_t bpu_sim_queues(void) { return kQueues; }
uint64_t bpu_sim_cycles(const BpuSim* s) { return s->cycles; }

// One AXI4-Lite write. Returns the BRESP (0 OKAY), or -1 if the slave did not answer in time.
int32_t bpu_sim_reg_write(BpuSim* s, uint32_t addr, uint32_t value) {
  auto* t = s->top.get();
  t->s_axil_awvalid_i = 1;
  t->s_axil_awaddr_i = addr;
  t->s_axil_wvalid_i = 1;
  t->s_axil_wdata_i = value;
  t->s_axil_wstrb_i = 0xF;
  t->s_axil_bready_i = 1;
  bool aw_done = false, w_done = false;
  for (int i = 0; i < 1000; i++) {
    t->eval();
    bool aw = t->s_axil_awvalid_i && t->s_axil_awready_o;
    bool w = t->s_axil_wvalid_i && t->s_axil_wready_o;
    bool b = t->s_axil_bvalid_o;
    int32_t resp = t->s_axil_bresp_o;
    s->cycle();
    if (aw) {
      aw_done = true;
      t->s_axil_awvalid_i = 0;
    }
    if (w) {
      w_done = true;
      t->s_axil_wvalid_i = 0;
    }
    if (b && aw_done && w_done) {
      t->s_axil_bready_i = 0;
      return resp;
    }
  }
  t->s_axil_awvalid_i = 0;
  t->s_axil_wvalid_i = 0;
  t->s_axil_bready_i = 0;
  return -1;
}

// One AXI4-Lite read into *value. Returns the RRESP (0 OKAY), or -1 if the slave did not answer.
int32_t bpu_sim_reg_read(BpuSim* s, uint32_t addr, uint32_t* value) {
  auto* t = s->top.get();
  t->s_axil_arvalid_i = 1;
  t->s_axil_araddr_i = addr;
  t->s_axil_rready_i = 1;
  bool ar_done = false;
  for (int i = 0; i < 1000; i++) {
    t->eval();
    bool ar = t->s_axil_arvalid_i && t->s_axil_arready_o;
    bool r = t->s_axil_rvalid_o;
    uint32_t data = t->s_axil_rdata_o;
    int32_t resp = t->s_axil_rresp_o;
    s->cycle();
    if (ar) {
      ar_done = true;
      t->s_axil_arvalid_i = 0;
    }
    if (r && ar_done) {
      t->s_axil_rready_i = 0;
      *value = data;
      return resp;
    }
  }
  t->s_axil_arvalid_i = 0;
  t->s_axil_rready_i = 0;
  return -1;
}

// Run up to max_cycles, stopping early once the device and the shim are quiet.
// Returns the cycles run; irq counts accumulate in the per-queue counters.
uint64_t bpu_sim_run(BpuSim* s, uint64_t max_cycles) {
  uint64_t n = 0;
  while (n < max_cycles) {
    s->cycle();
    n++;
    if (s->quiet()) break;
  }
  return n;
}

bool bpu_sim_quiet(const BpuSim* s) { return s->quiet(); }

uint64_t bpu_sim_irq_count(const BpuSim* s, uint32_t q) { return q < kQueues ? s->irq_count[q] : 0; }

void bpu_sim_fail_reads(BpuSim* s, uint32_t n) { s->fail_reads = n; }
void bpu_sim_fail_writes(BpuSim* s, uint32_t n) { s->fail_writes = n; }
void bpu_sim_drop_irqs(BpuSim* s, uint32_t n) { s->drop_irqs = n; }

}  // extern "C"
