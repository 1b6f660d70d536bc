// ECDSA P-256 verification core: an 8-thread barrel processor running the microcode of
// hw/ecdsa_p256.uasm over a pipelined 256-bit Montgomery multiplier and a modular add/sub unit.
//
// Threads issue in strict rotation, one instruction per cycle: thread t issues in the cycles
// where slot_q == t. The pipeline is 8 stages deep, so an instruction writes its results (S7)
// before its thread issues again: no hazards, no forwarding, no stalls, and the multiplier takes
// a new operation every cycle while 8 verifications are in flight.
//
//   S0 issue: microword ROM at pc, register-file / input-buffer / constant reads, control
//      decision (everything but compare-flag branches).
//   S1 operand select.   S2 a·b, ka·a ± kb·b, compares.
//   S3 m = T·(−M⁻¹) mod 2²⁵⁶ / −8M.   S4 m·M / −4M.   S5 (T + mM)/2²⁵⁶ / −2M.   S6 −M.
//   S7 write back: register, scalar u1/u2, pc, loop counter; `ret` ends the thread.
//
// Operand contract (checked by the emulator on every test vector, see xtask/src/ucode_emu.rs):
// a Montgomery product needs a·b < 2²⁵⁶·M; add/sub need a < M, b <= M, ka + kb <= 16. Results
// are fully reduced (< M), so equality compares are exact.
//
// Loading: while a thread is not running, the engine writes its five inputs (digest, r, s, Qx,
// Qy as integers) with ld_*, then starts it with start_*. busy_o[t] stays 1 from the start until
// its `ret` retires; the verdict comes out as a one-cycle done pulse. stall_i freezes everything.
module ecdsa_core (
  input  logic         clk_i,
  input  logic         rst_ni,
  input  logic         stall_i,

  input  logic         ld_valid_i,
  input  logic [2:0]   ld_thread_i,
  input  logic [2:0]   ld_idx_i,      // 0 digest, 1 r, 2 s, 3 Qx, 4 Qy
  input  logic [255:0] ld_data_i,
  input  logic         start_valid_i,
  input  logic [2:0]   start_thread_i,
  output logic [7:0]   busy_o,

  output logic         done_valid_o,
  output logic [2:0]   done_thread_o,
  output logic         done_ok_o
);

  `include "ecdsa_ucode.svh"

  localparam int K  = 8;              // threads = pipeline depth
  localparam int PW = ECDSA_PC_BITS;

  logic go;
  assign go = !stall_i;

  // ---------------------------------------------------------------------------------------------
  // Thread state

  logic [PW-1:0]  pc_q  [K];
  logic [7:0]     i_q   [K];
  logic [255:0]   u1_q  [K];
  logic [255:0]   u2_q  [K];
  logic [K-1:0]   run_q;
  logic [2:0]     slot_q;

  assign busy_o = run_q;

  // ---------------------------------------------------------------------------------------------
  // S0: issue

  logic [2:0]    t0;
  logic          v0;
  logic [63:0]   uw;
  logic [2:0]    alu0, cop0;
  logic          modn0;
  logic [5:0]    d0, a0, b0;
  logic [3:0]    ka0, kb0;
  logic [7:0]    imm0, i0;
  logic [PW-1:0] tt0, tf0;
  localparam int WB = ECDSA_WIN_BITS;
  logic [255+WB:0] u1x0;
  logic [WB-1:0] win0;
  logic          dec0;
  logic          bit0;
  logic [255:0]  ca0, cb0;

  assign t0    = slot_q;
  assign v0    = run_q[t0];
  assign uw    = ecdsa_ucode_rom[pc_q[t0]];
  assign alu0  = uw[UW_ALU_LSB  +: UW_ALU_W];
  assign modn0 = uw[UW_MODN_LSB];
  assign d0    = uw[UW_D_LSB    +: UW_D_W];
  assign a0    = uw[UW_A_LSB    +: UW_A_W];
  assign b0    = uw[UW_B_LSB    +: UW_B_W];
  assign ka0   = uw[UW_KA_LSB   +: UW_KA_W];
  assign kb0   = uw[UW_KB_LSB   +: UW_KB_W];
  assign cop0  = uw[UW_COP_LSB  +: UW_COP_W];
  assign imm0  = uw[UW_IMM_LSB  +: UW_IMM_W];
  assign tt0   = uw[UW_TT_LSB   +: UW_TT_W];
  assign tf0   = uw[UW_TF_LSB   +: UW_TF_W];
  assign dec0  = uw[UW_DEC_LSB];
  assign i0    = i_q[t0];
  assign u1x0  = {{WB{1'b0}}, u1_q[t0]};
  assign win0  = u1x0[{1'b0, i0} +: WB];
  assign ca0   = ecdsa_const(a0);
  assign cb0   = ecdsa_const(b0);

  always_comb begin
    case (imm0[1:0])
      2'd0:    bit0 = u1_q[t0][i0];
      2'd1:    bit0 = u2_q[t0][i0];
      default: bit0 = ECDSA_NM2[i0];
    endcase
  end

  // Control decided at issue from the thread's state before this instruction's writes; `dec`
  // steps the loop counter down afterwards.
  logic [PW-1:0] npc0;
  logic [7:0]    ni0;
  logic          ret0;
  always_comb begin
    npc0 = tt0;
    ni0  = dec0 ? i0 - 8'd1 : i0;
    ret0 = 1'b0;
    case (cop0)
      COP_GOTO: npc0 = tt0;
      COP_BF:   npc0 = tt0;            // resolved with the flag in S7
      COP_JBIT: npc0 = bit0 ? tt0 : tf0;
      COP_LOOP: npc0 = (i0 != 8'hff) ? tt0 : tf0;
      COP_JWIN: npc0 = (i0[$clog2(WB)-1:0] == '0 && win0 != '0) ? tt0 : tf0;
      COP_SETI: ni0 = imm0;
      default: begin                        // COP_RET and unused codes end the thread
        npc0 = '0;
        ret0 = 1'b1;
      end
    endcase
  end

  // ---------------------------------------------------------------------------------------------
  // Control pipeline S1..S7 (shift register of what S7 needs)

  localparam int CW = 3 + 1 + 3 + 6 + PW + PW + 8 + 1 + 1 + 1;  // see ctl0 below
  logic [CW-1:0] ctl0;
  logic [CW-1:0] ctl_q [1:7];
  logic [7:1]    val_q;
  logic [2:0]    alu2;
  logic          modn2;

  // {thread, modn, alu, d, npc, tf, ni, ret, verdict, is_bf}
  assign ctl0 = {t0, modn0, alu0, d0, npc0, tf0, ni0, ret0, imm0[0], cop0 == COP_BF};

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      val_q <= '0;
    end else if (go) begin
      val_q <= {val_q[6:1], v0};
    end
  end

  always_ff @(posedge clk_i) begin
    if (go) begin
      ctl_q[1] <= ctl0;
      for (int s = 2; s <= 7; s++) ctl_q[s] <= ctl_q[s-1];
    end
  end

  assign alu2  = ctl_q[2][CW-5 -: 3];
  assign modn2 = ctl_q[2][CW-4];

  // ---------------------------------------------------------------------------------------------
  // Register file (K × 32 × 256) and input buffer (K × 8 × 256): synchronous reads in S0.

  logic [255:0] rf_q [K*32];
  logic [255:0] in_q [K*8];
  logic [255:0] rfa1, rfb1, ina1, inb1, ca1, cb1;
  logic [5:3]   a1, b1;         // operand class: register, constant, input

  always_ff @(posedge clk_i) begin
    if (go) begin
      rfa1 <= rf_q[{t0, a0[4:0]}];
      rfb1 <= rf_q[{t0, b0[4:0]}];
      ina1 <= in_q[{t0, a0[2:0]}];
      inb1 <= in_q[{t0, b0[2:0]}];
      // GX/GY: the window's entry of the k·G table (a synchronous ROM read).
      ca1  <= (a0 == OPND_GX) ? ecdsa_gx_rom[win0] : (a0 == OPND_GY) ? ecdsa_gy_rom[win0] : ca0;
      cb1  <= (b0 == OPND_GX) ? ecdsa_gx_rom[win0] : (b0 == OPND_GY) ? ecdsa_gy_rom[win0] : cb0;
      a1   <= a0[5:3];
      b1   <= b0[5:3];
    end
  end

  always_ff @(posedge clk_i) begin
    if (ld_valid_i) in_q[{ld_thread_i, ld_idx_i}] <= ld_data_i;
  end

  // ---------------------------------------------------------------------------------------------
  // S1: operand select

  function automatic logic [255:0] pick(input logic [5:3] code, input logic [255:0] rf,
                                        input logic [255:0] in, input logic [255:0] c);
    logic [255:0] v;
    if (code[5] == 1'b0)          v = rf;       // 0..31 registers
    else if (code[4] == 1'b0)     v = c;        // 32..47 constants
    else if (code[3] == 1'b0)     v = in;       // 48..55 inputs
    else                          v = 256'd0;
    pick = v;
  endfunction

  logic [255:0] opa2, opb2;
  always_ff @(posedge clk_i) begin
    if (go) begin
      opa2 <= pick(a1, rfa1, ina1, ca1);
      opb2 <= pick(b1, rfb1, inb1, cb1);
    end
  end

  // ---------------------------------------------------------------------------------------------
  // S2..S6: arithmetic. x_q carries T (products) or the running sum v (add/sub); y_q carries m
  // then m·M for products.

  logic [255:0] m2, m3, m4, m5, m6;  // modulus per stage
  assign m2 = modn2 ? ECDSA_N : ECDSA_P;
  assign m3 = ctl_q[3][CW-4] ? ECDSA_N : ECDSA_P;
  assign m4 = ctl_q[4][CW-4] ? ECDSA_N : ECDSA_P;
  assign m5 = ctl_q[5][CW-4] ? ECDSA_N : ECDSA_P;
  assign m6 = ctl_q[6][CW-4] ? ECDSA_N : ECDSA_P;

  logic is_mul3, is_mul4, is_mul5;
  assign is_mul3 = ctl_q[3][CW-5 -: 3] == ALU_MUL;
  assign is_mul4 = ctl_q[4][CW-5 -: 3] == ALU_MUL;
  assign is_mul5 = ctl_q[5][CW-5 -: 3] == ALU_MUL;

  logic [511:0] x3, x4, x5;
  logic [255:0] y4;
  logic [511:0] y5;
  logic [256:0] x6;
  logic [255:0] r7;
  logic         f3, f4, f5, f6, f7;     // compare flag
  logic [3:0]   ka2, kb2;
  logic [512:0] sum5;                 // T + m·M < 2·2²⁵⁶·M needs 513 bits
  assign sum5 = {1'b0, x5} + {1'b0, y5};

  // Scales travel with S1 → S2 (from the microword at S0).
  logic [3:0] ka1, kb1;
  always_ff @(posedge clk_i) begin
    if (go) begin
      ka1 <= ka0;
      kb1 <= kb0;
      ka2 <= ka1;
      kb2 <= kb1;
    end
  end

  // k·v for k = 0..8 (shifts and adds; k comes from the microword).
  function automatic logic [511:0] scale(input logic [255:0] v, input logic [3:0] k);
    logic [511:0] w;
    w = {256'd0, v};
    scale = (k[0] ? w : 512'd0) + (k[1] ? w << 1 : 512'd0) + (k[2] ? w << 2 : 512'd0) +
            (k[3] ? w << 3 : 512'd0);
  endfunction

  // −M⁻¹ mod 2²⁵⁶ for the Montgomery reduction.
  function automatic logic [255:0] minv(input logic modn);
    minv = modn ? ECDSA_NINV : ECDSA_PINV;
  endfunction

  // Conditional subtraction of k·M from a sum below 2k·M.
  function automatic logic [511:0] csub(input logic [511:0] v, input logic [255:0] m,
                                        input int k);
    logic [511:0] km;
    km = {256'd0, m} << k;
    csub = (v >= km) ? v - km : v;
  endfunction

  always_ff @(posedge clk_i) begin
    if (go) begin
      // S2
      f3 <= 1'b0;
      case (alu2)
        ALU_MUL: x3 <= {256'd0, opa2} * {256'd0, opb2};
        ALU_ADD: x3 <= scale(opa2, ka2) + scale(opb2, kb2);
        ALU_SUB: x3 <= scale(opa2, ka2) + scale(m2 - opb2, kb2);
        ALU_CEQ: f3 <= (opa2 == opb2);
        ALU_CLT: f3 <= (opa2 < opb2);
        default: ;
      endcase
      // S3
      f4 <= f3;
      if (is_mul3) begin
        y4 <= x3[255:0] * minv(ctl_q[3][CW-4]);
        x4 <= x3;
      end else begin
        x4 <= csub(x3, m3, 3);
      end
      // S4
      f5 <= f4;
      if (is_mul4) begin
        y5 <= {256'd0, y4} * {256'd0, m4};
        x5 <= x4;
      end else begin
        x5 <= csub(x4, m4, 2);
      end
      // S5
      f6 <= f5;
      if (is_mul5) begin
        x6 <= sum5[512:256];
      end else begin
        x6 <= 257'(csub(x5, m5, 1));
      end
      // S6
      f7 <= f6;
      r7 <= 256'(csub({255'd0, x6}, m6, 0));
    end
  end

  // ---------------------------------------------------------------------------------------------
  // S7: write back

  logic [2:0]    t7, alu7;
  logic          modn7_unused, ret7, verdict7, bf7;
  logic [5:0]    d7;
  logic [PW-1:0] npc7, tf7;
  logic [7:0]    ni7;
  logic          v7, wr7;

  logic unused_uw;
  assign unused_uw = ^{uw[63:62], modn7_unused, sum5[255:0]};

  assign {t7, modn7_unused, alu7, d7, npc7, tf7, ni7, ret7, verdict7, bf7} = ctl_q[7];
  assign v7  = val_q[7] && go;
  assign wr7 = v7 && (alu7 == ALU_MUL || alu7 == ALU_ADD || alu7 == ALU_SUB);

  always_ff @(posedge clk_i) begin
    if (wr7 && d7[5] == 1'b0) rf_q[{t7, d7[4:0]}] <= r7;
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      run_q  <= '0;
      slot_q <= '0;
      for (int t = 0; t < K; t++) begin
        pc_q[t] <= '0;
        i_q[t]  <= '0;
      end
    end else begin
      if (go) slot_q <= slot_q + 3'd1;
      if (v7) begin
        pc_q[t7] <= bf7 ? (f7 ? npc7 : tf7) : npc7;
        i_q[t7]  <= ni7;
        if (ret7) run_q[t7] <= 1'b0;
      end
      if (start_valid_i) run_q[start_thread_i] <= 1'b1;
    end
  end

  always_ff @(posedge clk_i) begin
    if (wr7 && d7 == OPND_U1) u1_q[t7] <= r7;
    if (wr7 && d7 == OPND_U2) u2_q[t7] <= r7;
  end

  assign done_valid_o  = v7 && ret7;
  assign done_thread_o = t7;
  assign done_ok_o     = verdict7;

endmodule
