// ECDSA P-256 engine instance: ECDSA_P256_VERIFY commands over one DMA client port, verifying up
// to eight records at once on an ecdsa_core.
//
// - The reader fetches one 160-byte `ecdsa_rec` at a time (src + 160·i) for a free core thread,
//   byte-reverses its five big-endian fields into integers, loads them into the thread's input
//   buffer and starts it. It runs ahead as long as threads are free.
// - Each verdict sets bit i of an on-chip bitmap (ECDSA_MAX_BATCH bits) and counts valid ones.
// - When every record has a verdict the writer sends ceil(count/8) bitmap bytes to dst and the
//   command completes with result = number of valid signatures.
//
// Validation, before any memory access: flags or a reserved field not zero -> BAD_FIELD;
// count == 0 or count > ECDSA_MAX_BATCH -> BAD_LENGTH; other opcodes -> BAD_OPCODE. len, arg0,
// arg1 and aux are ignored. A read error stops fetching; once the threads already started have
// finished, the command completes with DMA_READ and result = index of the failing record (no
// bitmap is written). A write error completes with DMA_WRITE. Signatures that are invalid in any
// way (range, curve, infinity) are verdicts, never errors.
//
// stall_i freezes the engine: no command accepted, no request or beat started, no read beat
// taken, the core holds still; valids already raised are kept.
module ecdsa_engine #(
  parameter int DW = 128  // DMA data width in bits, 64..512, power of two
) (
  input  logic          clk_i,
  input  logic          rst_ni,

  // Engine command port
  input  logic          s_cmd_valid_i,
  output logic          s_cmd_ready_o,
  input  logic [511:0]  s_cmd_sqe_i,
  input  logic [7:0]    s_cmd_qid_i,
  output logic          m_cpl_valid_o,
  input  logic          m_cpl_ready_i,
  output logic [7:0]    m_cpl_qid_o,
  output logic [15:0]   m_cpl_cid_o,
  output logic [14:0]   m_cpl_status_o,
  output logic [31:0]   m_cpl_result_o,
  input  logic          stall_i,
  output logic          busy_o,

  // DMA client port, read side
  output logic          m_rd_req_valid_o,
  input  logic          m_rd_req_ready_i,
  output logic [63:0]   m_rd_req_addr_o,
  output logic [15:0]   m_rd_req_len_o,
  input  logic          s_rd_valid_i,
  output logic          s_rd_ready_o,
  input  logic [DW-1:0] s_rd_data_i,
  input  logic          s_rd_last_i,
  input  logic          s_rd_err_i,

  // DMA client port, write side
  output logic          m_wr_req_valid_o,
  input  logic          m_wr_req_ready_i,
  output logic [63:0]   m_wr_req_addr_o,
  output logic [15:0]   m_wr_req_len_o,
  output logic          m_wr_valid_o,
  input  logic          m_wr_ready_i,
  output logic [DW-1:0] m_wr_data_o,
  output logic          m_wr_last_o,
  input  logic          s_wr_done_valid_i,
  input  logic          s_wr_done_err_i
);

  `include "bpu_defs.svh"

  localparam int B      = DW / 8;
  localparam int RBYTES = `BPU_ECDSA_REC_BITS / 8;          // 160
  localparam int RBEATS = (RBYTES + B - 1) / B;             // beats per record
  localparam int MAXB   = `BPU_ECDSA_MAX_BATCH;             // bitmap bits
  localparam int IW     = $clog2(MAXB + 1);                 // record index / count width
  localparam int WBEATS = MAXB / DW;                        // bitmap words

  generate
    if (DW < 64 || DW > 512 || (DW & (DW - 1)) != 0) begin : g_bad_dw
      $error("ecdsa_engine: DW must be 64..512 and a power of two");
    end
  endgenerate

  logic go;
  assign go = !stall_i;

  // ---------------------------------------------------------------------------------------------
  // Command decode

  logic [7:0]   sqe_opcode, sqe_flags;
  logic [15:0]  sqe_cid;
  logic [31:0]  sqe_rsvd0, sqe_count;
  logic [63:0]  sqe_src, sqe_dst;
  logic [127:0] sqe_rsvd1;
  logic         unused_sqe;

  assign sqe_opcode = s_cmd_sqe_i[`BPU_SQE_OPCODE_LSB +: `BPU_SQE_OPCODE_W];
  assign sqe_flags  = s_cmd_sqe_i[`BPU_SQE_FLAGS_LSB  +: `BPU_SQE_FLAGS_W];
  assign sqe_cid    = s_cmd_sqe_i[`BPU_SQE_CID_LSB    +: `BPU_SQE_CID_W];
  assign sqe_rsvd0  = s_cmd_sqe_i[`BPU_SQE_RSVD0_LSB  +: `BPU_SQE_RSVD0_W];
  assign sqe_src    = s_cmd_sqe_i[`BPU_SQE_SRC_LSB    +: `BPU_SQE_SRC_W];
  assign sqe_dst    = s_cmd_sqe_i[`BPU_SQE_DST_LSB    +: `BPU_SQE_DST_W];
  assign sqe_count  = s_cmd_sqe_i[`BPU_SQE_COUNT_LSB  +: `BPU_SQE_COUNT_W];
  assign sqe_rsvd1  = s_cmd_sqe_i[`BPU_SQE_RSVD1_LSB  +: `BPU_SQE_RSVD1_W];
  // len, arg0, arg1 and aux are not used by this opcode.
  assign unused_sqe = ^{s_cmd_sqe_i[`BPU_SQE_LEN_LSB  +: `BPU_SQE_LEN_W],
                        s_cmd_sqe_i[`BPU_SQE_ARG0_LSB +: `BPU_SQE_ARG0_W],
                        s_cmd_sqe_i[`BPU_SQE_ARG1_LSB +: `BPU_SQE_ARG1_W],
                        s_cmd_sqe_i[`BPU_SQE_AUX_LSB  +: `BPU_SQE_AUX_W]};

  logic [14:0] dec_status;
  always_comb begin
    dec_status = `BPU_STATUS_SUCCESS;
    if (sqe_opcode != `BPU_OPCODE_ECDSA_P256_VERIFY) begin
      dec_status = `BPU_STATUS_BAD_OPCODE;
    end else if (sqe_flags != 8'd0 || sqe_rsvd0 != 32'd0 || sqe_rsvd1 != 128'd0) begin
      dec_status = `BPU_STATUS_BAD_FIELD;
    end else if (sqe_count == 32'd0 || sqe_count > 32'(MAXB)) begin
      dec_status = `BPU_STATUS_BAD_LENGTH;
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Command FSM

  localparam logic [1:0] M_IDLE  = 2'd0;
  localparam logic [1:0] M_RUN   = 2'd1;  // fetching and verifying
  localparam logic [1:0] M_WRITE = 2'd2;  // bitmap to host memory
  localparam logic [1:0] M_CPL   = 2'd3;  // completion offered

  logic [1:0]    m_state_q;
  logic [7:0]    qid_q;
  logic [15:0]   cid_q;
  logic [14:0]   status_q;
  logic [31:0]   result_q;
  logic [63:0]   src_q, dst_q;
  logic [IW-1:0] count_q;
  logic [IW-1:0] next_q;      // next record to fetch
  logic [IW-1:0] started_q;   // records handed to the core
  logic [IW-1:0] judged_q;    // verdicts received
  logic [IW-1:0] valid_q;     // valid verdicts
  logic          rd_err_q;
  logic [MAXB-1:0] bitmap_q;

  logic cmd_take;
  assign s_cmd_ready_o = (m_state_q == M_IDLE) && go;
  assign cmd_take      = s_cmd_valid_i && s_cmd_ready_o;
  assign busy_o        = (m_state_q != M_IDLE);

  // Reader (defined below)
  localparam logic [1:0] R_IDLE = 2'd0;
  localparam logic [1:0] R_REQ  = 2'd1;
  localparam logic [1:0] R_DATA = 2'd2;
  localparam logic [1:0] R_LOAD = 2'd3;
  logic [1:0] r_state_q;

  // Writer (defined below)
  logic w_done, w_err;

  // Core
  logic         ld_valid, start_valid, done_valid, done_ok;
  logic [2:0]   ld_thread, ld_idx, start_thread, done_thread;
  logic [255:0] ld_data;
  logic [7:0]   core_busy;
  logic [IW-1:0] tag_q [8];   // record index per thread

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      m_state_q <= M_IDLE;
      qid_q     <= '0;
      cid_q     <= '0;
      status_q  <= `BPU_STATUS_SUCCESS;
      result_q  <= '0;
      src_q     <= '0;
      dst_q     <= '0;
      count_q   <= '0;
      judged_q  <= '0;
      valid_q   <= '0;
      bitmap_q  <= '0;
    end else begin
      if (done_valid) begin
        judged_q <= judged_q + 1'b1;
        if (done_ok) begin
          valid_q <= valid_q + 1'b1;
          bitmap_q[tag_q[done_thread][$clog2(MAXB)-1:0]] <= 1'b1;
        end
      end
      case (m_state_q)
        M_IDLE: begin
          if (cmd_take) begin
            qid_q    <= s_cmd_qid_i;
            cid_q    <= sqe_cid;
            status_q <= dec_status;
            result_q <= '0;
            src_q    <= sqe_src;
            dst_q    <= sqe_dst;
            count_q  <= IW'(sqe_count);
            judged_q <= '0;
            valid_q  <= '0;
            bitmap_q <= '0;
            m_state_q <= (dec_status == `BPU_STATUS_SUCCESS) ? M_RUN : M_CPL;
          end
        end
        M_RUN: begin
          // Every started record judged, and the reader has nothing more to start.
          if (go && r_state_q == R_IDLE && judged_q == started_q && !done_valid) begin
            if (rd_err_q) begin
              status_q  <= `BPU_STATUS_DMA_READ;
              result_q  <= 32'(next_q);
              m_state_q <= M_CPL;
            end else if (next_q == count_q) begin
              m_state_q <= M_WRITE;
            end
          end
        end
        M_WRITE: begin
          if (w_done) begin
            status_q  <= w_err ? `BPU_STATUS_DMA_WRITE : `BPU_STATUS_SUCCESS;
            result_q  <= 32'(valid_q);
            m_state_q <= M_CPL;
          end
        end
        default: begin  // M_CPL
          if (m_cpl_ready_i) m_state_q <= M_IDLE;
        end
      endcase
    end
  end

  assign m_cpl_valid_o  = (m_state_q == M_CPL);
  assign m_cpl_qid_o    = qid_q;
  assign m_cpl_cid_o    = cid_q;
  assign m_cpl_status_o = status_q;
  assign m_cpl_result_o = result_q;

  // ---------------------------------------------------------------------------------------------
  // Reader: one record per request, into a free thread.

  logic [2:0]            thr_q;         // thread being loaded
  logic [RBEATS*DW-1:0]  rec_q;         // record bytes, packed
  logic [$clog2(RBEATS+1)-1:0] beat_q;
  logic [2:0]            fld_q;         // field being loaded
  logic                  free_any;
  logic [2:0]            free_thr;

  always_comb begin
    free_any = 1'b0;
    free_thr = 3'd0;
    for (int t = 7; t >= 0; t--) begin
      if (!core_busy[t]) begin
        free_any = 1'b1;
        free_thr = 3'(t);
      end
    end
  end

  // Field f of the record as an integer (its bytes are big-endian).
  function automatic logic [255:0] field_int(input logic [RBEATS*DW-1:0] rec, input logic [2:0] f);
    logic [255:0] v;
    v = '0;
    for (int j = 0; j < 32; j++) begin
      v[(31 - j) * 8 +: 8] = rec[(32 * f + j) * 8 +: 8];
    end
    field_int = v;
  endfunction

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      r_state_q <= R_IDLE;
      next_q    <= '0;
      started_q <= '0;
      rd_err_q  <= 1'b0;
      thr_q     <= '0;
      beat_q    <= '0;
      fld_q     <= '0;
    end else if (m_state_q == M_IDLE) begin
      r_state_q <= R_IDLE;
      next_q    <= '0;
      started_q <= '0;
      rd_err_q  <= 1'b0;
    end else if (r_state_q == R_REQ) begin
      // A raised request stays raised through a stall until it is taken.
      if (m_rd_req_ready_i) r_state_q <= R_DATA;
    end else if (go) begin
      case (r_state_q)
        R_IDLE: begin
          if (m_state_q == M_RUN && !rd_err_q && next_q != count_q && free_any) begin
            thr_q     <= free_thr;
            beat_q    <= '0;
            r_state_q <= R_REQ;
          end
        end
        R_DATA: begin
          if (s_rd_valid_i) begin
            rec_q[beat_q * DW +: DW] <= s_rd_data_i;
            beat_q <= beat_q + 1'b1;
            if (s_rd_last_i) begin
              if (s_rd_err_i) begin
                rd_err_q  <= 1'b1;
                r_state_q <= R_IDLE;
              end else begin
                fld_q     <= '0;
                r_state_q <= R_LOAD;
              end
            end
          end
        end
        default: begin  // R_LOAD: one field per cycle, then start the thread
          fld_q <= fld_q + 3'd1;
          if (fld_q == 3'd4) begin
            next_q    <= next_q + 1'b1;
            started_q <= started_q + 1'b1;
            r_state_q <= R_IDLE;
          end
        end
      endcase
    end
  end

  always_ff @(posedge clk_i) begin
    if (r_state_q == R_LOAD && go && fld_q == 3'd4) tag_q[thr_q] <= next_q;
  end

  assign m_rd_req_valid_o = (r_state_q == R_REQ);
  assign m_rd_req_addr_o  = src_q + 64'(next_q) * 64'(RBYTES);
  assign m_rd_req_len_o   = 16'(RBYTES);
  assign s_rd_ready_o     = (r_state_q == R_DATA) && go;

  assign ld_valid     = (r_state_q == R_LOAD) && go;
  assign ld_thread    = thr_q;
  assign ld_idx       = fld_q;
  assign ld_data      = field_int(rec_q, fld_q);
  assign start_valid  = (r_state_q == R_LOAD) && go && fld_q == 3'd4;
  assign start_thread = thr_q;

  ecdsa_core u_core (
    .clk_i,
    .rst_ni,
    .stall_i,
    .ld_valid_i     (ld_valid),
    .ld_thread_i    (ld_thread),
    .ld_idx_i       (ld_idx),
    .ld_data_i      (ld_data),
    .start_valid_i  (start_valid),
    .start_thread_i (start_thread),
    .busy_o         (core_busy),
    .done_valid_o   (done_valid),
    .done_thread_o  (done_thread),
    .done_ok_o      (done_ok)
  );

  // ---------------------------------------------------------------------------------------------
  // Writer: ceil(count/8) bitmap bytes to dst.

  localparam logic [1:0] W_IDLE = 2'd0;
  localparam logic [1:0] W_REQ  = 2'd1;
  localparam logic [1:0] W_DATA = 2'd2;
  localparam logic [1:0] W_WAIT = 2'd3;

  logic [1:0]  w_state_q;
  logic        w_done_q;
  logic [15:0] w_len;
  logic [15:0] w_beats, w_beat_q;
  logic        w_err_q;

  assign w_len   = 16'((32'(count_q) + 32'd7) >> 3);
  assign w_beats = (w_len + 16'(B - 1)) / 16'(B);

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      w_state_q <= W_IDLE;
      w_beat_q  <= '0;
      w_err_q   <= 1'b0;
    end else begin
      case (w_state_q)
        W_IDLE: begin
          // Start once per command: the cycle after the done pulse the command FSM is still in
          // M_WRITE, and a second (late) write would race the next command's bitmap.
          if (m_state_q == M_WRITE && !w_done_q && go) begin
            w_beat_q  <= '0;
            w_err_q   <= 1'b0;
            w_state_q <= W_REQ;
          end
        end
        W_REQ: begin
          if (m_wr_req_ready_i) w_state_q <= W_DATA;
        end
        W_DATA: begin
          if (m_wr_ready_i && m_wr_valid_o) begin
            w_beat_q <= w_beat_q + 16'd1;
            if (w_beat_q == w_beats - 16'd1) w_state_q <= W_WAIT;
          end
        end
        default: begin  // W_WAIT
          if (s_wr_done_valid_i) begin
            w_err_q   <= s_wr_done_err_i;
            w_state_q <= W_IDLE;
          end
        end
      endcase
    end
  end

  // The done pulse is seen by the command FSM one cycle later, through w_done.
  always_ff @(posedge clk_i) begin
    if (!rst_ni) w_done_q <= 1'b0;
    else         w_done_q <= (w_state_q == W_WAIT) && s_wr_done_valid_i;
  end
  assign w_done = w_done_q;
  assign w_err  = w_err_q;

  assign m_wr_req_valid_o = (w_state_q == W_REQ);
  assign m_wr_req_addr_o  = dst_q;
  assign m_wr_req_len_o   = w_len;
  assign m_wr_valid_o     = (w_state_q == W_DATA);  // a started burst completes through a stall
  assign m_wr_data_o      = bitmap_q[32'(w_beat_q[$clog2(WBEATS)-1:0]) * DW +: DW];
  assign m_wr_last_o      = (w_beat_q == w_beats - 16'd1);

endmodule
