// BLAKE3 compression function: a 7-stage pipeline (one round per stage) taking one compression per clock.
//
// Input stream (s_*): chaining value, 64-byte message block, 64-bit counter, block length
// (0..64) and flags, as the BLAKE3 specification names them. Word i of a vector is bits
// [32i+31:32i]; BLAKE3 words are little-endian, so byte k of the block (or of the chaining value)
// is bits [8k+7:8k]. s_tag_i is carried alongside, untouched, so a caller can interleave
// independent jobs and route each result.
//
// Output stream (m_*): the full 16-word compression output, word i in bits [32i+31:32i]:
// words 0..7 = v[i] ^ v[i+8] (the new chaining value), words 8..15 = v[i+8] ^ cv[i]. All 16 words
// are one 64-byte extended-output block when the input was a root node.
//
// Pipeline: the accept cycle computes round 1 from the inputs into stage 0; stage k computes round
// k+1 from stage k-1; the output XOR is combinational on stage 6. Latency 7 cycles (a compression
// accepted in cycle t is offered in cycle t+7), one compression per cycle.
//
// Back-pressure: a single enable for the whole pipe. It advances when its last stage is empty or
// being taken (en = !m_valid_o || m_ready_i); otherwise every stage holds, and s_ready_o is low.
// Bubbles are not squeezed out while the output stalls. s_ready_o depends combinationally on
// m_ready_i (one AND/OR), there is no combinational path from s_valid_i to m_valid_o.
// busy_o: some stage holds a compression.
module blake3_compress #(
  parameter int TAG_W = 1  // width of the opaque tag
) (
  input  logic             clk_i,
  input  logic             rst_ni,

  input  logic             s_valid_i,
  output logic             s_ready_o,
  input  logic [255:0]     s_cv_i,
  input  logic [511:0]     s_block_i,
  input  logic [63:0]      s_counter_i,
  input  logic [31:0]      s_block_len_i,
  input  logic [31:0]      s_flags_i,
  input  logic [TAG_W-1:0] s_tag_i,

  output logic             m_valid_o,
  input  logic             m_ready_i,
  output logic [511:0]     m_out_o,
  output logic [TAG_W-1:0] m_tag_o,

  output logic             busy_o
);

  localparam int ROUNDS = 7;

  // IV (the SHA-256 initial hash value), word 0 in bits [31:0].
  localparam logic [255:0] IV = {32'h5be0cd19, 32'h1f83d9ab, 32'h9b05688c, 32'h510e527f,
                                 32'ha54ff53a, 32'h3c6ef372, 32'hbb67ae85, 32'h6a09e667};

  // ---------------------------------------------------------------------------------------------
  // Round function (BLAKE3 specification, section 2.2)

  // The quarter-round G on (a, b, c, d) with message words mx, my; returns {d, c, b, a}.
  function automatic logic [127:0] g(input logic [31:0] a_in, input logic [31:0] b_in,
                                     input logic [31:0] c_in, input logic [31:0] d_in,
                                     input logic [31:0] mx, input logic [31:0] my);
    logic [31:0] a, b, c, d;
    a = a_in + b_in + mx;
    d = d_in ^ a;
    d = {d[15:0], d[31:16]};  // >>> 16
    c = c_in + d;
    b = b_in ^ c;
    b = {b[11:0], b[31:12]};  // >>> 12
    a = a + b + my;
    d = d ^ a;
    d = {d[7:0], d[31:8]};    // >>> 8
    c = c + d;
    b = b ^ c;
    b = {b[6:0], b[31:7]};    // >>> 7
    g = {d, c, b, a};
  endfunction

  // One round: G on the four columns, then on the four diagonals.
  function automatic logic [511:0] round_fn(input logic [511:0] s, input logic [511:0] m);
    logic [511:0] v;
    logic [127:0] r;
    v = s;
    // Columns: (0,4,8,12) (1,5,9,13) (2,6,10,14) (3,7,11,15) with m0..m7.
    for (int i = 0; i < 4; i++) begin
      r = g(v[i*32 +: 32], v[(i+4)*32 +: 32], v[(i+8)*32 +: 32], v[(i+12)*32 +: 32],
            m[(2*i)*32 +: 32], m[(2*i+1)*32 +: 32]);
      v[i*32 +: 32]      = r[31:0];
      v[(i+4)*32 +: 32]  = r[63:32];
      v[(i+8)*32 +: 32]  = r[95:64];
      v[(i+12)*32 +: 32] = r[127:96];
    end
    // Diagonals: (0,5,10,15) (1,6,11,12) (2,7,8,13) (3,4,9,14) with m8..m15.
    for (int i = 0; i < 4; i++) begin
      r = g(v[i*32 +: 32], v[(4+((i+1)&3))*32 +: 32], v[(8+((i+2)&3))*32 +: 32],
            v[(12+((i+3)&3))*32 +: 32], m[(8+2*i)*32 +: 32], m[(9+2*i)*32 +: 32]);
      v[i*32 +: 32]                = r[31:0];
      v[(4+((i+1)&3))*32 +: 32]  = r[63:32];
      v[(8+((i+2)&3))*32 +: 32]  = r[95:64];
      v[(12+((i+3)&3))*32 +: 32] = r[127:96];
    end
    round_fn = v;
  endfunction

  // The message permutation applied between rounds: word i of the result is word P[i] of m,
  // P = 2 6 3 10 7 0 4 13 1 11 12 5 9 14 15 8. Wiring only.
  function automatic logic [511:0] permute(input logic [511:0] m);
    permute = {m[8*32 +: 32], m[15*32 +: 32], m[14*32 +: 32], m[9*32 +: 32],
               m[5*32 +: 32], m[12*32 +: 32], m[11*32 +: 32], m[1*32 +: 32],
               m[13*32 +: 32], m[4*32 +: 32], m[0*32 +: 32], m[7*32 +: 32],
               m[10*32 +: 32], m[3*32 +: 32], m[6*32 +: 32], m[2*32 +: 32]};
  endfunction

  // ---------------------------------------------------------------------------------------------
  // Pipeline. Stage k holds the state after round k+1 (v_q), the message permuted for round k+2
  // (m_q), the input chaining value (cv_q, for output words 8..15) and the tag.

  logic [ROUNDS-1:0] valid_q;
  logic [511:0]      v_q   [ROUNDS];
  logic [511:0]      m_q   [ROUNDS-1];
  logic [255:0]      cv_q  [ROUNDS];
  logic [TAG_W-1:0]  tag_q [ROUNDS];

  logic en;
  assign en        = !valid_q[ROUNDS-1] || m_ready_i;
  assign s_ready_o = en;
  assign busy_o    = |valid_q;

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      valid_q <= '0;
    end else if (en) begin
      valid_q <= {valid_q[ROUNDS-2:0], s_valid_i};
    end
  end

  // State before round 1: cv, IV[0..3], counter low/high, block length, flags.
  logic [511:0] v_init;
  assign v_init = {s_flags_i, s_block_len_i, s_counter_i[63:32], s_counter_i[31:0], IV[127:0],
                   s_cv_i};

  // Datapath registers: no reset, they are only read where valid_q says so. They move with the
  // common enable only (not also gated by each stage's valid), so the message, chaining-value and
  // tag chains are plain shift registers (SRLs on an FPGA).
  always_ff @(posedge clk_i) begin
    if (en) begin
      v_q[0]   <= round_fn(v_init, s_block_i);
      m_q[0]   <= permute(s_block_i);
      cv_q[0]  <= s_cv_i;
      tag_q[0] <= s_tag_i;
      for (int k = 1; k < ROUNDS; k++) begin
        v_q[k]   <= round_fn(v_q[k-1], m_q[k-1]);
        cv_q[k]  <= cv_q[k-1];
        tag_q[k] <= tag_q[k-1];
      end
      for (int k = 1; k < ROUNDS - 1; k++) begin
        m_q[k] <= permute(m_q[k-1]);
      end
    end
  end

  // ---------------------------------------------------------------------------------------------
  // Output

  logic [511:0] v_last;
  logic [255:0] cv_last;
  assign v_last  = v_q[ROUNDS-1];
  assign cv_last = cv_q[ROUNDS-1];

  always_comb begin
    for (int i = 0; i < 8; i++) begin
      m_out_o[i*32 +: 32]     = v_last[i*32 +: 32] ^ v_last[(i+8)*32 +: 32];
      m_out_o[(i+8)*32 +: 32] = v_last[(i+8)*32 +: 32] ^ cv_last[i*32 +: 32];
    end
  end

  assign m_valid_o = valid_q[ROUNDS-1];
  assign m_tag_o   = tag_q[ROUNDS-1];

endmodule
