// Queue manager: fetches submission entries from host rings, writes completion entries, coalesces interrupts.
//
// Fetch: round-robin over enabled, fault-free queues whose SQ tail differs from head; one 64-byte
// entry per DMA read, handed to the dispatcher with its queue id. Completion: one 16-byte entry
// per DMA write at the CQ tail with the current phase; the ring never overflows (a full CQ holds
// the completion stream until the host moves CQ_HEAD). An interrupt for queue q fires when
// COUNT completions are pending or the oldest pending one has waited TIME cycles.
module queue_mgr #(
  parameter int unsigned NQ = 4,
  parameter int unsigned DW = 128
) (
  input  logic              clk_i,
  input  logic              rst_ni,
  input  logic              enable_i,          // global CTRL.ENABLE

  // queue configuration and doorbells (from bpu_regs)
  input  logic [NQ*64-1:0]  q_sq_base_i,
  input  logic [NQ*64-1:0]  q_cq_base_i,
  input  logic [NQ*4-1:0]   q_sq_log2_i,
  input  logic [NQ*4-1:0]   q_cq_log2_i,
  input  logic [NQ-1:0]     q_enable_i,
  input  logic [NQ-1:0]     q_irq_en_i,
  input  logic [NQ*8-1:0]   q_coal_count_i,
  input  logic [NQ*16-1:0]  q_coal_time_i,
  input  logic [NQ*16-1:0]  q_sq_tail_i,
  input  logic [NQ*16-1:0]  q_cq_head_i,
  // live state (to bpu_regs)
  output logic [NQ*16-1:0]  q_sq_head_o,
  output logic [NQ*16-1:0]  q_cq_tail_o,
  output logic [NQ-1:0]     q_fault_o,
  output logic [NQ-1:0]     q_cq_full_o,
  output logic [1:0]        err_set_o,         // {CQ_WRITE, SQ_FETCH} pulses
  output logic [NQ-1:0]     irq_o,             // one-cycle interrupt pulses, one per queue
  output logic              idle_o,

  // fetched commands (to the dispatcher)
  output logic              m_cmd_valid_o,
  input  logic              m_cmd_ready_i,
  output logic [511:0]      m_cmd_sqe_o,
  output logic [7:0]        m_cmd_qid_o,

  // completions (from the completion arbiter)
  input  logic              s_cpl_valid_i,
  output logic              s_cpl_ready_o,
  input  logic [7:0]        s_cpl_qid_i,
  input  logic [15:0]       s_cpl_cid_i,
  input  logic [14:0]       s_cpl_status_i,
  input  logic [31:0]       s_cpl_result_i,

  // DMA client port
  output logic              m_rd_req_valid_o,
  input  logic              m_rd_req_ready_i,
  output logic [63:0]       m_rd_req_addr_o,
  output logic [15:0]       m_rd_req_len_o,
  input  logic              s_rd_valid_i,
  output logic              s_rd_ready_o,
  input  logic [DW-1:0]     s_rd_data_i,
  input  logic              s_rd_last_i,
  input  logic              s_rd_err_i,
  output logic              m_wr_req_valid_o,
  input  logic              m_wr_req_ready_i,
  output logic [63:0]       m_wr_req_addr_o,
  output logic [15:0]       m_wr_req_len_o,
  output logic              m_wr_valid_o,
  input  logic              m_wr_ready_i,
  output logic [DW-1:0]     m_wr_data_o,
  output logic              m_wr_last_o,
  input  logic              s_wr_done_valid_i,
  input  logic              s_wr_done_err_i
);
  `include "bpu_defs.svh"

  localparam int unsigned B       = DW / 8;
  localparam int unsigned SQE_BEATS = (64 + B - 1) / B;
  localparam int unsigned CQE_BEATS = (16 + B - 1) / B;
  localparam int unsigned QW      = (NQ > 1) ? $clog2(NQ) : 1;

  function automatic logic [15:0] ring_mask(input logic [3:0] log2);
    ring_mask = 16'((32'd1 << log2) - 32'd1);
  endfunction

  // ---------------------------------------------------------------------------------------------
  // Per-queue live state

  logic [NQ*16-1:0] sq_head_q, cq_tail_q;
  logic [NQ-1:0]    phase_q, fault_q;
  logic [NQ*8-1:0]  pend_q;      // completions written since the last interrupt (saturating)
  logic [NQ*16-1:0] timer_q;     // cycles since the oldest pending completion

  // ---------------------------------------------------------------------------------------------
  // Submission fetch

  typedef enum logic [1:0] {F_IDLE, F_REQ, F_DATA, F_OUT} fstate_e;
  fstate_e          f_state_q;
  logic [QW-1:0]    f_q_q;       // queue being fetched
  logic [QW-1:0]    f_rr_q;      // round-robin pointer
  logic [511:0]     f_sqe_q;
  logic [$clog2(SQE_BEATS+1)-1:0] f_beat_q;

  // Which queues have entries to fetch.
  logic [NQ-1:0] f_want;
  always_comb begin
    for (int q = 0; q < NQ; q++) begin
      f_want[q] = enable_i && q_enable_i[q] && !fault_q[q] &&
                  (sq_head_q[16*q +: 16] != q_sq_tail_i[16*q +: 16]);
    end
  end

  // Round-robin pick starting at f_rr_q.
  logic          f_pick_ok;
  logic [QW-1:0] f_pick, f_pick_next;
  rr_pick #(.N(NQ), .IW(QW)) u_pick (.req_i(f_want), .start_i(f_rr_q), .ok_o(f_pick_ok), .pick_o(f_pick),
                                    .next_o(f_pick_next));

  assign m_rd_req_valid_o = (f_state_q == F_REQ);
  // Per-queue selects are written as constant-index muxes (a variable part-select of a wide
  // vector is slow to simulate).
  always_comb begin
    m_rd_req_addr_o = '0;
    for (int q = 0; q < NQ; q++) begin
      if (32'(f_q_q) == q) m_rd_req_addr_o = q_sq_base_i[64*q +: 64] + {42'h0, sq_head_q[16*q +: 16], 6'h0};
    end
  end
  assign m_rd_req_len_o   = 16'd64;
  assign s_rd_ready_o     = (f_state_q == F_DATA);
  assign m_cmd_valid_o    = (f_state_q == F_OUT);
  assign m_cmd_sqe_o      = f_sqe_q;
  assign m_cmd_qid_o      = 8'(f_q_q);

  // ---------------------------------------------------------------------------------------------
  // Completion write

  typedef enum logic [1:0] {C_IDLE, C_REQ, C_DATA, C_WAIT} cstate_e;
  cstate_e        c_state_q;
  logic [QW-1:0]  c_q_q;
  logic [127:0]   c_entry_q;
  logic [$clog2(CQE_BEATS+1)-1:0] c_beat_q;

  wire [QW-1:0] cpl_q   = QW'(s_cpl_qid_i);
  wire          cpl_bad = (32'(s_cpl_qid_i) >= NQ) || !q_enable_i[cpl_q] || fault_q[cpl_q];
  wire [15:0]   cpl_next_tail = (cq_tail_q[16*cpl_q +: 16] + 16'd1) & ring_mask(q_cq_log2_i[4*cpl_q +: 4]);
  wire          cpl_full = (cpl_next_tail == q_cq_head_i[16*cpl_q +: 16]);

  // Accept a completion when idle: drop it if its queue is gone, wait while its ring is full.
  assign s_cpl_ready_o = (c_state_q == C_IDLE) && (cpl_bad || !cpl_full);

  assign m_wr_req_valid_o = (c_state_q == C_REQ);
  always_comb begin
    m_wr_req_addr_o = '0;
    for (int q = 0; q < NQ; q++) begin
      if (32'(c_q_q) == q) m_wr_req_addr_o = q_cq_base_i[64*q +: 64] + {44'h0, cq_tail_q[16*q +: 16], 4'h0};
    end
  end
  assign m_wr_req_len_o   = 16'd16;
  assign m_wr_valid_o     = (c_state_q == C_DATA);
  assign m_wr_last_o      = (32'(c_beat_q) == CQE_BEATS - 1);
  // The entry leaves low bytes first: one beat when the bus is at least 16 bytes wide,
  // otherwise the low DW bits of a register that shifts right by DW per beat.
  generate
    if (DW >= 128) begin : g_cqe_one_beat
      assign m_wr_data_o = DW'(c_entry_q);
    end else begin : g_cqe_beats
      assign m_wr_data_o = c_entry_q[DW-1:0];
    end
  endgenerate

  // Submission entries arrive low bytes first; each beat enters at the top of a shift register.
  logic [511:0] sqe_shifted;
  generate
    if (DW >= 512) begin : g_sqe_one_beat
      assign sqe_shifted = s_rd_data_i[511:0];
    end else begin : g_sqe_beats
      assign sqe_shifted = {s_rd_data_i, f_sqe_q[511:DW]};
    end
  endgenerate

  // ---------------------------------------------------------------------------------------------
  // Sequential logic

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      f_state_q <= F_IDLE;
      f_q_q     <= '0;
      f_rr_q    <= '0;
      f_sqe_q   <= '0;
      f_beat_q  <= '0;
      c_state_q <= C_IDLE;
      c_q_q     <= '0;
      c_entry_q <= '0;
      c_beat_q  <= '0;
      sq_head_q <= '0;
      cq_tail_q <= '0;
      phase_q   <= '1;
      fault_q   <= '0;
      pend_q    <= '0;
      timer_q   <= '0;
      err_set_o <= '0;
      irq_o     <= '0;
    end else begin
      err_set_o <= '0;
      irq_o     <= '0;

      // Disabled queues return to their initial state.
      for (int q = 0; q < NQ; q++) begin
        if (!q_enable_i[q]) begin
          sq_head_q[16*q +: 16] <= '0;
          cq_tail_q[16*q +: 16] <= '0;
          phase_q[q] <= 1'b1;
          fault_q[q] <= 1'b0;
          pend_q[8*q +: 8] <= '0;
          timer_q[16*q +: 16] <= '0;
        end
      end

      // ---- fetch ----
      case (f_state_q)
        F_IDLE: if (f_pick_ok) begin
          f_q_q     <= f_pick;
          f_rr_q    <= f_pick_next;
          f_beat_q  <= '0;
          f_state_q <= F_REQ;
        end
        F_REQ: if (m_rd_req_ready_i) f_state_q <= F_DATA;
        F_DATA: if (s_rd_valid_i) begin
          f_sqe_q  <= sqe_shifted;
          f_beat_q <= f_beat_q + 1'b1;
          if (s_rd_last_i) begin
            if (s_rd_err_i || !q_enable_i[f_q_q]) begin
              // A failed fetch stops the queue: the entry's cid is unknown, so it cannot complete.
              if (s_rd_err_i) begin
                fault_q[f_q_q] <= 1'b1;
                err_set_o[0]   <= 1'b1;
              end
              f_state_q <= F_IDLE;
            end else begin
              sq_head_q[16*f_q_q +: 16] <= (sq_head_q[16*f_q_q +: 16] + 16'd1) & ring_mask(q_sq_log2_i[4*f_q_q +: 4]);
              f_state_q <= F_OUT;
            end
          end
        end
        F_OUT: if (m_cmd_ready_i) f_state_q <= F_IDLE;
        default: f_state_q <= F_IDLE;
      endcase

      // ---- completion ----
      case (c_state_q)
        C_IDLE: if (s_cpl_valid_i && s_cpl_ready_o && !cpl_bad) begin
          c_q_q     <= cpl_q;
          c_beat_q  <= '0;
          c_entry_q <= {s_cpl_status_i, phase_q[cpl_q], s_cpl_cid_i, {8'h0, s_cpl_qid_i},
                        sq_head_q[16*cpl_q +: 16], 32'h0, s_cpl_result_i};
          c_state_q <= C_REQ;
        end
        C_REQ: if (m_wr_req_ready_i) c_state_q <= C_DATA;
        C_DATA: if (m_wr_ready_i) begin
          c_beat_q  <= c_beat_q + 1'b1;
          c_entry_q <= c_entry_q >> DW;
          if (m_wr_last_o) c_state_q <= C_WAIT;
        end
        C_WAIT: if (s_wr_done_valid_i) begin
          if (s_wr_done_err_i) begin
            fault_q[c_q_q] <= 1'b1;
            err_set_o[1]   <= 1'b1;
          end else if (q_enable_i[c_q_q]) begin
            cq_tail_q[16*c_q_q +: 16] <= (cq_tail_q[16*c_q_q +: 16] + 16'd1) & ring_mask(q_cq_log2_i[4*c_q_q +: 4]);
            if (((cq_tail_q[16*c_q_q +: 16] + 16'd1) & ring_mask(q_cq_log2_i[4*c_q_q +: 4])) == 16'd0) begin
              phase_q[c_q_q] <= !phase_q[c_q_q];
            end
            if (q_irq_en_i[c_q_q] && pend_q[8*c_q_q +: 8] != 8'hFF) begin
              pend_q[8*c_q_q +: 8] <= pend_q[8*c_q_q +: 8] + 8'd1;
            end
          end
          c_state_q <= C_IDLE;
        end
        default: c_state_q <= C_IDLE;
      endcase

      // ---- interrupt coalescing ----
      for (int q = 0; q < NQ; q++) begin
        logic [7:0] need;
        need = (q_coal_count_i[8*q +: 8] == 8'd0) ? 8'd1 : q_coal_count_i[8*q +: 8];
        if (!q_irq_en_i[q]) begin
          pend_q[8*q +: 8]    <= '0;
          timer_q[16*q +: 16] <= '0;
        end else if (pend_q[8*q +: 8] != 8'd0) begin
          if (pend_q[8*q +: 8] >= need ||
              (q_coal_time_i[16*q +: 16] != 16'd0 && timer_q[16*q +: 16] >= q_coal_time_i[16*q +: 16])) begin
            irq_o[q] <= 1'b1;
            // A completion landing in this very cycle starts the next batch.
            pend_q[8*q +: 8]    <= (c_state_q == C_WAIT && s_wr_done_valid_i && !s_wr_done_err_i &&
                                    32'(c_q_q) == q) ? 8'd1 : 8'd0;
            timer_q[16*q +: 16] <= '0;
          end else if (timer_q[16*q +: 16] != 16'hFFFF) begin
            timer_q[16*q +: 16] <= timer_q[16*q +: 16] + 16'd1;
          end
        end
      end
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Status

  logic [NQ-1:0] cq_full_now;
  always_comb begin
    for (int q = 0; q < NQ; q++) begin
      cq_full_now[q] = (((cq_tail_q[16*q +: 16] + 16'd1) & ring_mask(q_cq_log2_i[4*q +: 4])) ==
                        q_cq_head_i[16*q +: 16]) && q_enable_i[q];
    end
  end

  assign q_sq_head_o = sq_head_q;
  assign q_cq_tail_o = cq_tail_q;
  assign q_fault_o   = fault_q;
  assign q_cq_full_o = cq_full_now;
  // A pending interrupt keeps the device busy only while a timer will eventually fire it.
  logic timers_running;
  always_comb begin
    timers_running = 1'b0;
    for (int q = 0; q < NQ; q++) begin
      if (pend_q[8*q +: 8] != 8'd0 &&
          (q_coal_time_i[16*q +: 16] != 16'd0 || pend_q[8*q +: 8] >= q_coal_count_i[8*q +: 8])) begin
        timers_running = 1'b1;
      end
    end
  end
  assign idle_o = (f_state_q == F_IDLE) && !f_pick_ok && (c_state_q == C_IDLE) &&
                  !s_cpl_valid_i && !timers_running;
endmodule
