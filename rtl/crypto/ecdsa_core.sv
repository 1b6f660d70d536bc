// ECDSA P-256 verification core: an 8-thread barrel processor running the microcode of
// hw/ecdsa_p256.uasm, two operations per microword: one on a pipelined 256-bit Montgomery
// multiplier (M slot), one on a modular add/sub/compare unit (X slot).
//
// Threads issue in strict rotation, one microword per cycle: thread t issues in the cycles
// where slot_q == t. The pipeline is 8 stages deep, so a word writes its results (S7) before its
// thread issues again: no hazards, no forwarding, no stalls, and the multiplier takes a new
// operation every cycle while 8 verifications are in flight.
//
//   S0 issue: microword ROM at pc; register-file, input-buffer, constant and k·G ROM reads for
//      the four operands; control decision (everything but compare-flag branches).
//   S1 operand select.
//   S2 M: T = a·b                X: ka·a ± kb·b, or a compare
//   S3 M: m = T·(−M⁻¹) mod 2²⁵⁶  X: −8M if above
//   S4 M: m·M                    X: −4M
//   S5 M: (T + m·M) / 2²⁵⁶       X: −2M
//   S6 M: −M if above            X: −M
//   S7 write back: registers, scalars u1/u2, pc, loop counter; `ret` ends the thread.
//
// The register file has two write ports (one per slot) and four read ports: two banks, one
// written by each slot, and a live-value table bit per register saying which bank holds its
// latest value (the usual multi-port memory construction on FPGAs, where each bank is a
// LUT-RAM or block RAM replicated per read port). Both slots read before either writes; the
// assembler never lets both slots of one word write the same register.
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
  localparam int WB = ECDSA_WIN_BITS;

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
  logic [ECDSA_WORD_BITS-1:0] uw;
  logic          men0, mmodn0, xmodn0, dec0;
  logic [2:0]    xalu0, cop0;
  logic [5:0]    md0, ma0, mb0, xd0, xa0, xb0;
  logic [3:0]    ka0, kb0;
  logic [7:0]    imm0, i0;
  logic [PW-1:0] tt0, tf0;
  logic [255+WB:0] u1x0;
  logic [WB-1:0] win0;
  logic          bit0;

  assign t0     = slot_q;
  assign v0     = run_q[t0];
  assign uw     = ecdsa_ucode_rom[pc_q[t0]];
  assign men0   = uw[UW_MEN_LSB];
  assign mmodn0 = uw[UW_MMODN_LSB];
  assign md0    = uw[UW_MD_LSB   +: UW_MD_W];
  assign ma0    = uw[UW_MA_LSB   +: UW_MA_W];
  assign mb0    = uw[UW_MB_LSB   +: UW_MB_W];
  assign xalu0  = uw[UW_XALU_LSB +: UW_XALU_W];
  assign xmodn0 = uw[UW_XMODN_LSB];
  assign xd0    = uw[UW_XD_LSB   +: UW_XD_W];
  assign xa0    = uw[UW_XA_LSB   +: UW_XA_W];
  assign xb0    = uw[UW_XB_LSB   +: UW_XB_W];
  assign ka0    = uw[UW_KA_LSB   +: UW_KA_W];
  assign kb0    = uw[UW_KB_LSB   +: UW_KB_W];
  assign cop0   = uw[UW_COP_LSB  +: UW_COP_W];
  assign imm0   = uw[UW_IMM_LSB  +: UW_IMM_W];
  assign tt0    = uw[UW_TT_LSB   +: UW_TT_W];
  assign tf0    = uw[UW_TF_LSB   +: UW_TF_W];
  assign dec0   = uw[UW_DEC_LSB];
  assign i0     = i_q[t0];
  assign u1x0   = {{WB{1'b0}}, u1_q[t0]};
  assign win0   = u1x0[{1'b0, i0} +: WB];

  always_comb begin
    case (imm0[1:0])
      2'd0:    bit0 = u1_q[t0][i0];
      2'd1:    bit0 = u2_q[t0][i0];
      default: bit0 = ECDSA_NM2[i0];
    endcase
  end

  // Control decided at issue from the thread's state before this word's writes; `dec` steps the
  // loop counter down afterwards.
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
  // Control pipeline S1..S7 (shift register of what the later stages need)

  // {thread, men, mmodn, md, xalu, xmodn, xd, npc, tf, ni, ret, verdict, is_bf}
  localparam int CW = 3 + 1 + 1 + 6 + 3 + 1 + 6 + PW + PW + 8 + 1 + 1 + 1;
  logic [CW-1:0] ctl0;
  logic [CW-1:0] ctl_q [1:7];
  logic [7:1]    val_q;

  assign ctl0 = {t0, men0, mmodn0, md0, xalu0, xmodn0, xd0, npc0, tf0, ni0, ret0, imm0[0],
                 cop0 == COP_BF};

  // Field positions in ctl (MSB first).
  localparam int C_MEN   = CW - 4;
  localparam int C_MMODN = CW - 5;
  localparam int C_XALU  = CW - 12;   // [C_XALU -: 3]
  localparam int C_XMODN = CW - 15;

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

  // ---------------------------------------------------------------------------------------------
  // Register file: bank_m (written by the M slot) and bank_x (X slot), K × 32 × 256 each, and
  // the live-value table; input buffer K × 8 × 256. Synchronous reads in S0.

  logic [255:0] bank_m [K*32];
  logic [255:0] bank_x [K*32];
  logic [K*32-1:0] lvt_q;             // 1: the latest value is in bank_x
  logic [255:0] in_q [K*8];

  logic [5:0]   opc0 [4];             // operand codes: M.a, M.b, X.a, X.b
  logic [255:0] rm1 [4], rx1 [4], in1 [4], c1 [4];
  logic         lv1 [4];
  logic [5:3]   cls1 [4];             // operand class: register, constant, input

  assign opc0[0] = ma0;
  assign opc0[1] = mb0;
  assign opc0[2] = xa0;
  assign opc0[3] = xb0;

  // Datapath registers load only for a valid word (a clock enable: idle threads cost nothing).
  always_ff @(posedge clk_i) begin
    if (go && v0) begin
      for (int k = 0; k < 4; k++) begin
        rm1[k]  <= bank_m[{t0, opc0[k][4:0]}];
        rx1[k]  <= bank_x[{t0, opc0[k][4:0]}];
        lv1[k]  <= lvt_q[{t0, opc0[k][4:0]}];
        in1[k]  <= in_q[{t0, opc0[k][2:0]}];
        // GX/GY: the window's entry of the k·G table (a synchronous ROM read).
        c1[k]   <= (opc0[k] == OPND_GX) ? ecdsa_gx_rom[win0] :
                   (opc0[k] == OPND_GY) ? ecdsa_gy_rom[win0] : ecdsa_const(opc0[k]);
        cls1[k] <= opc0[k][5:3];
      end
    end
  end

  always_ff @(posedge clk_i) begin
    if (ld_valid_i) in_q[{ld_thread_i, ld_idx_i}] <= ld_data_i;
  end

  // ---------------------------------------------------------------------------------------------
  // S1: operand select

  function automatic logic [255:0] pick(input logic [5:3] cls, input logic [255:0] rf,
                                        input logic [255:0] in, input logic [255:0] c);
    logic [255:0] v;
    if (cls[5] == 1'b0)       v = rf;       // 0..31 registers
    else if (cls[4] == 1'b0)  v = c;        // 32..47 constants
    else if (cls[3] == 1'b0)  v = in;       // 48..55 inputs
    else                      v = 256'd0;
    pick = v;
  endfunction

  logic [255:0] op2 [4];
  logic [3:0]   ka1, kb1, ka2, kb2;
  always_ff @(posedge clk_i) begin
    if (go && val_q[1]) begin
      for (int k = 0; k < 4; k++) op2[k] <= pick(cls1[k], lv1[k] ? rx1[k] : rm1[k], in1[k], c1[k]);
      ka2 <= ka1;
      kb2 <= kb1;
    end
    if (go && v0) begin
      ka1 <= ka0;
      kb1 <= kb0;
    end
  end

  // ---------------------------------------------------------------------------------------------
  // S2..S6: the two datapaths

  function automatic logic [255:0] modulus(input logic modn);
    modulus = modn ? ECDSA_N : ECDSA_P;
  endfunction

  // −M⁻¹ mod 2²⁵⁶ for the Montgomery reduction.
  function automatic logic [255:0] minv(input logic modn);
    minv = modn ? ECDSA_NINV : ECDSA_PINV;
  endfunction

  // k·v for k = 0..8 (shifts and adds; k comes from the microword).
  function automatic logic [260:0] scale(input logic [255:0] v, input logic [3:0] k);
    logic [260:0] w;
    w = {5'd0, v};
    scale = (k[0] ? w : 261'd0) + (k[1] ? w << 1 : 261'd0) + (k[2] ? w << 2 : 261'd0) +
            (k[3] ? w << 3 : 261'd0);
  endfunction

  // Conditional subtraction of 2^k·M from a sum below 2^(k+1)·M.
  function automatic logic [260:0] csub(input logic [260:0] v, input logic [255:0] m,
                                        input int k);
    logic [260:0] km;
    km = {5'd0, m} << k;
    csub = (v >= km) ? v - km : v;
  endfunction

  // M slot
  logic         men2, men3, men4, men5;
  logic [511:0] t3, t4, t5;
  logic [255:0] mm4;
  logic [511:0] mn5;
  logic [256:0] u6;
  logic [255:0] rm7;
  logic [512:0] sum5;                 // T + m·M < 2·2²⁵⁶·M needs 513 bits
  assign men2 = ctl_q[2][C_MEN] && val_q[2];
  assign men3 = ctl_q[3][C_MEN] && val_q[3];
  assign men4 = ctl_q[4][C_MEN] && val_q[4];
  assign men5 = ctl_q[5][C_MEN] && val_q[5];
  assign sum5 = {1'b0, t5} + {1'b0, mn5};

  always_ff @(posedge clk_i) begin
    if (go) begin
      if (men2) t3 <= {256'd0, op2[0]} * {256'd0, op2[1]};
      if (men3) begin
        mm4 <= t3[255:0] * minv(ctl_q[3][C_MMODN]);
        t4  <= t3;
      end
      if (men4) begin
        mn5 <= {256'd0, mm4} * {256'd0, modulus(ctl_q[4][C_MMODN])};
        t5  <= t4;
      end
      if (men5) u6 <= sum5[512:256];
      if (val_q[6]) rm7 <= 256'(csub({4'd0, u6}, modulus(ctl_q[6][C_MMODN]), 0));
    end
  end

  // X slot
  logic [2:0]   xalu2;
  logic [255:0] xm2;
  logic [260:0] v3, v4, v5, v6;
  logic [255:0] rx7;
  logic         f3, f4, f5, f6, f7;   // compare flag
  assign xalu2 = ctl_q[2][C_XALU -: 3];
  assign xm2   = modulus(ctl_q[2][C_XMODN]);

  always_ff @(posedge clk_i) begin
    if (go) begin
      f3 <= 1'b0;
      v3 <= '0;
      if (val_q[2]) case (xalu2)
        ALU_ADD: v3 <= scale(op2[2], ka2) + scale(op2[3], kb2);
        ALU_SUB: v3 <= scale(op2[2], ka2) + scale(xm2 - op2[3], kb2);
        ALU_CEQ: f3 <= (op2[2] == op2[3]);
        ALU_CLT: f3 <= (op2[2] < op2[3]);
        default: ;
      endcase
      if (val_q[3]) v4  <= csub(v3, modulus(ctl_q[3][C_XMODN]), 3);
      if (val_q[4]) v5  <= csub(v4, modulus(ctl_q[4][C_XMODN]), 2);
      if (val_q[5]) v6  <= csub(v5, modulus(ctl_q[5][C_XMODN]), 1);
      if (val_q[6]) rx7 <= 256'(csub(v6, modulus(ctl_q[6][C_XMODN]), 0));
      f4 <= f3;
      f5 <= f4;
      f6 <= f5;
      f7 <= f6;
    end
  end

  // ---------------------------------------------------------------------------------------------
  // S7: write back

  logic [2:0]    t7, xalu7;
  logic          men7, mmodn7_unused, xmodn7_unused, ret7, verdict7, bf7;
  logic [5:0]    md7, xd7;
  logic [PW-1:0] npc7, tf7;
  logic [7:0]    ni7;
  logic          v7, wm7, wx7;

  assign {t7, men7, mmodn7_unused, md7, xalu7, xmodn7_unused, xd7, npc7, tf7, ni7, ret7, verdict7,
          bf7} = ctl_q[7];
  assign v7  = val_q[7] && go;
  assign wm7 = v7 && men7;
  assign wx7 = v7 && (xalu7 == ALU_ADD || xalu7 == ALU_SUB);

  logic unused_bits;
  assign unused_bits = ^{mmodn7_unused, xmodn7_unused, sum5[255:0]};

  always_ff @(posedge clk_i) begin
    if (wm7 && md7[5] == 1'b0) bank_m[{t7, md7[4:0]}] <= rm7;
    if (wx7 && xd7[5] == 1'b0) bank_x[{t7, xd7[4:0]}] <= rx7;
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      run_q  <= '0;
      slot_q <= '0;
      lvt_q  <= '0;
      for (int t = 0; t < K; t++) begin
        pc_q[t] <= '0;
        i_q[t]  <= '0;
      end
    end else begin
      if (go) slot_q <= slot_q + 3'd1;
      if (wm7 && md7[5] == 1'b0) lvt_q[{t7, md7[4:0]}] <= 1'b0;
      if (wx7 && xd7[5] == 1'b0) lvt_q[{t7, xd7[4:0]}] <= 1'b1;
      if (v7) begin
        pc_q[t7] <= bf7 ? (f7 ? npc7 : tf7) : npc7;
        i_q[t7]  <= ni7;
        if (ret7) run_q[t7] <= 1'b0;
      end
      if (start_valid_i) run_q[start_thread_i] <= 1'b1;
    end
  end

  always_ff @(posedge clk_i) begin
    if (wm7 && md7 == OPND_U1) u1_q[t7] <= rm7;
    if (wm7 && md7 == OPND_U2) u2_q[t7] <= rm7;
    if (wx7 && xd7 == OPND_U1) u1_q[t7] <= rx7;
    if (wx7 && xd7 == OPND_U2) u2_q[t7] <= rx7;
  end

  assign done_valid_o  = v7 && ret7;
  assign done_thread_o = t7;
  assign done_ok_o     = verdict7;

endmodule
