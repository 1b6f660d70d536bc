// LtHash16 unit of the KV engine: entry vectors (BLAKE3 XOF) added to or subtracted from a live or scratch lattice; clear, load, read, digest, compare.
//
// Interface (valid/ready streams; a transfer happens when valid and ready are both high):
//
// - Commands (s_cmd_*): op, scratch (0 = the live lattice, 1 = the scratch lattice), len.
//     0 ADD      lattice += vector(entry); the entry's len encoding bytes follow on s_data as
//                ceil(len/64) beats (byte k of a beat in bits [8k+7:8k]; bytes of a last partial
//                beat past len are ignored). The encoding is built by the caller:
//                u64 LE len(contract) | contract | u64 LE len(key) | key | u64 LE height |
//                u32 LE index | u64 LE len(value) | value   (docs/state.md, "The digest: LtHash16").
//     1 SUB      lattice -= vector(entry), the same beats.
//     2 CLEAR    lattice := 0 (32 cycles).
//     3 LOAD     lattice := 32 beats from s_data (the 2048 lattice bytes, lanes little-endian).
//     4 READ     the 2048 lattice bytes out on m_rsp as 32 beats, m_rsp_last_o on the last.
//     5 DIGEST   one beat on m_rsp: bytes 0..31 = BLAKE3 derive-key ("bpu state LtHash16 digest
//                v1") of the 2048 lattice bytes, bytes 32..63 zero.
//     6 COMPARE  one beat on m_rsp: bit 0 = 1 if the live and scratch lattices are equal (the
//                scratch bit is ignored).
//     7          reserved: accepted and ignored.
//   vector(entry) is the 2048-byte BLAKE3 XOF output in derive-key mode with context
//   "bpu state LtHash16 entry v1" over the encoding, read as 1024 little-endian u16 lanes.
//   Entries stream back to back: the next ADD/SUB is accepted as soon as the hasher takes its
//   header (while earlier vectors are still being accumulated). Any other command waits until
//   every earlier entry is in the lattice, and runs to completion before the next is accepted.
// - Data in (s_data_*): entry encodings and LOAD beats, in command order.
// - Responses (m_rsp_*): READ, DIGEST and COMPARE beats, in command order.
// - idle_o: no command in progress and every accepted entry accumulated.
//
// After reset the lattice contents are undefined: CLEAR (or LOAD) both before use.
//
// One blake3_hasher serves both the entry vectors and the digest (the input is muxed): the
// digest is rare (once per block) and BLAKE3 is ~20k LUTs. The lattices are two lthash_ram
// (32 x 512 bits each); each 64-byte XOF output block k is added lane-wise mod 2^16 into word
// k in one cycle (read in the cycle the block is taken, written in the next). See
// docs/kv-engine.md, "Digest unit (LtHash16)".
module lthash_unit #(
  parameter int MAX_DEPTH = 15  // hasher stack depth: encodings up to 2^(MAX_DEPTH+10)-1 bytes
) (
  input  logic                 clk_i,
  input  logic                 rst_ni,

  input  logic                 s_cmd_valid_i,
  output logic                 s_cmd_ready_o,
  input  logic [2:0]           s_cmd_op_i,
  input  logic                 s_cmd_scratch_i,
  input  logic [MAX_DEPTH+9:0] s_cmd_len_i,

  input  logic                 s_data_valid_i,
  output logic                 s_data_ready_o,
  input  logic [511:0]         s_data_i,

  output logic                 m_rsp_valid_o,
  input  logic                 m_rsp_ready_i,
  output logic [511:0]         m_rsp_data_o,
  output logic                 m_rsp_last_o,

  output logic                 idle_o
);

  localparam int LEN_W = MAX_DEPTH + 10;

  localparam logic [2:0] OP_ADD     = 3'd0;
  localparam logic [2:0] OP_SUB     = 3'd1;
  localparam logic [2:0] OP_CLEAR   = 3'd2;
  localparam logic [2:0] OP_LOAD    = 3'd3;
  localparam logic [2:0] OP_READ    = 3'd4;
  localparam logic [2:0] OP_DIGEST  = 3'd5;
  localparam logic [2:0] OP_COMPARE = 3'd6;

  // BLAKE3 derive-key context keys: BLAKE3 of the context string with key = IV and flags
  // CHUNK_START | CHUNK_END | ROOT | DERIVE_KEY_CONTEXT (one compression: the strings are
  // shorter than 64 bytes), output bytes 0..31, byte k in bits [8k+7:8k]. Computed by hand (a
  // Python transcription of the specification) and checked in runtime/tests/lthash_rtl.rs
  // against the hasher's own DERIVE_KEY_CONTEXT computation and the blake3 crate.
  // "bpu state LtHash16 entry v1"
  localparam logic [255:0] ENTRY_CTX_KEY =
    256'hc9e2c1ac_f7fc2994_2fd3461a_af0bcffe_9dbe66db_56accc30_f3bbffb8_3c807565;
  // "bpu state LtHash16 digest v1"
  localparam logic [255:0] DIGEST_CTX_KEY =
    256'h621fef33_beff1cff_ee9b851e_c2caab9e_3958cd94_0cd50339_408c0fea_014434a8;

  localparam logic [1:0] MODE_RAW            = 2'd3;
  localparam logic [7:0] DERIVE_KEY_MATERIAL = 8'h40;

  localparam logic [2:0] S_IDLE  = 3'd0;  // accepting commands; entry beats flow to the hasher
  localparam logic [2:0] S_CLEAR = 3'd1;  // writing zeros, word cnt
  localparam logic [2:0] S_LOAD  = 3'd2;  // writing s_data beats, word cnt
  localparam logic [2:0] S_READ  = 3'd3;  // streaming words to m_rsp
  localparam logic [2:0] S_DHDR  = 3'd4;  // offering the digest job's header to the hasher
  localparam logic [2:0] S_DFEED = 3'd5;  // streaming words to the hasher
  localparam logic [2:0] S_CMP   = 3'd6;  // streaming both lattices into the comparator
  localparam logic [2:0] S_CRSP  = 3'd7;  // offering the compare result

  // ---------------------------------------------------------------------------------------------
  // Hasher

  logic               h_hdr_valid, h_hdr_ready;
  logic [255:0]       h_hdr_key;
  logic [LEN_W-1:0]   h_hdr_len;
  logic [15:0]        h_hdr_out_blocks;
  logic               h_msg_valid, h_msg_ready;
  logic [511:0]       h_msg_data;
  logic               h_out_valid, h_out_ready, h_out_last;
  logic [511:0]       h_out_data;
  logic               h_busy;

  blake3_hasher #(.MAX_DEPTH(MAX_DEPTH), .OB_W(16)) u_hasher (
    .clk_i              (clk_i),
    .rst_ni             (rst_ni),
    .s_hdr_valid_i      (h_hdr_valid),
    .s_hdr_ready_o      (h_hdr_ready),
    .s_hdr_mode_i       (MODE_RAW),
    .s_hdr_key_i        (h_hdr_key),
    .s_hdr_flags_i      (DERIVE_KEY_MATERIAL),
    .s_hdr_ctx_len_i    ('0),
    .s_hdr_len_i        (h_hdr_len),
    .s_hdr_out_blocks_i (h_hdr_out_blocks),
    .s_msg_valid_i      (h_msg_valid),
    .s_msg_ready_o      (h_msg_ready),
    .s_msg_data_i       (h_msg_data),
    .m_out_valid_o      (h_out_valid),
    .m_out_ready_i      (h_out_ready),
    .m_out_data_o       (h_out_data),
    .m_out_last_o       (h_out_last),
    .busy_o             (h_busy)
  );

  // ---------------------------------------------------------------------------------------------
  // Jobs in the hasher, in order: {digest, subtract, scratch}. Pushed when the hasher takes a
  // header, popped when it gives the job's last output block. Four entries: with the
  // accumulator always ready at most two jobs are in the hasher at once (the next header is
  // taken only after the previous job issued its last output compression); the full check
  // keeps it safe regardless.

  logic [2:0] fifo_q [4];
  logic [1:0] wp_q, rp_q;
  logic [2:0] fcnt_q;
  logic       push, pop;
  logic [2:0] push_val;
  logic       fifo_full, fifo_empty;
  logic       head_dig, head_sub, head_scr;

  assign fifo_full  = (fcnt_q == 3'd4);
  assign fifo_empty = (fcnt_q == 3'd0);
  assign {head_dig, head_sub, head_scr} = fifo_q[rp_q];

  always_ff @(posedge clk_i) begin
    if (push) begin
      fifo_q[wp_q] <= push_val;
    end
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      wp_q   <= '0;
      rp_q   <= '0;
      fcnt_q <= '0;
    end else begin
      if (push) wp_q <= wp_q + 2'd1;
      if (pop)  rp_q <= rp_q + 2'd1;
      fcnt_q <= fcnt_q + {2'b0, push} - {2'b0, pop};
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Lattice RAMs and the accumulator

  logic         re, we_live, we_scr;
  logic [4:0]   raddr, waddr;
  logic [511:0] wdata, rdata_live, rdata_scr;

  lthash_ram u_live (
    .clk_i   (clk_i),
    .re_i    (re),
    .raddr_i (raddr),
    .rdata_o (rdata_live),
    .we_i    (we_live),
    .waddr_i (waddr),
    .wdata_i (wdata)
  );

  lthash_ram u_scratch (
    .clk_i   (clk_i),
    .re_i    (re),
    .raddr_i (raddr),
    .rdata_o (rdata_scr),
    .we_i    (we_scr),
    .waddr_i (waddr),
    .wdata_i (wdata)
  );

  logic         acc_take;     // an entry's output block is taken this cycle
  logic [4:0]   blk_q;        // index of the head job's next output block
  logic         acc_v_q;      // a block waits for its word (read last cycle), written now
  logic [4:0]   acc_blk_q;
  logic         acc_sub_q, acc_scr_q;
  logic [511:0] acc_data_q;
  logic [511:0] acc_old, acc_sum;
  logic         acc_idle;

  assign h_out_ready = !fifo_empty && (head_dig ? m_rsp_ready_i : 1'b1);
  assign acc_take    = h_out_valid && h_out_ready && !head_dig;
  assign pop         = h_out_valid && h_out_ready && h_out_last;
  assign acc_idle    = fifo_empty && !acc_v_q;

  assign acc_old = acc_scr_q ? rdata_scr : rdata_live;
  always_comb begin
    for (int i = 0; i < 32; i++) begin
      acc_sum[16*i +: 16] = acc_sub_q ? acc_old[16*i +: 16] - acc_data_q[16*i +: 16]
                                      : acc_old[16*i +: 16] + acc_data_q[16*i +: 16];
    end
  end

  always_ff @(posedge clk_i) begin
    if (acc_take) begin
      acc_blk_q  <= blk_q;
      acc_sub_q  <= head_sub;
      acc_scr_q  <= head_scr;
      acc_data_q <= h_out_data;
    end
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      acc_v_q <= 1'b0;
      blk_q   <= '0;
    end else begin
      acc_v_q <= acc_take;
      if (pop) begin
        blk_q <= '0;
      end else if (acc_take) begin
        blk_q <= blk_q + 5'd1;
      end
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Command FSM

  logic [2:0] state_q, state_d;
  logic       scr_q, scr_d;     // the command's lattice
  logic [5:0] cnt_q, cnt_d;     // next word to read or write (32 = all issued)
  logic       rv_q, rv_d;       // the RAM read registers hold a word for the sink
  logic       diff_q, diff_d;   // COMPARE: a word differed

  logic         is_entry, cmd_take, streaming, sink_ready, adv, fsm_re, fsm_we;
  logic [511:0] fsm_wdata, word;

  assign is_entry  = (s_cmd_op_i == OP_ADD) || (s_cmd_op_i == OP_SUB);
  assign word      = scr_q ? rdata_scr : rdata_live;
  assign streaming = (state_q == S_READ) || (state_q == S_DFEED) || (state_q == S_CMP);

  always_comb begin
    case (state_q)
      S_READ:  sink_ready = m_rsp_ready_i;
      S_DFEED: sink_ready = h_msg_ready;
      S_CMP:   sink_ready = 1'b1;
      default: sink_ready = 1'b0;
    endcase
  end

  assign adv    = streaming && (!rv_q || sink_ready);
  assign fsm_re = adv && !cnt_q[5];

  assign s_cmd_ready_o = (state_q == S_IDLE) &&
                         (is_entry ? (h_hdr_ready && !fifo_full) : acc_idle);
  assign cmd_take      = s_cmd_valid_i && s_cmd_ready_o;

  // Hasher input: entries from the command and data streams, the digest from the FSM.
  assign h_hdr_valid      = (state_q == S_DHDR) ||
                            ((state_q == S_IDLE) && s_cmd_valid_i && is_entry && !fifo_full);
  assign h_hdr_key        = (state_q == S_DHDR) ? DIGEST_CTX_KEY : ENTRY_CTX_KEY;
  assign h_hdr_len        = (state_q == S_DHDR) ? LEN_W'(2048) : s_cmd_len_i;
  assign h_hdr_out_blocks = (state_q == S_DHDR) ? 16'd1 : 16'd32;
  assign h_msg_valid      = (state_q == S_DFEED) ? rv_q : ((state_q == S_IDLE) && s_data_valid_i);
  assign h_msg_data       = (state_q == S_DFEED) ? word : s_data_i;

  assign s_data_ready_o = (state_q == S_IDLE) ? h_msg_ready : (state_q == S_LOAD);

  always_comb begin
    push     = 1'b0;
    push_val = 3'b000;
    if (state_q == S_DHDR && h_hdr_ready) begin
      push     = 1'b1;
      push_val = {1'b1, 1'b0, scr_q};
    end else if (cmd_take && is_entry) begin
      push     = 1'b1;
      push_val = {1'b0, s_cmd_op_i == OP_SUB, s_cmd_scratch_i};
    end
  end

  always_comb begin
    state_d   = state_q;
    scr_d     = scr_q;
    cnt_d     = cnt_q;
    rv_d      = rv_q;
    diff_d    = diff_q;
    fsm_we    = 1'b0;
    fsm_wdata = '0;
    case (state_q)
      S_IDLE: begin
        if (cmd_take && !is_entry) begin
          scr_d  = s_cmd_scratch_i;
          cnt_d  = '0;
          rv_d   = 1'b0;
          diff_d = 1'b0;
          case (s_cmd_op_i)
            OP_CLEAR:   state_d = S_CLEAR;
            OP_LOAD:    state_d = S_LOAD;
            OP_READ:    state_d = S_READ;
            OP_DIGEST:  state_d = S_DHDR;
            OP_COMPARE: state_d = S_CMP;
            default:    state_d = S_IDLE;
          endcase
        end
      end
      S_CLEAR: begin
        fsm_we = 1'b1;
        cnt_d  = cnt_q + 6'd1;
        if (cnt_q == 6'd31) state_d = S_IDLE;
      end
      S_LOAD: begin
        fsm_wdata = s_data_i;
        if (s_data_valid_i) begin
          fsm_we = 1'b1;
          cnt_d  = cnt_q + 6'd1;
          if (cnt_q == 6'd31) state_d = S_IDLE;
        end
      end
      S_DHDR: begin
        if (h_hdr_ready) state_d = S_DFEED;
      end
      S_CRSP: begin
        if (m_rsp_ready_i) state_d = S_IDLE;
      end
      default: begin
        // S_READ, S_DFEED, S_CMP: stream words 0..31 through the read registers to the sink.
        if (state_q == S_CMP && rv_q && rdata_live != rdata_scr) diff_d = 1'b1;
        if (adv) begin
          rv_d = !cnt_q[5];
          if (!cnt_q[5]) begin
            cnt_d = cnt_q + 6'd1;
          end else begin
            state_d = (state_q == S_CMP) ? S_CRSP : S_IDLE;
          end
        end
      end
    endcase
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      state_q <= S_IDLE;
      scr_q   <= 1'b0;
      cnt_q   <= '0;
      rv_q    <= 1'b0;
      diff_q  <= 1'b0;
    end else begin
      state_q <= state_d;
      scr_q   <= scr_d;
      cnt_q   <= cnt_d;
      rv_q    <= rv_d;
      diff_q  <= diff_d;
    end
  end

  // RAM ports: the accumulator and the FSM never use them in the same cycle (the FSM's RAM
  // commands start only when the accumulator is idle, and no entry is accepted meanwhile).
  assign re      = acc_take || fsm_re;
  assign raddr   = acc_take ? blk_q : cnt_q[4:0];
  assign waddr   = acc_v_q ? acc_blk_q : cnt_q[4:0];
  assign wdata   = acc_v_q ? acc_sum : fsm_wdata;
  assign we_live = acc_v_q ? !acc_scr_q : (fsm_we && !scr_q);
  assign we_scr  = acc_v_q ? acc_scr_q : (fsm_we && scr_q);

  // ---------------------------------------------------------------------------------------------
  // Responses: the digest from the hasher, READ words, the COMPARE result.

  always_comb begin
    if (!fifo_empty && head_dig) begin
      m_rsp_valid_o = h_out_valid;
      m_rsp_data_o  = {256'b0, h_out_data[255:0]};
      m_rsp_last_o  = 1'b1;
    end else if (state_q == S_READ) begin
      m_rsp_valid_o = rv_q;
      m_rsp_data_o  = word;
      m_rsp_last_o  = cnt_q[5];
    end else if (state_q == S_CRSP) begin
      m_rsp_valid_o = 1'b1;
      m_rsp_data_o  = {511'b0, !diff_q};
      m_rsp_last_o  = 1'b1;
    end else begin
      m_rsp_valid_o = 1'b0;
      m_rsp_data_o  = '0;
      m_rsp_last_o  = 1'b0;
    end
  end

  assign idle_o = (state_q == S_IDLE) && acc_idle && !h_busy;

endmodule
