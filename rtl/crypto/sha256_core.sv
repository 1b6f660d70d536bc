// SHA-256 compression core: one round per clock, 512-bit block stream in, 256-bit digest stream out.
//
// Block stream (s_blk_*): one 64-byte block per beat, byte k of the block in bits [8k+7:8k]
// (byte 0 is the first message byte of the block). `first` starts from the initial hash value
// H0, otherwise the block continues from the current chaining value. `last` makes the core
// emit the digest after this block.
//
// Digest stream (m_dig_*): 32 bytes, byte k in bits [8k+7:8k], byte 0 = first digest byte (the
// order sha256sum prints). The digest is held in the chaining-value register, so no new block
// is accepted while a digest waits to be taken.
//
// Timing: the accept cycle loads the working variables and the 16-word message window, then 64
// round cycles follow; the chaining-value addition is folded into the 64th round. The next block
// is accepted the cycle after the 64th round: 65 cycles per block in steady state.
//
// stall_i freezes the computation and refuses new blocks (a digest already offered can still be
// taken). clear_i abandons any block in progress and drops a pending digest.
module sha256_core (
  input  logic         clk_i,
  input  logic         rst_ni,
  input  logic         stall_i,
  input  logic         clear_i,

  input  logic         s_blk_valid_i,
  output logic         s_blk_ready_o,
  input  logic [511:0] s_blk_data_i,
  input  logic         s_blk_first_i,
  input  logic         s_blk_last_i,

  output logic         m_dig_valid_o,
  input  logic         m_dig_ready_i,
  output logic [255:0] m_dig_data_o
);

  // ---------------------------------------------------------------------------------------------
  // SHA-256 functions (FIPS 180-4, section 4.1.2)

  localparam logic [255:0] H_INIT = {32'h5be0cd19, 32'h1f83d9ab, 32'h9b05688c, 32'h510e527f,
                                     32'ha54ff53a, 32'h3c6ef372, 32'hbb67ae85, 32'h6a09e667};

  function automatic logic [31:0] bsig0(input logic [31:0] x);  // Σ0
    bsig0 = {x[1:0], x[31:2]} ^ {x[12:0], x[31:13]} ^ {x[21:0], x[31:22]};
  endfunction

  function automatic logic [31:0] bsig1(input logic [31:0] x);  // Σ1
    bsig1 = {x[5:0], x[31:6]} ^ {x[10:0], x[31:11]} ^ {x[24:0], x[31:25]};
  endfunction

  function automatic logic [31:0] ssig0(input logic [31:0] x);  // σ0
    ssig0 = {x[6:0], x[31:7]} ^ {x[17:0], x[31:18]} ^ {3'b000, x[31:3]};
  endfunction

  function automatic logic [31:0] ssig1(input logic [31:0] x);  // σ1
    ssig1 = {x[16:0], x[31:17]} ^ {x[18:0], x[31:19]} ^ {10'd0, x[31:10]};
  endfunction

  // Round constants K[t].
  function automatic logic [31:0] round_k(input logic [5:0] t);
    case (t)
      6'd0:  round_k = 32'h428a2f98;  6'd1:  round_k = 32'h71374491;
      6'd2:  round_k = 32'hb5c0fbcf;  6'd3:  round_k = 32'he9b5dba5;
      6'd4:  round_k = 32'h3956c25b;  6'd5:  round_k = 32'h59f111f1;
      6'd6:  round_k = 32'h923f82a4;  6'd7:  round_k = 32'hab1c5ed5;
      6'd8:  round_k = 32'hd807aa98;  6'd9:  round_k = 32'h12835b01;
      6'd10: round_k = 32'h243185be;  6'd11: round_k = 32'h550c7dc3;
      6'd12: round_k = 32'h72be5d74;  6'd13: round_k = 32'h80deb1fe;
      6'd14: round_k = 32'h9bdc06a7;  6'd15: round_k = 32'hc19bf174;
      6'd16: round_k = 32'he49b69c1;  6'd17: round_k = 32'hefbe4786;
      6'd18: round_k = 32'h0fc19dc6;  6'd19: round_k = 32'h240ca1cc;
      6'd20: round_k = 32'h2de92c6f;  6'd21: round_k = 32'h4a7484aa;
      6'd22: round_k = 32'h5cb0a9dc;  6'd23: round_k = 32'h76f988da;
      6'd24: round_k = 32'h983e5152;  6'd25: round_k = 32'ha831c66d;
      6'd26: round_k = 32'hb00327c8;  6'd27: round_k = 32'hbf597fc7;
      6'd28: round_k = 32'hc6e00bf3;  6'd29: round_k = 32'hd5a79147;
      6'd30: round_k = 32'h06ca6351;  6'd31: round_k = 32'h14292967;
      6'd32: round_k = 32'h27b70a85;  6'd33: round_k = 32'h2e1b2138;
      6'd34: round_k = 32'h4d2c6dfc;  6'd35: round_k = 32'h53380d13;
      6'd36: round_k = 32'h650a7354;  6'd37: round_k = 32'h766a0abb;
      6'd38: round_k = 32'h81c2c92e;  6'd39: round_k = 32'h92722c85;
      6'd40: round_k = 32'ha2bfe8a1;  6'd41: round_k = 32'ha81a664b;
      6'd42: round_k = 32'hc24b8b70;  6'd43: round_k = 32'hc76c51a3;
      6'd44: round_k = 32'hd192e819;  6'd45: round_k = 32'hd6990624;
      6'd46: round_k = 32'hf40e3585;  6'd47: round_k = 32'h106aa070;
      6'd48: round_k = 32'h19a4c116;  6'd49: round_k = 32'h1e376c08;
      6'd50: round_k = 32'h2748774c;  6'd51: round_k = 32'h34b0bcb5;
      6'd52: round_k = 32'h391c0cb3;  6'd53: round_k = 32'h4ed8aa4a;
      6'd54: round_k = 32'h5b9cca4f;  6'd55: round_k = 32'h682e6ff3;
      6'd56: round_k = 32'h748f82ee;  6'd57: round_k = 32'h78a5636f;
      6'd58: round_k = 32'h84c87814;  6'd59: round_k = 32'h8cc70208;
      6'd60: round_k = 32'h90befffa;  6'd61: round_k = 32'ha4506ceb;
      6'd62: round_k = 32'hbef9a3f7;  6'd63: round_k = 32'hc67178f2;
      default: round_k = 32'h0;
    endcase
  endfunction

  // Byte-swap a 32-bit word: little-endian lanes <-> big-endian SHA word.
  function automatic logic [31:0] bswap(input logic [31:0] x);
    bswap = {x[7:0], x[15:8], x[23:16], x[31:24]};
  endfunction

  // ---------------------------------------------------------------------------------------------
  // State. Word i of a 256/512-bit vector is bits [32i+31:32i] (SHA word order, not byte order).
  //
  // Simulation speed: the round, the schedule step, the byte swaps and the chaining addition are
  // computed inside the register-update branches that use them, not as free-running
  // combinational logic, so a cycle-based simulator (Verilator evaluates all combinational logic
  // every cycle) only pays for them when they are used. They are written word by word with
  // 32-bit helpers and temporaries: Verilator zero-fills every wide function result and wide
  // local variable on each evaluation, whether used or not. For the same reason the chaining
  // value is kept in digest byte order, so the digest output is a plain wire. The hardware is
  // the same: byte swaps are wiring, and the round logic feeds the same registers.

  logic         busy_q;        // a block is being compressed
  logic [5:0]   round_q;       // round being computed while busy_q
  logic         last_q;        // the block in progress is the message's last
  logic         dig_valid_q;   // hash_q holds a finished digest not yet taken
  logic [255:0] hash_q;        // chaining value H0..H7, each word byte-swapped (= the digest bytes)
  logic [255:0] work_q;        // working variables a..h (a = word 0)
  logic [511:0] win_q;         // message schedule window W[t..t+15] (W[t] = word 0)

  // ---------------------------------------------------------------------------------------------
  // Control

  logic blk_take, dig_take;
  assign s_blk_ready_o = !busy_q && !dig_valid_q && !stall_i && !clear_i;
  assign blk_take      = s_blk_valid_i && s_blk_ready_o;
  assign dig_take      = m_dig_valid_o && m_dig_ready_i;

  always_ff @(posedge clk_i) begin
    if (!rst_ni || clear_i) begin
      busy_q      <= 1'b0;
      round_q     <= 6'd0;
      last_q      <= 1'b0;
      dig_valid_q <= 1'b0;
    end else begin
      if (dig_take) begin
        dig_valid_q <= 1'b0;
      end
      if (blk_take) begin
        busy_q  <= 1'b1;
        round_q <= 6'd0;
        last_q  <= s_blk_last_i;
      end else if (busy_q && !stall_i) begin
        round_q <= round_q + 6'd1;
        if (round_q == 6'd63) begin
          busy_q      <= 1'b0;
          dig_valid_q <= last_q;
        end
      end
    end
  end

  // K[t] is looked up outside the round branch: a round-constant ROM read inside it made Yosys 0.23
  // produce a wrong netlist (its read-port register merging), caught by simulating the synthesized
  // netlist against the RTL. The lookup is a cheap table read in simulation.
  logic [31:0] k_t;
  assign k_t = round_k(round_q);

  // Datapath registers (no reset needed: only read while busy_q / dig_valid_q).
  // The accept cycle loads the window with the block as big-endian words and starts from H0
  // (first block) or the chaining value. Each round cycle computes T1/T2 from a..h, K[t] and
  // W[t] (window word 0) and shifts W[t+16] = s1(W[t+14]) + W[t+9] + s0(W[t+1]) + W[t] into the
  // window; the chaining-value addition (hash + a..h after the round) is folded into round 63.
  always_ff @(posedge clk_i) begin : datapath
    logic [31:0] a, b, c, d, e, f, g, h, t1, t2;
    // Round temporaries, only meaningful in a round cycle. The defaults make them combinational
    // (synthesis would otherwise keep them in registers for the cycles that do not assign them).
    {h, g, f, e, d, c, b, a, t1, t2} = '0;
    // Statement order (not logic): each register is read before it is updated anywhere in the
    // block (blk_take implies !busy_q, so the two branches are exclusive), which lets the
    // simulator update the registers in place instead of through full shadow copies each cycle.
    if (busy_q && !stall_i) begin
      {h, g, f, e, d, c, b, a} = work_q;
      t1 = h + bsig1(e) + ((e & f) ^ (~e & g)) + k_t + win_q[31:0];
      t2 = bsig0(a) + ((a & b) ^ (a & c) ^ (b & c));
      work_q <= {g, f, e, d + t1, c, b, a, t1 + t2};
      win_q  <= {ssig1(win_q[14*32 +: 32]) + win_q[9*32 +: 32] + ssig0(win_q[1*32 +: 32]) +
                 win_q[31:0], win_q[511:32]};
    end else if (blk_take) begin
      work_q <= s_blk_first_i ? H_INIT :
                {bswap(hash_q[7*32 +: 32]), bswap(hash_q[6*32 +: 32]), bswap(hash_q[5*32 +: 32]),
                 bswap(hash_q[4*32 +: 32]), bswap(hash_q[3*32 +: 32]), bswap(hash_q[2*32 +: 32]),
                 bswap(hash_q[1*32 +: 32]), bswap(hash_q[0*32 +: 32])};
      for (int i = 0; i < 16; i++) win_q[i*32 +: 32] <= bswap(s_blk_data_i[i*32 +: 32]);
    end
    if (busy_q && !stall_i && round_q == 6'd63) begin
      // The chaining value plus a..h after the round: {g, f, e, d + t1, c, b, a, t1 + t2}.
      hash_q <= {bswap(bswap(hash_q[7*32 +: 32]) + g), bswap(bswap(hash_q[6*32 +: 32]) + f),
                 bswap(bswap(hash_q[5*32 +: 32]) + e), bswap(bswap(hash_q[4*32 +: 32]) + d + t1),
                 bswap(bswap(hash_q[3*32 +: 32]) + c), bswap(bswap(hash_q[2*32 +: 32]) + b),
                 bswap(bswap(hash_q[1*32 +: 32]) + a), bswap(bswap(hash_q[0*32 +: 32]) + t1 + t2)};
    end else if (blk_take && s_blk_first_i) begin
      hash_q <= {bswap(H_INIT[7*32 +: 32]), bswap(H_INIT[6*32 +: 32]), bswap(H_INIT[5*32 +: 32]),
                 bswap(H_INIT[4*32 +: 32]), bswap(H_INIT[3*32 +: 32]), bswap(H_INIT[2*32 +: 32]),
                 bswap(H_INIT[1*32 +: 32]), bswap(H_INIT[0*32 +: 32])};
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Output: the chaining value is already in byte order.

  assign m_dig_valid_o = dig_valid_q;
  assign m_dig_data_o  = hash_q;

endmodule
