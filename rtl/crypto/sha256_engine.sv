// SHA-256 engine instance: SHA256, SHA256_BATCH and MERKLE_LEVEL commands over one DMA client port.
//
// Structure (one command at a time):
//
//   reader --DMA read--> beat FIFO --> sha256_padder --> sha256_core --> writer --DMA write-->
//     \--- message headers (length) --> msg queue ---/
//
// - The reader walks the command's messages (batch: fetches each 16-byte hash_desc first),
//   pushes one header per message into a small queue, and reads the message data in chunks that
//   fit the free space of the beat FIFO (at most BUF_BYTES, so every read is drained at full
//   speed). Chunks are multiples of B bytes except a message's last one, so the FIFO holds each
//   message as one packed beat stream. It runs ahead of the hashing (prefetch).
// - A chunk's beats become visible to the padder only once its last beat came back without
//   error; a failed chunk is dropped from the FIFO, so a failed message never yields a digest.
// - The writer writes each digest (32 bytes) to dst + 32*i and counts the successful writes.
// - The command FSM completes when all digests are written, or on an error once every DMA
//   transfer has finished (read error: after the messages before the failing one were written).
//   Result = number of digests written (for all three opcodes).
//
// Validation, before any memory access: opcode not SHA256/SHA256_BATCH/MERKLE_LEVEL ->
// BAD_OPCODE; flag bits other than PREFIX (any flag for MERKLE_LEVEL) or a non-zero rsvd0/rsvd1
// -> BAD_FIELD; count == 0 for SHA256_BATCH/MERKLE_LEVEL -> BAD_LENGTH. SHA256 ignores count,
// the others ignore len; arg1, aux and hash_desc.rsvd are ignored. PREFIX hashes arg0[7:0]
// before each message; MERKLE_LEVEL always hashes 0x01 before its 64 bytes.
//
// stall_i freezes the engine: no command is accepted, no new request or beat is started, no
// read beat is taken and the core stops. A valid already raised on a DMA request, write beat or
// completion is kept, so that handshake (and the rest of a started write burst) still completes,
// and write-done pulses are always taken.
module sha256_engine #(
  parameter int DW        = 128,  // DMA data width in bits, 64..512, power of two
  parameter int BUF_BYTES = 256   // read buffer in bytes, power of two, 128..BPU_DMA_MAX_REQ
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

  localparam int B      = DW / 8;                 // bytes per beat
  localparam int LB     = $clog2(B);
  localparam int DEPTH  = BUF_BYTES / B;          // FIFO depth in beats
  localparam int AW     = $clog2(DEPTH);
  localparam int THRESH = BUF_BYTES / 2;          // read when at least this much is free
  localparam int WBEATS = (32 + B - 1) / B;       // beats per digest write
  localparam int WB     = (DW > 256) ? DW : 256;  // digest shift register width
  localparam int MQ     = 4;                      // message header queue depth

  generate
    if (DW < 64 || DW > 512 || (DW & (DW - 1)) != 0) begin : g_bad_dw
      $error("sha256_engine: DW must be 64..512 and a power of two");
    end
    if (BUF_BYTES < 128 || BUF_BYTES > `BPU_DMA_MAX_REQ || (BUF_BYTES & (BUF_BYTES - 1)) != 0)
    begin : g_bad_buf
      $error("sha256_engine: BUF_BYTES must be 128..4096 and a power of two");
    end
  endgenerate

  logic go;       // the engine may make progress this cycle (not stalled)
  logic clr;      // end of command: return the datapath to its idle state
  assign go = !stall_i;

  // ---------------------------------------------------------------------------------------------
  // Command decode

  logic [7:0]  sqe_opcode, sqe_flags;
  logic [15:0] sqe_cid;
  logic [31:0] sqe_rsvd0, sqe_len, sqe_count, sqe_arg0;
  logic [63:0] sqe_src, sqe_dst;
  logic [127:0] sqe_rsvd1;
  logic        unused_sqe;

  assign sqe_opcode = s_cmd_sqe_i[`BPU_SQE_OPCODE_LSB +: `BPU_SQE_OPCODE_W];
  assign sqe_flags  = s_cmd_sqe_i[`BPU_SQE_FLAGS_LSB  +: `BPU_SQE_FLAGS_W];
  assign sqe_cid    = s_cmd_sqe_i[`BPU_SQE_CID_LSB    +: `BPU_SQE_CID_W];
  assign sqe_rsvd0  = s_cmd_sqe_i[`BPU_SQE_RSVD0_LSB  +: `BPU_SQE_RSVD0_W];
  assign sqe_src    = s_cmd_sqe_i[`BPU_SQE_SRC_LSB    +: `BPU_SQE_SRC_W];
  assign sqe_dst    = s_cmd_sqe_i[`BPU_SQE_DST_LSB    +: `BPU_SQE_DST_W];
  assign sqe_len    = s_cmd_sqe_i[`BPU_SQE_LEN_LSB    +: `BPU_SQE_LEN_W];
  assign sqe_count  = s_cmd_sqe_i[`BPU_SQE_COUNT_LSB  +: `BPU_SQE_COUNT_W];
  assign sqe_arg0   = s_cmd_sqe_i[`BPU_SQE_ARG0_LSB   +: `BPU_SQE_ARG0_W];
  assign sqe_rsvd1  = s_cmd_sqe_i[`BPU_SQE_RSVD1_LSB  +: `BPU_SQE_RSVD1_W];
  // arg1 and aux are not used by these opcodes.
  assign unused_sqe = ^{s_cmd_sqe_i[`BPU_SQE_ARG1_LSB +: `BPU_SQE_ARG1_W],
                        s_cmd_sqe_i[`BPU_SQE_AUX_LSB  +: `BPU_SQE_AUX_W], sqe_arg0[31:8]};

  localparam logic [1:0] OP_SHA    = 2'd0;
  localparam logic [1:0] OP_BATCH  = 2'd1;
  localparam logic [1:0] OP_MERKLE = 2'd2;

  logic [1:0]  dec_op;
  logic [14:0] dec_status;  // SUCCESS = the command is valid and will run
  logic        rsvd_nz;     // a reserved field is not zero

  assign rsvd_nz = (sqe_rsvd0 != 32'd0) || (sqe_rsvd1 != 128'd0);

  always_comb begin
    dec_op     = OP_SHA;
    dec_status = `BPU_STATUS_SUCCESS;
    case (sqe_opcode)
      `BPU_OPCODE_SHA256, `BPU_OPCODE_SHA256_BATCH: begin
        dec_op = (sqe_opcode == `BPU_OPCODE_SHA256) ? OP_SHA : OP_BATCH;
        if ((sqe_flags & ~`BPU_FLAG_PREFIX) != 8'd0 || rsvd_nz) begin
          dec_status = `BPU_STATUS_BAD_FIELD;
        end else if (sqe_opcode == `BPU_OPCODE_SHA256_BATCH && sqe_count == 32'd0) begin
          dec_status = `BPU_STATUS_BAD_LENGTH;
        end
      end
      `BPU_OPCODE_MERKLE_LEVEL: begin
        dec_op = OP_MERKLE;
        if (sqe_flags != 8'd0 || rsvd_nz) begin
          dec_status = `BPU_STATUS_BAD_FIELD;
        end else if (sqe_count == 32'd0) begin
          dec_status = `BPU_STATUS_BAD_LENGTH;
        end
      end
      default: dec_status = `BPU_STATUS_BAD_OPCODE;
    endcase
  end

  // ---------------------------------------------------------------------------------------------
  // Command FSM

  localparam logic [1:0] M_IDLE  = 2'd0;  // ready for a command
  localparam logic [1:0] M_RUN   = 2'd1;  // reader, padder, core and writer at work
  localparam logic [1:0] M_CLEAN = 2'd2;  // clear the datapath
  localparam logic [1:0] M_CPL   = 2'd3;  // completion offered

  logic [1:0]  m_state_q;
  logic [1:0]  op_q;
  logic [31:0] len_q, count_q;
  logic        pfx_en_q;
  logic [7:0]  pfx_q;
  logic [7:0]  qid_q;
  logic [15:0] cid_q;
  logic [14:0] status_q;
  logic [31:0] result_q;

  logic cmd_take, start;
  assign s_cmd_ready_o = (m_state_q == M_IDLE) && go;
  assign cmd_take      = s_cmd_valid_i && s_cmd_ready_o;
  assign start         = cmd_take && (dec_status == `BPU_STATUS_SUCCESS);
  assign clr           = (m_state_q == M_CLEAN);
  assign busy_o        = (m_state_q != M_IDLE);

  // Reader / writer status used to decide the end of a command (defined below).
  logic        rd_halted, rd_done_q, rd_err_q, wr_idle, wr_err_q;
  logic [31:0] rd_msgs_q, wr_cnt_q;

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      m_state_q <= M_IDLE;
      op_q      <= OP_SHA;
      len_q     <= '0;
      count_q   <= '0;
      pfx_en_q  <= 1'b0;
      pfx_q     <= '0;
      qid_q     <= '0;
      cid_q     <= '0;
      status_q  <= `BPU_STATUS_SUCCESS;
      result_q  <= '0;
    end else begin
      case (m_state_q)
        M_IDLE: begin
          if (cmd_take) begin
            op_q     <= dec_op;
            len_q    <= sqe_len;
            count_q  <= (dec_op == OP_SHA) ? 32'd1 : sqe_count;
            pfx_en_q <= (dec_op == OP_MERKLE) ? 1'b1 : sqe_flags[0];
            pfx_q    <= (dec_op == OP_MERKLE) ? 8'h01 : sqe_arg0[7:0];
            qid_q    <= s_cmd_qid_i;
            cid_q    <= sqe_cid;
            status_q <= dec_status;
            result_q <= '0;
            m_state_q <= start ? M_RUN : M_CPL;   // bad commands complete at once
          end
        end

        M_RUN: begin
          if (go) begin
            if (wr_err_q && rd_halted) begin
              status_q  <= `BPU_STATUS_DMA_WRITE;
              result_q  <= wr_cnt_q;
              m_state_q <= M_CLEAN;
            end else if (rd_err_q && wr_idle && wr_cnt_q == rd_msgs_q) begin
              status_q  <= `BPU_STATUS_DMA_READ;
              result_q  <= wr_cnt_q;
              m_state_q <= M_CLEAN;
            end else if (rd_done_q && wr_idle && wr_cnt_q == count_q) begin
              status_q  <= `BPU_STATUS_SUCCESS;
              result_q  <= wr_cnt_q;
              m_state_q <= M_CLEAN;
            end
          end
        end

        M_CLEAN: begin
          if (go) m_state_q <= M_CPL;
        end

        M_CPL: begin
          if (m_cpl_ready_i) m_state_q <= M_IDLE;
        end

        default: m_state_q <= M_IDLE;
      endcase
    end
  end

  assign m_cpl_valid_o  = (m_state_q == M_CPL);
  assign m_cpl_qid_o    = qid_q;
  assign m_cpl_cid_o    = cid_q;
  assign m_cpl_status_o = status_q;
  assign m_cpl_result_o = result_q;

  // ---------------------------------------------------------------------------------------------
  // Read beat FIFO with commit: beats of the chunk in flight are written at wptr but only become
  // readable when the chunk ends without error (cptr := wptr); on error wptr falls back to cptr.

  logic [DW-1:0] fifo_mem [DEPTH];
  logic [AW:0]   wptr_q, cptr_q, rptr_q;
  logic          fifo_push, fifo_pop, fifo_avail;
  logic [AW:0]   fifo_used;
  logic [31:0]   fifo_free_bytes;

  assign fifo_used       = wptr_q - rptr_q;
  assign fifo_free_bytes = (32'(DEPTH) - 32'(fifo_used)) << LB;
  assign fifo_avail      = (cptr_q != rptr_q);

  // Message header queue (data length of each message the reader started).
  logic [31:0]   mq_mem [MQ];
  logic [2:0]    mq_wptr_q, mq_rptr_q;
  logic          mq_push, mq_pop, mq_full, mq_avail;
  assign mq_full  = (mq_wptr_q - mq_rptr_q) == 3'(MQ);
  assign mq_avail = (mq_wptr_q != mq_rptr_q);

  // ---------------------------------------------------------------------------------------------
  // Reader

  localparam logic [3:0] R_IDLE  = 4'd0;  // no command
  localparam logic [3:0] R_NEXT  = 4'd1;  // start the next message, or finish
  localparam logic [3:0] R_DREQ  = 4'd2;  // request a hash_desc (batch)
  localparam logic [3:0] R_DDAT  = 4'd3;  // receive the hash_desc
  localparam logic [3:0] R_PUSH  = 4'd4;  // push the message header
  localparam logic [3:0] R_CHUNK = 4'd5;  // wait for FIFO space, size the next chunk
  localparam logic [3:0] R_REQ   = 4'd6;  // request a data chunk
  localparam logic [3:0] R_DATA  = 4'd7;  // receive the chunk into the FIFO
  localparam logic [3:0] R_HALT  = 4'd8;  // done, failed or stopped: wait for clr

  logic [3:0]   r_state_q;
  logic [63:0]  rd_tab_q;    // next descriptor (batch) / pair (merkle) / message (sha) address
  logic [63:0]  rd_addr_q;   // next data byte to request
  logic [31:0]  rd_left_q;   // data bytes of the current message not yet requested
  logic [15:0]  rd_chunk_q;  // length of the chunk being requested / received
  logic [127:0] desc_q;      // hash_desc being assembled (beats shift in from the top)
  logic [127:0] desc_now;    // hash_desc including the current beat
  logic         rd_beat;     // a read beat moves this cycle
  logic [31:0]  rd_min;      // min(rd_left_q, THRESH)
  logic [31:0]  rd_fit;      // min(rd_left_q, free bytes)

  assign rd_beat   = s_rd_valid_i && s_rd_ready_o;
  assign rd_halted = (r_state_q == R_HALT);
  assign rd_min    = (rd_left_q < 32'(THRESH)) ? rd_left_q : 32'(THRESH);
  assign rd_fit    = (rd_left_q < fifo_free_bytes) ? rd_left_q : fifo_free_bytes;

  generate
    if (DW >= 128) begin : g_desc_wide
      assign desc_now = s_rd_data_i[127:0];
      if (DW > 128) begin : g_unused
        logic unused_rd_hi;
        assign unused_rd_hi = ^s_rd_data_i[DW-1:128];
      end
    end else begin : g_desc_narrow
      assign desc_now = {s_rd_data_i, desc_q[127:DW]};
    end
  endgenerate

  logic [31:0] desc_rsvd_unused;
  assign desc_rsvd_unused = desc_now[`BPU_HASH_DESC_RSVD_LSB +: `BPU_HASH_DESC_RSVD_W];

  assign m_rd_req_valid_o = (r_state_q == R_DREQ) || (r_state_q == R_REQ);
  assign m_rd_req_addr_o  = (r_state_q == R_DREQ) ? rd_tab_q : rd_addr_q;
  assign m_rd_req_len_o   = (r_state_q == R_DREQ) ? 16'd16 : rd_chunk_q;
  assign s_rd_ready_o     = ((r_state_q == R_DDAT) || (r_state_q == R_DATA)) && go;
  assign fifo_push        = rd_beat && (r_state_q == R_DATA);
  assign mq_push          = (r_state_q == R_PUSH) && go && !wr_err_q && !mq_full;

  always_ff @(posedge clk_i) begin
    if (!rst_ni || clr) begin
      r_state_q  <= R_IDLE;
      rd_msgs_q  <= '0;
      rd_tab_q   <= '0;
      rd_addr_q  <= '0;
      rd_left_q  <= '0;
      rd_chunk_q <= '0;
      rd_done_q  <= 1'b0;
      rd_err_q   <= 1'b0;
      desc_q     <= '0;
    end else if (start) begin
      r_state_q <= R_NEXT;
      rd_msgs_q <= '0;
      rd_tab_q  <= sqe_src;
      rd_done_q <= 1'b0;
      rd_err_q  <= 1'b0;
    end else begin
      case (r_state_q)
        R_NEXT: begin
          if (go) begin
            if (wr_err_q) begin
              r_state_q <= R_HALT;
            end else if (rd_msgs_q == count_q) begin
              rd_done_q <= 1'b1;
              r_state_q <= R_HALT;
            end else begin
              case (op_q)
                OP_BATCH: r_state_q <= R_DREQ;
                OP_MERKLE: begin
                  rd_addr_q <= rd_tab_q;
                  rd_left_q <= 32'd64;
                  rd_tab_q  <= rd_tab_q + 64'd64;
                  r_state_q <= R_PUSH;
                end
                default: begin  // OP_SHA: rd_tab_q = src
                  rd_addr_q <= rd_tab_q;
                  rd_left_q <= len_q;
                  r_state_q <= R_PUSH;
                end
              endcase
            end
          end
        end

        R_DREQ: begin
          if (m_rd_req_ready_i) begin
            rd_tab_q  <= rd_tab_q + 64'd16;
            r_state_q <= R_DDAT;
          end
        end

        R_DDAT: begin
          if (rd_beat) begin
            desc_q <= desc_now;
            if (s_rd_last_i) begin
              if (s_rd_err_i) begin
                rd_err_q  <= 1'b1;
                r_state_q <= R_HALT;
              end else begin
                rd_addr_q <= desc_now[`BPU_HASH_DESC_ADDR_LSB +: `BPU_HASH_DESC_ADDR_W];
                rd_left_q <= desc_now[`BPU_HASH_DESC_LEN_LSB +: `BPU_HASH_DESC_LEN_W];
                r_state_q <= R_PUSH;
              end
            end
          end
        end

        R_PUSH: begin
          if (go) begin
            if (wr_err_q)     r_state_q <= R_HALT;
            else if (mq_push) r_state_q <= R_CHUNK;
          end
        end

        R_CHUNK: begin
          if (go) begin
            if (wr_err_q) begin
              r_state_q <= R_HALT;
            end else if (rd_left_q == 32'd0) begin
              rd_msgs_q <= rd_msgs_q + 32'd1;
              r_state_q <= R_NEXT;
            end else if (fifo_free_bytes >= rd_min) begin
              rd_chunk_q <= rd_fit[15:0];
              r_state_q  <= R_REQ;
            end
          end
        end

        R_REQ: begin
          if (m_rd_req_ready_i) r_state_q <= R_DATA;
        end

        R_DATA: begin
          if (rd_beat && s_rd_last_i) begin
            if (s_rd_err_i) begin
              rd_err_q  <= 1'b1;
              r_state_q <= R_HALT;
            end else begin
              rd_addr_q <= rd_addr_q + 64'(rd_chunk_q);
              rd_left_q <= rd_left_q - 32'(rd_chunk_q);
              r_state_q <= R_CHUNK;
            end
          end
        end

        R_HALT, R_IDLE: begin end

        default: r_state_q <= R_IDLE;
      endcase
    end
  end

  // FIFO and header queue pointers, and the storage writes (no reset: can map to distributed
  // RAM). Statement order, not logic: the pointers are read before they are updated and the reset
  // branch comes last, which lets the simulator update most of them in place instead of through
  // shadow copies every cycle.
  logic [AW:0] wptr_inc;
  assign wptr_inc = wptr_q + 1'b1;

  always_ff @(posedge clk_i) begin
    if (fifo_push) fifo_mem[wptr_q[AW-1:0]] <= s_rd_data_i;
    if (mq_push)   mq_mem[mq_wptr_q[1:0]]   <= rd_left_q;
    if (rst_ni && !clr) begin
      if (fifo_push) begin
        if (s_rd_last_i && s_rd_err_i) begin
          wptr_q <= cptr_q;            // drop the failed chunk
        end else begin
          wptr_q <= wptr_inc;
          if (s_rd_last_i) cptr_q <= wptr_inc;
        end
      end
      if (fifo_pop) rptr_q <= rptr_q + 1'b1;
      if (mq_push)  mq_wptr_q <= mq_wptr_q + 3'd1;
      if (mq_pop)   mq_rptr_q <= mq_rptr_q + 3'd1;
    end else begin
      wptr_q    <= '0;
      cptr_q    <= '0;
      rptr_q    <= '0;
      mq_wptr_q <= '0;
      mq_rptr_q <= '0;
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Padder and core

  logic         pad_msg_ready, pad_dat_ready;
  logic         blk_valid, blk_ready, blk_first, blk_last;
  logic [511:0] blk_data;
  logic         dig_valid, dig_ready;
  logic [255:0] dig_data;

  assign mq_pop   = mq_avail && pad_msg_ready;
  assign fifo_pop = fifo_avail && pad_dat_ready;

  sha256_padder #(.DW(DW)) u_padder (
    .clk_i             (clk_i),
    .rst_ni            (rst_ni),
    .stall_i           (stall_i),
    .clear_i           (clr),
    .s_msg_valid_i     (mq_avail),
    .s_msg_ready_o     (pad_msg_ready),
    .s_msg_len_i       (mq_mem[mq_rptr_q[1:0]]),
    .s_msg_prefix_en_i (pfx_en_q),
    .s_msg_prefix_i    (pfx_q),
    .s_dat_valid_i     (fifo_avail),
    .s_dat_ready_o     (pad_dat_ready),
    .s_dat_data_i      (fifo_mem[rptr_q[AW-1:0]]),
    .m_blk_valid_o     (blk_valid),
    .m_blk_ready_i     (blk_ready),
    .m_blk_data_o      (blk_data),
    .m_blk_first_o     (blk_first),
    .m_blk_last_o      (blk_last)
  );

  sha256_core u_core (
    .clk_i         (clk_i),
    .rst_ni        (rst_ni),
    .stall_i       (stall_i),
    .clear_i       (clr),
    .s_blk_valid_i (blk_valid),
    .s_blk_ready_o (blk_ready),
    .s_blk_data_i  (blk_data),
    .s_blk_first_i (blk_first),
    .s_blk_last_i  (blk_last),
    .m_dig_valid_o (dig_valid),
    .m_dig_ready_i (dig_ready),
    .m_dig_data_o  (dig_data)
  );

  // ---------------------------------------------------------------------------------------------
  // Writer: digest i -> dst + 32*i.

  localparam logic [1:0] W_IDLE = 2'd0;  // wait for a digest
  localparam logic [1:0] W_REQ  = 2'd1;  // write request offered
  localparam logic [1:0] W_DATA = 2'd2;  // data beats
  localparam logic [1:0] W_WAIT = 2'd3;  // wait for the done pulse

  logic [1:0]    w_state_q;
  logic [WB-1:0] wbuf_q;       // digest bytes still to send, next beat in the low bits
  logic [2:0]    wbeat_q;      // beat index within the write
  logic [63:0]   wr_addr_q;
  logic          wr_beat;

  assign wr_idle   = (w_state_q == W_IDLE);
  assign dig_ready = wr_idle && go && !wr_err_q && (m_state_q == M_RUN);
  assign wr_beat   = m_wr_valid_o && m_wr_ready_i;

  assign m_wr_req_valid_o = (w_state_q == W_REQ);
  assign m_wr_req_addr_o  = wr_addr_q;
  assign m_wr_req_len_o   = 16'd32;
  assign m_wr_valid_o     = (w_state_q == W_DATA);
  assign m_wr_data_o      = wbuf_q[DW-1:0];
  assign m_wr_last_o      = (wbeat_q == 3'(WBEATS - 1));

  always_ff @(posedge clk_i) begin
    if (!rst_ni || clr) begin
      w_state_q <= W_IDLE;
      wbeat_q   <= '0;
      wr_addr_q <= '0;
      wr_cnt_q  <= '0;
      wr_err_q  <= 1'b0;
    end else if (start) begin
      wr_addr_q <= sqe_dst;
      wr_cnt_q  <= '0;
      wr_err_q  <= 1'b0;
    end else begin
      case (w_state_q)
        W_IDLE: begin
          if (dig_valid && dig_ready) begin
            wbeat_q   <= '0;
            w_state_q <= W_REQ;
          end
        end
        W_REQ: begin
          if (m_wr_req_ready_i) w_state_q <= W_DATA;
        end
        W_DATA: begin
          if (wr_beat) begin
            wbeat_q <= wbeat_q + 3'd1;
            if (m_wr_last_o) w_state_q <= W_WAIT;
          end
        end
        W_WAIT: begin
          if (s_wr_done_valid_i) begin
            if (s_wr_done_err_i) begin
              wr_err_q <= 1'b1;
            end else begin
              wr_cnt_q  <= wr_cnt_q + 32'd1;
              wr_addr_q <= wr_addr_q + 64'd32;
            end
            w_state_q <= W_IDLE;
          end
        end
        default: w_state_q <= W_IDLE;
      endcase
    end
  end

  // The digest shift register, with the writer's update conditions. The shift comes first so
  // that its read of wbuf_q precedes every update of it in the block, which lets the simulator
  // update the register in place instead of through a full shadow copy every cycle.
  always_ff @(posedge clk_i) begin
    if (rst_ni && !clr && !start && w_state_q == W_DATA && wr_beat) begin
      wbuf_q <= wbuf_q >> DW;
    end else if (!rst_ni || clr) begin
      wbuf_q <= '0;
    end else if (!start && w_state_q == W_IDLE && dig_valid && dig_ready) begin
      wbuf_q <= WB'(dig_data);
    end
  end

  logic unused_misc;
  assign unused_misc = ^{desc_rsvd_unused, desc_q, rd_fit[31:16]};

endmodule
