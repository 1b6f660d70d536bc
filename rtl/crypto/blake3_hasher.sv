// BLAKE3 hasher on blake3_compress: hash, keyed, derive-key and raw jobs of any length, with XOF output.
//
// Interface (three valid/ready streams; a transfer happens when valid and ready are both high):
//
// - Job header (s_hdr_*), accepted only while no job is being read in (s_hdr_ready_o):
//     mode       0 HASH      key = IV, base flags 0
//                1 KEYED     key = s_hdr_key_i, base flags KEYED_HASH
//                2 DERIVE    the first ctx_len message bytes are the context string: hashed with
//                            key = IV and DERIVE_KEY_CONTEXT into a 32-byte context key; then the
//                            len material bytes with key = context key and DERIVE_KEY_MATERIAL
//                3 RAW       key = s_hdr_key_i, base flags = s_hdr_flags_i[6:4] (KEYED_HASH,
//                            DERIVE_KEY_CONTEXT, DERIVE_KEY_MATERIAL); e.g. a precomputed
//                            context key with DERIVE_KEY_MATERIAL. Other flag bits are ignored.
//     key        32 bytes, byte k in bits [8k+7:8k] (modes KEYED, RAW)
//     ctx_len    context bytes (mode DERIVE only)
//     len        input (material) bytes, 0 .. 2^(MAX_DEPTH+10)-1
//     out_blocks number of 64-byte output blocks (XOF output 0 .. 64*out_blocks-1); 0 counts as 1
// - Message (s_msg_*): the input as 64-byte beats, byte k of a beat in bits [8k+7:8k] (BLAKE3's
//   little-endian word order). A job takes ceil(len/64) beats (mode DERIVE: ceil(ctx_len/64)
//   beats of context first, then ceil(len/64) of material, each part starting on a new beat).
//   The bytes of a last partial beat beyond the length are ignored (masked to zero), so they
//   may hold anything. Beats of a job are accepted only after (or in the same cycle as) its
//   header: s_msg_ready_o may depend combinationally on s_hdr_valid_i.
// - Output (m_out_*): out_blocks blocks of 64 bytes in order, byte k in bits [8k+7:8k];
//   m_out_last_o marks a job's last block. The first 32 bytes of block 0 are the BLAKE3 hash.
//
// Jobs follow each other: the next header is accepted as soon as the previous job has issued its
// last output compression, while its output blocks may still be in the pipeline.
//
// Operation: one compression in flight at a time while the input is read (a chunk's blocks
// depend on each other, a parent on its children), so each block or parent node costs 8 cycles
// (issue + 7 pipeline stages); the root node's output blocks (counter 0, 1, 2, ... with ROOT)
// are independent and issued one per cycle. Chunk chaining values go onto a stack of MAX_DEPTH
// entries, merged into parents as chunks complete (the reference implementation's lazy merge,
// made eager because the length is known up front). See docs/blake3-core.md.
module blake3_hasher #(
  parameter int MAX_DEPTH = 16,  // chaining-value stack entries: inputs up to 2^(MAX_DEPTH+10)-1 bytes
  parameter int OB_W      = 16   // width of the output block count
) (
  input  logic                 clk_i,
  input  logic                 rst_ni,

  input  logic                 s_hdr_valid_i,
  output logic                 s_hdr_ready_o,
  input  logic [1:0]           s_hdr_mode_i,
  input  logic [255:0]         s_hdr_key_i,
  input  logic [7:0]           s_hdr_flags_i,
  input  logic [MAX_DEPTH+9:0] s_hdr_ctx_len_i,
  input  logic [MAX_DEPTH+9:0] s_hdr_len_i,
  input  logic [OB_W-1:0]      s_hdr_out_blocks_i,

  input  logic                 s_msg_valid_i,
  output logic                 s_msg_ready_o,
  input  logic [511:0]         s_msg_data_i,

  output logic                 m_out_valid_o,
  input  logic                 m_out_ready_i,
  output logic [511:0]         m_out_data_o,
  output logic                 m_out_last_o,

  output logic                 busy_o
);

  localparam int LEN_W = MAX_DEPTH + 10;           // byte counts
  localparam int SAW   = $clog2(MAX_DEPTH);        // stack address
  localparam int SPW   = $clog2(MAX_DEPTH + 1);    // stack pointer (0 .. MAX_DEPTH)

  generate
    if (MAX_DEPTH < 2 || MAX_DEPTH > 54) begin : g_bad_depth
      $error("blake3_hasher: MAX_DEPTH must be 2..54");
    end
  endgenerate

  localparam logic [1:0] MODE_HASH   = 2'd0;
  localparam logic [1:0] MODE_KEYED  = 2'd1;
  localparam logic [1:0] MODE_DERIVE = 2'd2;

  // Flags (BLAKE3 specification, table 3).
  localparam logic [7:0] CHUNK_START         = 8'h01;
  localparam logic [7:0] CHUNK_END           = 8'h02;
  localparam logic [7:0] PARENT              = 8'h04;
  localparam logic [7:0] ROOT                = 8'h08;
  localparam logic [7:0] KEYED_HASH          = 8'h10;
  localparam logic [7:0] DERIVE_KEY_CONTEXT  = 8'h20;
  localparam logic [7:0] DERIVE_KEY_MATERIAL = 8'h40;

  localparam logic [255:0] IV = {32'h5be0cd19, 32'h1f83d9ab, 32'h9b05688c, 32'h510e527f,
                                 32'ha54ff53a, 32'h3c6ef372, 32'hbb67ae85, 32'h6a09e667};

  // ---------------------------------------------------------------------------------------------
  // Job FSM states

  localparam logic [2:0] S_IDLE  = 3'd0;  // waiting for a header
  localparam logic [2:0] S_BLOCK = 3'd1;  // issue the next chunk block (when its beat is here)
  localparam logic [2:0] S_WAIT  = 3'd2;  // waiting for a chunk block's chaining value
  localparam logic [2:0] S_MERGE = 3'd3;  // after a chunk: merge completed subtrees, then push
  localparam logic [2:0] S_PWAIT = 3'd4;  // waiting for a parent's chaining value
  localparam logic [2:0] S_FINAL = 3'd5;  // after the last chunk: fold the stack into the root
  localparam logic [2:0] S_ROOT  = 3'd6;  // issuing the root's output blocks 1, 2, ...
  localparam logic [2:0] S_KEY   = 3'd7;  // DERIVE: waiting for the context key

  logic [2:0]           state_q;
  logic                 ctx_q;        // DERIVE, context part: the root gives the key, no output
  logic [255:0]         key_q;        // key words of the current part
  logic [2:0]           base_q;       // base flags of the current part, bits 6:4
  logic [LEN_W-1:0]     rem_q;        // bytes of the current part not yet in an issued block
  logic [LEN_W-1:0]     len_q;        // DERIVE: material bytes (the part after the context)
  logic [MAX_DEPTH-1:0] chunk_q;      // chunk counter within the part
  logic [3:0]           blk_q;        // block within the chunk
  logic                 end_q;        // the block in flight ends its chunk
  logic                 fin_q;        // the block in flight is the part's last / folding the stack
  logic [MAX_DEPTH-1:0] mtot_q;       // merge counter: chunks completed, shifted per merge
  logic [255:0]         cv_q;         // chaining value of the chunk or subtree in progress
  logic [255:0]         stack_q [MAX_DEPTH];
  logic [SPW-1:0]       sp_q;         // stack entries
  logic [OB_W-1:0]      out_cnt_q;    // next output block (root counter)
  logic [OB_W-1:0]      out_last_q;   // index of the last output block
  logic                 root_par_q;   // S_ROOT: the root is a parent node (else a chunk block)

  logic [511:0]         msg_q;        // one-beat message buffer
  logic                 msg_full_q;
  logic [LEN_W-1:0]     beats_q;      // beats of the job still to accept

  // ---------------------------------------------------------------------------------------------
  // Compressor

  logic         c_valid, c_ready, c_out_valid, c_out_ready, c_busy;
  logic [255:0] c_cv;
  logic [511:0] c_block, c_out;
  logic [63:0]  c_counter;
  logic [31:0]  c_len, c_flags;
  logic [1:0]   c_tag, c_out_tag;   // {output block, job's last output block}

  blake3_compress #(.TAG_W(2)) u_compress (
    .clk_i         (clk_i),
    .rst_ni        (rst_ni),
    .s_valid_i     (c_valid),
    .s_ready_o     (c_ready),
    .s_cv_i        (c_cv),
    .s_block_i     (c_block),
    .s_counter_i   (c_counter),
    .s_block_len_i (c_len),
    .s_flags_i     (c_flags),
    .s_tag_i       (c_tag),
    .m_valid_o     (c_out_valid),
    .m_ready_i     (c_out_ready),
    .m_out_o       (c_out),
    .m_tag_o       (c_out_tag),
    .busy_o        (c_busy)
  );

  // Results tagged as output go to m_out; the others (chaining values, the context key) are
  // always taken: the FSM is then waiting for exactly that result.
  logic res_take;
  assign m_out_valid_o = c_out_valid && c_out_tag[1];
  assign m_out_data_o  = c_out;
  assign m_out_last_o  = c_out_tag[0];
  assign c_out_ready   = c_out_tag[1] ? m_out_ready_i : 1'b1;
  assign res_take      = c_out_valid && !c_out_tag[1];

  assign busy_o = (state_q != S_IDLE) || c_busy;

  // ---------------------------------------------------------------------------------------------
  // What the current state would issue (all from registers)

  function automatic logic [511:0] mask_block(input logic [511:0] d, input logic [6:0] n);
    for (int k = 0; k < 64; k++) begin
      mask_block[8*k +: 8] = (7'(k) < n) ? d[8*k +: 8] : 8'h00;
    end
  endfunction

  logic [SAW-1:0] top_idx;
  logic [255:0]   stack_top;
  logic           last_blk;   // the block is the part's last
  logic           chunk_end;  // the block ends its chunk
  logic [6:0]     blen;       // the block's length
  logic           is_par;     // the issue is a parent node
  logic           is_root;    // the issue is the root (an output block)
  logic           last_out;   // the issue is the job's (or the context's) last root output
  logic           issue;

  assign top_idx   = SAW'(sp_q - 1'b1);
  assign stack_top = stack_q[top_idx];
  assign last_blk  = (rem_q <= LEN_W'(64));
  assign chunk_end = last_blk || (blk_q == 4'd15);
  assign blen      = last_blk ? rem_q[6:0] : 7'd64;
  assign is_par    = (state_q == S_MERGE) || (state_q == S_FINAL) ||
                     (state_q == S_ROOT && root_par_q);
  assign is_root   = (state_q == S_BLOCK && last_blk && chunk_q == '0) ||
                     (state_q == S_FINAL && sp_q == SPW'(1)) || (state_q == S_ROOT);
  assign last_out  = ctx_q || (out_cnt_q == out_last_q);

  always_comb begin
    c_valid = 1'b0;
    case (state_q)
      S_BLOCK: c_valid = msg_full_q || (rem_q == '0);
      S_MERGE: c_valid = !mtot_q[0];
      S_FINAL: c_valid = 1'b1;
      S_ROOT:  c_valid = 1'b1;
      default: c_valid = 1'b0;
    endcase
  end
  assign issue = c_valid && c_ready;

  assign c_cv      = (is_par || blk_q == 4'd0) ? key_q : cv_q;
  assign c_block   = is_par ? {cv_q, stack_top} : mask_block(msg_q, blen);
  assign c_counter = is_root ? {{(64-OB_W){1'b0}}, out_cnt_q} :
                     is_par  ? 64'd0 : {{(64-MAX_DEPTH){1'b0}}, chunk_q};
  assign c_len     = is_par ? 32'd64 : {25'd0, blen};
  assign c_flags   = {24'd0, 1'b0, base_q, 4'd0} | {24'd0, is_root ? ROOT : 8'h00} |
                     {24'd0, is_par ? PARENT : (((blk_q == 4'd0) ? CHUNK_START : 8'h00) |
                                                (chunk_end ? CHUNK_END : 8'h00))};
  assign c_tag     = {is_root && !ctx_q, is_root && last_out};

  // ---------------------------------------------------------------------------------------------
  // Header and message beats

  logic             hdr_take, msg_take;
  logic [LEN_W-1:0] hdr_beats_ctx, hdr_beats_len, hdr_beats;

  assign s_hdr_ready_o = (state_q == S_IDLE);
  assign hdr_take      = s_hdr_valid_i && s_hdr_ready_o;
  // ceil(bytes / 64)
  assign hdr_beats_ctx = (s_hdr_ctx_len_i >> 6) + LEN_W'(s_hdr_ctx_len_i[5:0] != 6'd0);
  assign hdr_beats_len = (s_hdr_len_i >> 6) + LEN_W'(s_hdr_len_i[5:0] != 6'd0);
  assign hdr_beats     = hdr_beats_len + ((s_hdr_mode_i == MODE_DERIVE) ? hdr_beats_ctx : '0);
  assign s_msg_ready_o = !msg_full_q && (beats_q != '0 || (hdr_take && hdr_beats != '0));
  assign msg_take      = s_msg_valid_i && s_msg_ready_o;

  // The message buffer: filled by a beat, emptied when the block that reads it is issued (a root
  // block only after its last output block: every output block reads it).
  always_ff @(posedge clk_i) begin
    if (msg_take) msg_q <= s_msg_data_i;
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      msg_full_q <= 1'b0;
      beats_q    <= '0;
    end else begin
      if (msg_take) begin
        msg_full_q <= 1'b1;
      end else if (issue && state_q == S_BLOCK && rem_q != '0 && (!is_root || last_out)) begin
        msg_full_q <= 1'b0;
      end else if (issue && state_q == S_ROOT && !root_par_q && rem_q != '0 && last_out) begin
        msg_full_q <= 1'b0;
      end
      if (hdr_take) begin
        beats_q <= hdr_beats - LEN_W'(msg_take);
      end else if (msg_take) begin
        beats_q <= beats_q - 1'b1;
      end
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Job FSM

  logic unused_flags;  // RAW uses flag bits 6:4 only
  assign unused_flags = ^{s_hdr_flags_i[7], s_hdr_flags_i[3:0]};

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      state_q    <= S_IDLE;
      ctx_q      <= 1'b0;
      sp_q       <= '0;
      out_cnt_q  <= '0;
      root_par_q <= 1'b0;
    end else begin
      case (state_q)
        S_IDLE: begin
          if (hdr_take) begin
            state_q   <= S_BLOCK;
            ctx_q     <= (s_hdr_mode_i == MODE_DERIVE);
            sp_q      <= '0;
            out_cnt_q <= '0;
          end
        end
        S_BLOCK: begin
          if (issue) begin
            if (!is_root) begin
              state_q <= S_WAIT;
            end else if (last_out) begin
              state_q <= ctx_q ? S_KEY : S_IDLE;
            end else begin
              state_q    <= S_ROOT;
              root_par_q <= 1'b0;
              out_cnt_q  <= out_cnt_q + 1'b1;
            end
          end
        end
        S_WAIT: begin
          if (res_take) begin
            state_q <= !end_q ? S_BLOCK : (fin_q ? S_FINAL : S_MERGE);
          end
        end
        S_MERGE: begin
          if (mtot_q[0]) begin
            sp_q    <= sp_q + 1'b1;
            state_q <= S_BLOCK;
          end else if (issue) begin
            state_q <= S_PWAIT;
          end
        end
        S_PWAIT: begin
          if (res_take) begin
            sp_q    <= sp_q - 1'b1;
            state_q <= fin_q ? S_FINAL : S_MERGE;
          end
        end
        S_FINAL: begin
          if (issue) begin
            if (!is_root) begin
              state_q <= S_PWAIT;
            end else if (last_out) begin
              state_q <= ctx_q ? S_KEY : S_IDLE;
            end else begin
              state_q    <= S_ROOT;
              root_par_q <= 1'b1;
              out_cnt_q  <= out_cnt_q + 1'b1;
            end
          end
        end
        S_ROOT: begin
          if (issue) begin
            if (last_out) begin
              state_q <= ctx_q ? S_KEY : S_IDLE;
            end else begin
              out_cnt_q <= out_cnt_q + 1'b1;
            end
          end
        end
        S_KEY: begin
          if (res_take) begin
            state_q   <= S_BLOCK;
            ctx_q     <= 1'b0;
            sp_q      <= '0;
            out_cnt_q <= '0;
          end
        end
        default: state_q <= S_IDLE;
      endcase
    end
  end

  // Datapath of the job (no reset: each register is loaded before it is read in a job).
  always_ff @(posedge clk_i) begin
    case (state_q)
      S_IDLE: begin
        if (hdr_take) begin
          chunk_q    <= '0;
          blk_q      <= 4'd0;
          len_q      <= s_hdr_len_i;
          out_last_q <= (s_hdr_out_blocks_i == '0) ? '0 : s_hdr_out_blocks_i - 1'b1;
          case (s_hdr_mode_i)
            MODE_HASH: begin
              key_q  <= IV;
              base_q <= 3'b000;
              rem_q  <= s_hdr_len_i;
            end
            MODE_KEYED: begin
              key_q  <= s_hdr_key_i;
              base_q <= KEYED_HASH[6:4];
              rem_q  <= s_hdr_len_i;
            end
            MODE_DERIVE: begin
              key_q  <= IV;
              base_q <= DERIVE_KEY_CONTEXT[6:4];
              rem_q  <= s_hdr_ctx_len_i;
            end
            default: begin  // RAW
              key_q  <= s_hdr_key_i;
              base_q <= s_hdr_flags_i[6:4];
              rem_q  <= s_hdr_len_i;
            end
          endcase
        end
      end
      S_BLOCK: begin
        if (issue && !is_root) begin
          end_q <= chunk_end;
          fin_q <= last_blk;
          if (!last_blk) rem_q <= rem_q - LEN_W'(64);
        end
      end
      S_WAIT: begin
        if (res_take) begin
          cv_q <= c_out[255:0];
          if (!end_q) blk_q <= blk_q + 1'b1;
          mtot_q <= chunk_q + 1'b1;
        end
      end
      S_MERGE: begin
        if (mtot_q[0]) begin
          stack_q[sp_q[SAW-1:0]] <= cv_q;
          chunk_q <= chunk_q + 1'b1;
          blk_q   <= 4'd0;
        end
      end
      S_PWAIT: begin
        if (res_take) begin
          cv_q   <= c_out[255:0];
          mtot_q <= mtot_q >> 1;
        end
      end
      S_KEY: begin
        if (res_take) begin
          key_q   <= c_out[255:0];
          base_q  <= DERIVE_KEY_MATERIAL[6:4];
          rem_q   <= len_q;
          chunk_q <= '0;
          blk_q   <= 4'd0;
        end
      end
      default: ;
    endcase
  end

endmodule
