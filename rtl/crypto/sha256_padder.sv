// SHA-256 block assembler: packed message beats (+ optional prefix byte) -> padded 64-byte blocks.
//
// Per message the padder takes one header (s_msg_*: byte length, optional prefix byte), then
// ceil(len/B) data beats (s_dat_*, B = DW/8 bytes each, packed: the message's byte j*B+i is lane
// i of its beat j; lanes past the end of the last beat are ignored). Each message starts in a
// fresh beat. It emits the message as SHA-256 blocks (s_blk of sha256_core): prefix byte, data,
// 0x80, zeros, 64-bit big-endian bit length of prefix+data; `first` on the first block and
// `last` on the final one.
//
// The prefix is handled by a one-byte carry: with a prefix every beat is shifted up one lane
// and its top byte carried into the next beat, so blocks are always filled in whole beats
// (B divides 64). The final partial beat gets the 0x80 marker; if the length no longer fits,
// a length-only block follows.
module sha256_padder #(
  parameter int DW = 128  // data beat width in bits, 64..512, power of two
) (
  input  logic          clk_i,
  input  logic          rst_ni,
  input  logic          stall_i,          // freeze (the block handshake still completes)
  input  logic          clear_i,          // abandon the message in progress

  input  logic          s_msg_valid_i,
  output logic          s_msg_ready_o,
  input  logic [31:0]   s_msg_len_i,      // data bytes (prefix not included)
  input  logic          s_msg_prefix_en_i,
  input  logic [7:0]    s_msg_prefix_i,

  input  logic          s_dat_valid_i,
  output logic          s_dat_ready_o,
  input  logic [DW-1:0] s_dat_data_i,

  output logic          m_blk_valid_o,
  input  logic          m_blk_ready_i,
  output logic [511:0]  m_blk_data_o,
  output logic          m_blk_first_o,
  output logic          m_blk_last_o
);

  localparam int B     = DW / 8;                          // bytes per beat
  localparam int LB    = $clog2(B);
  localparam int NSLOT = 64 / B;                          // beats per block
  localparam int SW    = (NSLOT > 1) ? $clog2(NSLOT) : 1; // slot index width

  localparam logic [1:0] P_IDLE = 2'd0;  // waiting for a message header
  localparam logic [1:0] P_DATA = 2'd1;  // placing data beats
  localparam logic [1:0] P_LEN  = 2'd2;  // a length-only block is still owed
  localparam logic [1:0] P_WAIT = 2'd3;  // the final block waits to be taken

  logic [1:0]    state_q;
  logic [31:0]   left_q;    // data bytes not yet taken from s_dat
  logic          cc_q;      // carry_q holds a message byte not yet placed
  logic [7:0]    carry_q;
  logic [32:0]   tot_q;     // message length in bytes, prefix included
  logic [SW-1:0] slot_q;    // next beat slot in blk_q
  logic [511:0]  blk_q;
  logic          full_q;    // blk_q is complete and offered on m_blk
  logic          first_q;   // blk_q is the message's first block
  logic          last_q;    // blk_q is the message's last block

  // ---------------------------------------------------------------------------------------------
  // Combinational: what happens to the input beat this cycle (narrow control only).
  //
  // Simulation speed: the data-path values (the shifted beat, the final beat with its 0x80
  // marker, the length field) are formed inside the register-update branches that use them,
  // byte or word at a time, so a cycle-based simulator only evaluates them when a beat is placed
  // (and Verilator does not zero-fill wide temporaries every cycle). The hardware is the same.

  logic            go;          // may make progress this cycle
  logic            flush;       // no data left: place the final beat from the carry alone
  logic            fin_in;      // the input beat is the message's last
  logic [LB:0]     n_in;        // data bytes in the input beat
  logic [LB+1:0]   n_tot;       // bytes in the shifted beat (input + carry)
  logic            place_full;  // place a full beat this cycle
  logic            place_fin;   // place the final partial beat (0x80 marker) this cycle
  logic [LB-1:0]   k;           // message bytes in the final beat (< B)
  logic            len_fits;    // the length fits after the marker (block position <= 55)

  assign go     = !stall_i && !clear_i;
  assign flush  = (left_q == 32'd0);
  assign fin_in = (left_q <= 32'(B));
  assign n_in   = fin_in ? left_q[LB:0] : (LB+1)'(B);
  assign n_tot  = {1'b0, n_in} + {{(LB+1){1'b0}}, cc_q};

  assign s_msg_ready_o = (state_q == P_IDLE) && go;
  assign s_dat_ready_o = (state_q == P_DATA) && !full_q && !flush && go;

  always_comb begin
    place_full = 1'b0;
    place_fin  = 1'b0;
    k          = '0;
    if (state_q == P_DATA && !full_q && go) begin
      if (flush) begin
        place_fin = 1'b1;
        k         = LB'(cc_q);
      end else if (s_dat_valid_i) begin
        if (!fin_in || n_tot >= (LB+2)'(B)) begin
          place_full = 1'b1;          // a leftover byte (or nothing) is flushed next cycle
        end else begin
          place_fin = 1'b1;
          k         = n_tot[LB-1:0];
        end
      end
    end
    len_fits = (7'(slot_q) * 7'(B) + 7'(k)) <= 7'd55;
  end

  // The 64-bit big-endian bit length 8*tot, as bytes 56..63 of a block (byte 56 in bits 7:0).
  function automatic logic [63:0] len_be(input logic [32:0] tot);
    logic [63:0] bitlen;
    bitlen = {28'd0, tot, 3'b000};
    for (int j = 0; j < 8; j++) len_be[j*8 +: 8] = bitlen[(7 - j)*8 +: 8];
  endfunction

  // ---------------------------------------------------------------------------------------------
  // Block register and message state.
  //
  // A placed beat is the input beat (zero on flush) shifted up one lane with the carry byte in
  // lane 0 when cc_q. The final beat keeps its first k bytes, then 0x80, then zeros; the slots
  // after it are zero, and when the marker lies at or before byte 55 the length goes in bytes
  // 56..63 (the last 8 bytes of the block, which are zero in the final beat in that case).

  always_ff @(posedge clk_i) begin
    if (!rst_ni || clear_i) begin
      state_q <= P_IDLE;
      full_q  <= 1'b0;
      first_q <= 1'b0;
      last_q  <= 1'b0;
      slot_q  <= '0;
      left_q  <= '0;
      cc_q    <= 1'b0;
      carry_q <= '0;
      tot_q   <= '0;
      blk_q   <= '0;
    end else begin
      if (m_blk_valid_o && m_blk_ready_i) begin
        full_q  <= 1'b0;
        first_q <= 1'b0;
      end

      case (state_q)
        P_IDLE: begin
          if (s_msg_valid_i && s_msg_ready_o) begin
            state_q <= P_DATA;
            left_q  <= s_msg_len_i;
            cc_q    <= s_msg_prefix_en_i;
            carry_q <= s_msg_prefix_i;
            tot_q   <= {1'b0, s_msg_len_i} + {32'd0, s_msg_prefix_en_i};
            slot_q  <= '0;
            first_q <= 1'b1;
          end
        end

        P_DATA: begin
          if (place_full) begin
            // Constant-index slot writes (a mux per slot) rather than a variable part-select.
            for (int s = 0; s < NSLOT; s++) begin
              if (s == 32'(slot_q)) begin
                blk_q[s*DW +: DW] <= cc_q ? {s_dat_data_i[DW-9:0], carry_q} : s_dat_data_i;
              end
            end
            left_q  <= left_q - 32'(n_in);
            carry_q <= s_dat_data_i[DW-1 -: 8];
            cc_q    <= cc_q && (n_in == (LB+1)'(B));
            if (32'(slot_q) == NSLOT - 1) begin
              slot_q <= '0;
              full_q <= 1'b1;
              last_q <= 1'b0;
            end else begin
              slot_q <= slot_q + 1'b1;
            end
          end else if (place_fin) begin
            // The final beat, then zeros up to the end of the block, then the length if it fits.
            // Message byte i of the final beat is the carry for i = 0 when cc_q, else input byte
            // i - cc_q (the guard on i - 1 only keeps the index in range where it is not used).
            for (int s = 0; s < NSLOT; s++) begin
              if (s == 32'(slot_q)) begin
                for (int i = 0; i < B; i++) begin
                  if (i < 32'(k)) begin
                    if (i == 0)     blk_q[s*DW +: 8] <= cc_q ? carry_q : s_dat_data_i[7:0];
                    else if (cc_q)  blk_q[s*DW + i*8 +: 8] <= s_dat_data_i[(i > 0 ? i - 1 : 0)*8 +: 8];
                    else            blk_q[s*DW + i*8 +: 8] <= s_dat_data_i[i*8 +: 8];
                  end else if (i == 32'(k)) begin
                    blk_q[s*DW + i*8 +: 8] <= 8'h80;
                  end else begin
                    blk_q[s*DW + i*8 +: 8] <= 8'h00;
                  end
                end
              end else if (s > 32'(slot_q)) begin
                blk_q[s*DW +: DW] <= '0;
              end
            end
            if (len_fits) blk_q[511 -: 64] <= len_be(tot_q);
            left_q <= '0;
            cc_q   <= 1'b0;
            full_q <= 1'b1;
            if (len_fits) begin
              last_q  <= 1'b1;
              state_q <= P_WAIT;
            end else begin
              last_q  <= 1'b0;
              state_q <= P_LEN;
            end
          end
        end

        P_LEN: begin
          if (!full_q && go) begin
            blk_q   <= {len_be(tot_q), 448'd0};
            full_q  <= 1'b1;
            last_q  <= 1'b1;
            state_q <= P_WAIT;
          end
        end

        P_WAIT: begin
          if (!full_q && go) state_q <= P_IDLE;
        end

        default: state_q <= P_IDLE;
      endcase
    end
  end

  assign m_blk_valid_o = full_q;
  assign m_blk_data_o  = blk_q;
  assign m_blk_first_o = first_q;
  assign m_blk_last_o  = last_q;

endmodule
