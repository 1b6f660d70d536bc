// BAR0 register file behind an AXI4-Lite slave: ID block, global control, engine descriptors, queue registers.
//
// Offsets, fields and reset values come from rtl/generated/bpu_defs.svh (hw/bpu.toml). The block
// keeps configuration and doorbells; the queue manager and engines keep the live state and report
// it back through the *_i ports. A soft reset (CTRL.SOFT_RESET) raises abort_o until dma_idle_i,
// then pulses soft_rst_o for one cycle, which also returns this block's registers to reset
// (the cycle counter keeps running).
module bpu_regs #(
  parameter int unsigned NQ        = 4,          // queue pairs
  parameter int unsigned NE        = 1,          // engine types (descriptors)
  parameter int unsigned DW        = 128,        // DMA data width in bits (reported in CAPS)
  parameter logic [31:0] BUILD_ID  = 32'h0,
  parameter logic [NE*16-1:0] ENG_TYPE   = '0,   // engine type codes
  parameter logic [NE*16-1:0] ENG_VER    = '0,   // engine revisions
  parameter logic [NE*8-1:0]  ENG_INST   = '0,   // instances per engine
  parameter logic [NE*8-1:0]  ENG_OPFIRST = '0,  // first opcode per engine
  parameter logic [NE*8-1:0]  ENG_OPCOUNT = '0   // opcode count per engine
) (
  input  logic              clk_i,
  input  logic              rst_ni,

  // AXI4-Lite slave (BAR0)
  input  logic              s_axil_awvalid_i,
  output logic              s_axil_awready_o,
  input  logic [15:0]       s_axil_awaddr_i,
  input  logic              s_axil_wvalid_i,
  output logic              s_axil_wready_o,
  input  logic [31:0]       s_axil_wdata_i,
  input  logic [3:0]        s_axil_wstrb_i,
  output logic              s_axil_bvalid_o,
  input  logic              s_axil_bready_i,
  output logic [1:0]        s_axil_bresp_o,
  input  logic              s_axil_arvalid_i,
  output logic              s_axil_arready_o,
  input  logic [15:0]       s_axil_araddr_i,
  output logic              s_axil_rvalid_o,
  input  logic              s_axil_rready_i,
  output logic [31:0]       s_axil_rdata_o,
  output logic [1:0]        s_axil_rresp_o,

  // global
  output logic              enable_o,        // CTRL.ENABLE
  output logic              abort_o,         // soft reset in progress: stop issuing DMA
  input  logic              dma_idle_i,      // DMA master has nothing outstanding
  output logic              soft_rst_o,      // one-cycle reset pulse for the datapath
  input  logic              idle_i,          // datapath idle (STATUS.IDLE)
  input  logic [3:0]        err_set_i,       // ERROR bits to set (one-cycle pulses)
  input  logic [NQ-1:0]     irq_set_i,       // interrupts raised (one-cycle pulses)

  // engines
  output logic [NE*32-1:0]  eng_enable_o,    // ENABLE per engine (instance masks)
  output logic [NE*32-1:0]  eng_stall_o,     // STALL per engine
  input  logic [NE-1:0]     eng_op_done_i,   // a command of engine e completed this cycle
  input  logic [NE*8-1:0]   eng_busy_cnt_i,  // instances of engine e busy this cycle

  // queues (flattened per queue)
  output logic [NQ*64-1:0]  q_sq_base_o,
  output logic [NQ*64-1:0]  q_cq_base_o,
  output logic [NQ*4-1:0]   q_sq_log2_o,
  output logic [NQ*4-1:0]   q_cq_log2_o,
  output logic [NQ-1:0]     q_enable_o,
  output logic [NQ-1:0]     q_irq_en_o,
  output logic [NQ*8-1:0]   q_coal_count_o,
  output logic [NQ*16-1:0]  q_coal_time_o,
  output logic [NQ*16-1:0]  q_sq_tail_o,
  output logic [NQ*16-1:0]  q_cq_head_o,
  input  logic [NQ*16-1:0]  q_sq_head_i,
  input  logic [NQ*16-1:0]  q_cq_tail_i,
  input  logic [NQ-1:0]     q_fault_i,
  input  logic [NQ-1:0]     q_cq_full_i
);
  `include "bpu_defs.svh"

  localparam logic [1:0] RESP_OKAY   = 2'b00;
  localparam logic [1:0] RESP_SLVERR = 2'b10;
  localparam int unsigned QLOG2_MAX  = `BPU_MAX_QUEUE_LOG2;

  // ---------------------------------------------------------------------------------------------
  // State

  logic              enable_q;
  logic [1:0]        rst_state_q;      // 0 idle, 1 draining, 2 pulse
  logic [3:0]        error_q;
  logic [NQ-1:0]     irq_status_q;
  logic [63:0]       cycles_q;
  logic [31:0]       cycles_hi_q;
  logic [31:0]       scratch_q;
  logic [NE*32-1:0]  eng_enable_q, eng_stall_q, eng_ops_q, eng_busy_q;
  logic [NQ*64-1:0]  sq_base_q, cq_base_q;
  logic [NQ*4-1:0]   sq_log2_q, cq_log2_q;
  logic [NQ-1:0]     q_en_q, q_irq_en_q;
  logic [NQ*8-1:0]   coal_count_q;
  logic [NQ*16-1:0]  coal_time_q;
  logic [NQ*16-1:0]  sq_tail_q, cq_head_q;

  // AXI-Lite handshake state: address and data of a write may arrive in either order.
  logic        aw_held_q, w_held_q, bvalid_q, rvalid_q;
  logic [15:0] awaddr_q;
  logic [31:0] wdata_q, rdata_q;
  logic [3:0]  wstrb_q;
  logic [1:0]  bresp_q, rresp_q;

  assign s_axil_awready_o = !aw_held_q;
  assign s_axil_wready_o  = !w_held_q;
  assign s_axil_bvalid_o  = bvalid_q;
  assign s_axil_bresp_o   = bresp_q;
  assign s_axil_arready_o = !rvalid_q;
  assign s_axil_rvalid_o  = rvalid_q;
  assign s_axil_rdata_o   = rdata_q;
  assign s_axil_rresp_o   = rresp_q;

  wire        aw_now  = aw_held_q || s_axil_awvalid_i;
  wire        w_now   = w_held_q || s_axil_wvalid_i;
  wire [15:0] wr_addr = aw_held_q ? awaddr_q : s_axil_awaddr_i;
  wire [31:0] wr_data_raw = w_held_q ? wdata_q : s_axil_wdata_i;
  wire [3:0]  wr_strb = w_held_q ? wstrb_q : s_axil_wstrb_i;
  // A write happens in the cycle both halves are present and the previous response was taken.
  wire        do_write = aw_now && w_now && !bvalid_q;
  wire        do_read  = s_axil_arvalid_i && !rvalid_q;

  // Write data with the bytes whose strobe is low cleared.
  function automatic logic [31:0] strobed(input logic [31:0] d, input logic [3:0] strb);
    for (int b = 0; b < 4; b++) strobed[8*b +: 8] = strb[b] ? d[8*b +: 8] : 8'h00;
  endfunction

  // ---------------------------------------------------------------------------------------------
  // Address decode (shared by reads and writes)

  localparam int unsigned ENG_BASE = 32'(`BPU_ENGINE_BASE);
  localparam int unsigned ENG_STRIDE = 32'(`BPU_ENGINE_STRIDE);
  localparam int unsigned Q_BASE = 32'(`BPU_QUEUE_BASE);
  localparam int unsigned Q_STRIDE = 32'(`BPU_QUEUE_STRIDE);

  function automatic logic in_engine(input logic [15:0] a);
    in_engine = (32'(a) >= ENG_BASE) && (32'(a) < ENG_BASE + NE * ENG_STRIDE);
  endfunction
  function automatic logic in_queue(input logic [15:0] a);
    in_queue = (32'(a) >= Q_BASE) && (32'(a) < Q_BASE + NQ * Q_STRIDE);
  endfunction
  // Strides are powers of two (checked below): index and offset are a shift and a mask, which
  // Yosys 0.23 does not derive from `/` and `%` (it built full dividers for them).
  localparam int unsigned ENG_SHIFT = $clog2(ENG_STRIDE);
  localparam int unsigned Q_SHIFT = $clog2(Q_STRIDE);
  function automatic int unsigned eng_index(input logic [15:0] a);
    eng_index = (32'(a) - ENG_BASE) >> ENG_SHIFT;
  endfunction
  function automatic int unsigned q_index(input logic [15:0] a);
    q_index = (32'(a) - Q_BASE) >> Q_SHIFT;
  endfunction
  function automatic logic [15:0] eng_off(input logic [15:0] a);
    eng_off = 16'((32'(a) - ENG_BASE) & (ENG_STRIDE - 1));
  endfunction
  function automatic logic [15:0] q_off(input logic [15:0] a);
    q_off = 16'((32'(a) - Q_BASE) & (Q_STRIDE - 1));
  endfunction

  generate
    if ((ENG_STRIDE & (ENG_STRIDE - 1)) != 0 || (Q_STRIDE & (Q_STRIDE - 1)) != 0) begin : g_bad_stride
      $error("bpu_regs: register block strides must be powers of two");
    end
  endgenerate

  // Simulation speed: the address decode and the read mux are evaluated inside the register
  // update branches of a read or write (functions of the address, the read mux inline below),
  // not as free-running combinational logic on the AXI-Lite address inputs, so a cycle-based
  // simulator only evaluates them when an access happens. The hardware is the same.

  // A read of this (word-aligned) address hits a register.
  function automatic logic rd_hit(input logic [15:0] a);
    if (in_engine(a)) begin
      case (eng_off(a))
        `BPU_ENGINE_ID, `BPU_ENGINE_SHAPE, `BPU_ENGINE_OPCODES, `BPU_ENGINE_ENABLE,
        `BPU_ENGINE_STALL, `BPU_ENGINE_OPS, `BPU_ENGINE_BUSY_CYCLES: rd_hit = 1'b1;
        default: rd_hit = 1'b0;
      endcase
    end else if (in_queue(a)) begin
      case (q_off(a))
        `BPU_QUEUE_SQ_BASE_LO, `BPU_QUEUE_SQ_BASE_HI, `BPU_QUEUE_CQ_BASE_LO, `BPU_QUEUE_CQ_BASE_HI,
        `BPU_QUEUE_SIZE, `BPU_QUEUE_CTRL, `BPU_QUEUE_COALESCE, `BPU_QUEUE_SQ_TAIL,
        `BPU_QUEUE_CQ_HEAD, `BPU_QUEUE_SQ_HEAD, `BPU_QUEUE_CQ_TAIL, `BPU_QUEUE_STATUS: rd_hit = 1'b1;
        default: rd_hit = 1'b0;
      endcase
    end else begin
      case (a)
        `BPU_GLOBAL_MAGIC, `BPU_GLOBAL_VERSION, `BPU_GLOBAL_BUILD_ID, `BPU_GLOBAL_CAPS,
        `BPU_GLOBAL_ENGINE_LIST, `BPU_GLOBAL_QUEUE_LAYOUT, `BPU_GLOBAL_CTRL, `BPU_GLOBAL_STATUS,
        `BPU_GLOBAL_ERROR, `BPU_GLOBAL_IRQ_STATUS, `BPU_GLOBAL_CYCLES_LO, `BPU_GLOBAL_CYCLES_HI,
        `BPU_GLOBAL_SCRATCH: rd_hit = 1'b1;
        default: rd_hit = 1'b0;
      endcase
    end
  endfunction

  // A write to this (word-aligned) address hits a register (read-only ones included).
  function automatic logic wr_hit(input logic [15:0] a);
    if (in_engine(a)) begin
      wr_hit = (eng_off(a) == `BPU_ENGINE_ENABLE) || (eng_off(a) == `BPU_ENGINE_STALL) ||
               (eng_off(a) == `BPU_ENGINE_ID) || (eng_off(a) == `BPU_ENGINE_SHAPE) ||
               (eng_off(a) == `BPU_ENGINE_OPCODES) || (eng_off(a) == `BPU_ENGINE_OPS) ||
               (eng_off(a) == `BPU_ENGINE_BUSY_CYCLES);
    end else if (in_queue(a)) begin
      wr_hit = q_off(a) <= `BPU_QUEUE_STATUS;
    end else begin
      wr_hit = (a <= `BPU_GLOBAL_SCRATCH);
    end
  endfunction

  // ---------------------------------------------------------------------------------------------
  // Soft reset sequencing: draining (abort DMA) -> one-cycle pulse -> idle.

  wire soft_rst = (rst_state_q == 2'd2);
  assign abort_o    = (rst_state_q == 2'd1);
  assign soft_rst_o = soft_rst;

  // ---------------------------------------------------------------------------------------------
  // Sequential logic

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      aw_held_q <= 1'b0;
      w_held_q  <= 1'b0;
      bvalid_q  <= 1'b0;
      rvalid_q  <= 1'b0;
      awaddr_q  <= '0;
      wdata_q   <= '0;
      wstrb_q   <= '0;
      bresp_q   <= RESP_OKAY;
      rdata_q   <= '0;
      rresp_q   <= RESP_OKAY;
      cycles_q  <= '0;
      cycles_hi_q <= '0;
      rst_state_q <= 2'd0;
    end else begin
      cycles_q <= cycles_q + 64'd1;

      // Hold an address or data half that arrived alone.
      if (s_axil_awvalid_i && !aw_held_q && !(do_write && !aw_held_q)) begin
        aw_held_q <= 1'b1;
        awaddr_q  <= s_axil_awaddr_i;
      end
      if (s_axil_wvalid_i && !w_held_q && !(do_write && !w_held_q)) begin
        w_held_q <= 1'b1;
        wdata_q  <= s_axil_wdata_i;
        wstrb_q  <= s_axil_wstrb_i;
      end
      if (do_write) begin
        aw_held_q <= 1'b0;
        w_held_q  <= 1'b0;
        bvalid_q  <= 1'b1;
        bresp_q   <= wr_hit(wr_addr & 16'hFFFC) ? RESP_OKAY : RESP_SLVERR;
      end else if (bvalid_q && s_axil_bready_i) begin
        bvalid_q <= 1'b0;
      end

      if (do_read) begin : read
        logic [15:0] a;
        int unsigned e, q;
        a = s_axil_araddr_i & 16'hFFFC;
        rvalid_q <= 1'b1;
        rresp_q  <= rd_hit(a) ? RESP_OKAY : RESP_SLVERR;
        // Read mux; addresses that hit nothing read as 0.
        rdata_q  <= 32'h0;
        if (in_engine(a)) begin
          e = eng_index(a);
          case (eng_off(a))
            `BPU_ENGINE_ID:          rdata_q <= {ENG_VER[16*e +: 16], ENG_TYPE[16*e +: 16]};
            `BPU_ENGINE_SHAPE:       rdata_q <= {(e + 1 < NE) ? 16'(ENG_BASE + (e + 1) * ENG_STRIDE) : 16'h0,
                                                 8'h0, ENG_INST[8*e +: 8]};
            `BPU_ENGINE_OPCODES:     rdata_q <= {16'h0, ENG_OPCOUNT[8*e +: 8], ENG_OPFIRST[8*e +: 8]};
            `BPU_ENGINE_ENABLE:      rdata_q <= eng_enable_q[32*e +: 32];
            `BPU_ENGINE_STALL:       rdata_q <= eng_stall_q[32*e +: 32];
            `BPU_ENGINE_OPS:         rdata_q <= eng_ops_q[32*e +: 32];
            `BPU_ENGINE_BUSY_CYCLES: rdata_q <= eng_busy_q[32*e +: 32];
            default: ;
          endcase
        end else if (in_queue(a)) begin
          q = q_index(a);
          case (q_off(a))
            `BPU_QUEUE_SQ_BASE_LO: rdata_q <= sq_base_q[64*q +: 32];
            `BPU_QUEUE_SQ_BASE_HI: rdata_q <= sq_base_q[64*q + 32 +: 32];
            `BPU_QUEUE_CQ_BASE_LO: rdata_q <= cq_base_q[64*q +: 32];
            `BPU_QUEUE_CQ_BASE_HI: rdata_q <= cq_base_q[64*q + 32 +: 32];
            `BPU_QUEUE_SIZE:       rdata_q <= {20'h0, cq_log2_q[4*q +: 4], 4'h0, sq_log2_q[4*q +: 4]};
            `BPU_QUEUE_CTRL:       rdata_q <= {30'h0, q_irq_en_q[q], q_en_q[q]};
            `BPU_QUEUE_COALESCE:   rdata_q <= {coal_time_q[16*q +: 16], 8'h0, coal_count_q[8*q +: 8]};
            `BPU_QUEUE_SQ_TAIL:    rdata_q <= {16'h0, sq_tail_q[16*q +: 16]};
            `BPU_QUEUE_CQ_HEAD:    rdata_q <= {16'h0, cq_head_q[16*q +: 16]};
            `BPU_QUEUE_SQ_HEAD:    rdata_q <= {16'h0, q_sq_head_i[16*q +: 16]};
            `BPU_QUEUE_CQ_TAIL:    rdata_q <= {16'h0, q_cq_tail_i[16*q +: 16]};
            `BPU_QUEUE_STATUS:     rdata_q <= {30'h0, q_cq_full_i[q], q_fault_i[q]};
            default: ;
          endcase
        end else begin
          case (a)
            `BPU_GLOBAL_MAGIC:        rdata_q <= `BPU_MAGIC;
            `BPU_GLOBAL_VERSION:      rdata_q <= {`BPU_VERSION_MAJOR, `BPU_VERSION_MINOR};
            `BPU_GLOBAL_BUILD_ID:     rdata_q <= BUILD_ID;
            `BPU_GLOBAL_CAPS:         rdata_q <= {8'h0, 8'(QLOG2_MAX), 8'(DW / 8), 8'(NQ)};
            `BPU_GLOBAL_ENGINE_LIST:  rdata_q <= (NE > 0) ? ENG_BASE : 32'h0;
            `BPU_GLOBAL_QUEUE_LAYOUT: rdata_q <= {16'(Q_STRIDE), 16'(Q_BASE)};
            `BPU_GLOBAL_CTRL:         rdata_q <= {30'h0, rst_state_q != 2'd0, enable_q};
            `BPU_GLOBAL_STATUS:       rdata_q <= {30'h0, idle_i, rst_state_q != 2'd0};
            `BPU_GLOBAL_ERROR:        rdata_q <= {28'h0, error_q};
            `BPU_GLOBAL_IRQ_STATUS:   rdata_q <= 32'(irq_status_q);
            `BPU_GLOBAL_CYCLES_LO:    rdata_q <= cycles_q[31:0];
            `BPU_GLOBAL_CYCLES_HI:    rdata_q <= cycles_hi_q;
            `BPU_GLOBAL_SCRATCH:      rdata_q <= scratch_q;
            default: ;
          endcase
        end
        if (a == `BPU_GLOBAL_CYCLES_LO) cycles_hi_q <= cycles_q[63:32];
      end else if (rvalid_q && s_axil_rready_i) begin
        rvalid_q <= 1'b0;
      end

      case (rst_state_q)
        2'd0: if (do_write && (wr_addr & 16'hFFFC) == `BPU_GLOBAL_CTRL &&
                  wr_strb[`BPU_GLOBAL_CTRL_SOFT_RESET_LSB / 8] &&
                  wr_data_raw[`BPU_GLOBAL_CTRL_SOFT_RESET_LSB]) rst_state_q <= 2'd1;
        2'd1: if (dma_idle_i) rst_state_q <= 2'd2;
        default: rst_state_q <= 2'd0;
      endcase
    end
  end

  // Configuration and status registers: reset by rst_ni and by the soft-reset pulse.
  always_ff @(posedge clk_i) begin
    if (!rst_ni || soft_rst) begin
      enable_q     <= 1'b0;
      error_q      <= '0;
      irq_status_q <= '0;
      scratch_q    <= `BPU_GLOBAL_SCRATCH_RESET;
      for (int e = 0; e < NE; e++) begin
        eng_enable_q[32*e +: 32] <= `BPU_ENGINE_ENABLE_RESET;
        eng_stall_q[32*e +: 32]  <= `BPU_ENGINE_STALL_RESET;
        eng_ops_q[32*e +: 32]    <= '0;
        eng_busy_q[32*e +: 32]   <= '0;
      end
      sq_base_q    <= '0;
      cq_base_q    <= '0;
      sq_log2_q    <= '0;
      cq_log2_q    <= '0;
      q_en_q       <= '0;
      q_irq_en_q   <= '0;
      for (int q = 0; q < NQ; q++) begin
        coal_count_q[8*q +: 8]  <= 8'(`BPU_QUEUE_COALESCE_RESET);
        coal_time_q[16*q +: 16] <= 16'(`BPU_QUEUE_COALESCE_RESET >> 16);
      end
      sq_tail_q    <= '0;
      cq_head_q    <= '0;
    end else begin
      error_q      <= error_q | err_set_i;
      irq_status_q <= irq_status_q | irq_set_i;
      for (int e = 0; e < NE; e++) begin
        eng_ops_q[32*e +: 32]  <= eng_ops_q[32*e +: 32] + 32'(eng_op_done_i[e]);
        eng_busy_q[32*e +: 32] <= eng_busy_q[32*e +: 32] + 32'(eng_busy_cnt_i[8*e +: 8]);
      end
      // Doorbells mean nothing while a queue is disabled: hold them at 0.
      for (int q = 0; q < NQ; q++) begin
        if (!q_en_q[q]) begin
          sq_tail_q[16*q +: 16] <= '0;
          cq_head_q[16*q +: 16] <= '0;
        end
      end

      if (do_write) begin : write
        logic [15:0] a;
        int unsigned e, q;
        logic qen;
        logic [31:0] wr_data;
        a = wr_addr & 16'hFFFC;
        wr_data = strobed(wr_data_raw, wr_strb);
        if (in_engine(a)) begin
          e = eng_index(a);
          case (eng_off(a))
            `BPU_ENGINE_ENABLE: eng_enable_q[32*e +: 32] <= wr_data;
            `BPU_ENGINE_STALL:  eng_stall_q[32*e +: 32]  <= wr_data;
            default: ;
          endcase
        end else if (in_queue(a)) begin
          q = q_index(a);
          qen = q_en_q[q];
          case (q_off(a))
            `BPU_QUEUE_SQ_BASE_LO: if (!qen) sq_base_q[64*q +: 32] <= wr_data & 32'hFFFF_FFC0;
            `BPU_QUEUE_SQ_BASE_HI: if (!qen) sq_base_q[64*q + 32 +: 32] <= wr_data;
            `BPU_QUEUE_CQ_BASE_LO: if (!qen) cq_base_q[64*q +: 32] <= wr_data & 32'hFFFF_FFF0;
            `BPU_QUEUE_CQ_BASE_HI: if (!qen) cq_base_q[64*q + 32 +: 32] <= wr_data;
            `BPU_QUEUE_SIZE: if (!qen) begin
              sq_log2_q[4*q +: 4] <= clamp_log2(wr_data[`BPU_QUEUE_SIZE_SQ_LOG2_LSB +: 4]);
              cq_log2_q[4*q +: 4] <= clamp_log2(wr_data[`BPU_QUEUE_SIZE_CQ_LOG2_LSB +: 4]);
            end
            `BPU_QUEUE_CTRL: begin
              q_en_q[q]     <= wr_data[`BPU_QUEUE_CTRL_ENABLE_LSB];
              q_irq_en_q[q] <= wr_data[`BPU_QUEUE_CTRL_IRQ_EN_LSB];
            end
            `BPU_QUEUE_COALESCE: if (!qen) begin
              coal_count_q[8*q +: 8]  <= wr_data[`BPU_QUEUE_COALESCE_COUNT_LSB +: 8];
              coal_time_q[16*q +: 16] <= wr_data[`BPU_QUEUE_COALESCE_TIME_LSB +: 16];
            end
            `BPU_QUEUE_SQ_TAIL: if (qen) begin
              if (wr_data < (32'd1 << sq_log2_q[4*q +: 4])) sq_tail_q[16*q +: 16] <= wr_data[15:0];
              else error_q[`BPU_GLOBAL_ERROR_DOORBELL_LSB] <= 1'b1;
            end
            `BPU_QUEUE_CQ_HEAD: if (qen) begin
              if (wr_data < (32'd1 << cq_log2_q[4*q +: 4])) cq_head_q[16*q +: 16] <= wr_data[15:0];
              else error_q[`BPU_GLOBAL_ERROR_DOORBELL_LSB] <= 1'b1;
            end
            default: ;
          endcase
        end else begin
          case (a)
            `BPU_GLOBAL_CTRL:       enable_q <= wr_data[`BPU_GLOBAL_CTRL_ENABLE_LSB];
            `BPU_GLOBAL_ERROR:      error_q <= (error_q | err_set_i) & ~wr_data[3:0];
            `BPU_GLOBAL_IRQ_STATUS: irq_status_q <= (irq_status_q | irq_set_i) & ~wr_data[NQ-1:0];
            `BPU_GLOBAL_SCRATCH:    scratch_q <= wr_data;
            default: ;
          endcase
        end
      end
      // A register access that hit nothing is a decode error.
      if (do_write) begin
        if (!wr_hit(wr_addr & 16'hFFFC)) error_q[`BPU_GLOBAL_ERROR_DECODE_LSB] <= 1'b1;
      end
      if (do_read) begin
        if (!rd_hit(s_axil_araddr_i & 16'hFFFC)) error_q[`BPU_GLOBAL_ERROR_DECODE_LSB] <= 1'b1;
      end
    end
  end

  // Ring sizes are 2^1 .. 2^QLOG2_MAX entries.
  function automatic logic [3:0] clamp_log2(input logic [3:0] v);
    if (v == 4'd0) clamp_log2 = 4'd1;
    else if (32'(v) > QLOG2_MAX) clamp_log2 = 4'(QLOG2_MAX);
    else clamp_log2 = v;
  endfunction

  assign enable_o       = enable_q;
  assign eng_enable_o   = eng_enable_q;
  assign eng_stall_o    = eng_stall_q;
  assign q_sq_base_o    = sq_base_q;
  assign q_cq_base_o    = cq_base_q;
  assign q_sq_log2_o    = sq_log2_q;
  assign q_cq_log2_o    = cq_log2_q;
  assign q_enable_o     = q_en_q;
  assign q_irq_en_o     = q_irq_en_q;
  assign q_coal_count_o = coal_count_q;
  assign q_coal_time_o  = coal_time_q;
  assign q_sq_tail_o    = sq_tail_q;
  assign q_cq_head_o    = cq_head_q;
endmodule
