// Command dispatcher: routes each fetched submission entry to a ready, enabled instance of the engine serving its opcode.
//
// Instances are numbered 0..NI-1 across all engine types; INST_ENG maps each to its engine
// index. Commands no engine serves (and NOP) complete here: NOP with SUCCESS, unknown opcodes with
// BAD_OPCODE, opcodes whose engine has no enabled instance with DISABLED. Among the ready
// instances of the right engine the pick is round-robin, so one stalled instance never blocks
// the others.
module cmd_dispatch #(
  parameter int unsigned NE = 1,                       // engine types
  parameter int unsigned NI = 1,                       // instances over all types
  parameter logic [NI*8-1:0] INST_ENG    = '0,         // engine index of each instance
  parameter logic [NE*8-1:0] ENG_OPFIRST = '0,         // first opcode of each engine
  parameter logic [NE*8-1:0] ENG_OPCOUNT = '0          // opcode count of each engine
) (
  input  logic            clk_i,
  input  logic            rst_ni,
  input  logic [NI-1:0]   inst_enable_i,

  input  logic            s_cmd_valid_i,
  output logic            s_cmd_ready_o,
  input  logic [511:0]    s_cmd_sqe_i,
  input  logic [7:0]      s_cmd_qid_i,

  output logic [NI-1:0]   m_cmd_valid_o,               // sqe/qid shared, valid per instance
  input  logic [NI-1:0]   m_cmd_ready_i,
  output logic [511:0]    m_cmd_sqe_o,
  output logic [7:0]      m_cmd_qid_o,

  // completions made here (NOP, BAD_OPCODE, DISABLED)
  output logic            m_cpl_valid_o,
  input  logic            m_cpl_ready_i,
  output logic [7:0]      m_cpl_qid_o,
  output logic [15:0]     m_cpl_cid_o,
  output logic [14:0]     m_cpl_status_o,
  output logic [31:0]     m_cpl_result_o
);
  `include "bpu_defs.svh"

  localparam int unsigned IW = (NI > 1) ? $clog2(NI) : 1;

  wire [7:0]  opcode = s_cmd_sqe_i[`BPU_SQE_OPCODE_LSB +: 8];
  wire [15:0] cid    = s_cmd_sqe_i[`BPU_SQE_CID_LSB +: 16];

  // Which engine serves the opcode.
  logic       eng_hit;
  logic [7:0] eng;
  always_comb begin
    eng_hit = 1'b0;
    eng = '0;
    for (int e = 0; e < NE; e++) begin
      if (opcode >= ENG_OPFIRST[8*e +: 8] && 9'(opcode) < 9'(ENG_OPFIRST[8*e +: 8]) + 9'(ENG_OPCOUNT[8*e +: 8])) begin
        eng_hit = 1'b1;
        eng = 8'(e);
      end
    end
  end

  // Candidate instances: of that engine and enabled; of those, the ready ones.
  logic [NI-1:0] member, ready_set;
  always_comb begin
    for (int i = 0; i < NI; i++) begin
      member[i]    = eng_hit && (INST_ENG[8*i +: 8] == eng) && inst_enable_i[i];
      ready_set[i] = member[i] && m_cmd_ready_i[i];
    end
  end

  logic [IW-1:0] rr_q, pick, pick_next;
  logic          pick_ok;
  rr_pick #(.N(NI), .IW(IW)) u_pick (.req_i(ready_set), .start_i(rr_q), .ok_o(pick_ok), .pick_o(pick),
                                    .next_o(pick_next));

  // A command completes locally when no instance can ever take it.
  wire local_cpl = !eng_hit || (member == '0);
  logic [14:0] local_status;
  always_comb begin
    if (opcode == `BPU_OPCODE_NOP)  local_status = `BPU_STATUS_SUCCESS;
    else if (!eng_hit)              local_status = `BPU_STATUS_BAD_OPCODE;
    else                            local_status = `BPU_STATUS_DISABLED;
  end
  wire is_local = (opcode == `BPU_OPCODE_NOP) || local_cpl;

  always_comb begin
    m_cmd_valid_o = '0;
    if (s_cmd_valid_i && !is_local && pick_ok) m_cmd_valid_o[pick] = 1'b1;
  end
  assign m_cmd_sqe_o = s_cmd_sqe_i;
  assign m_cmd_qid_o = s_cmd_qid_i;

  assign m_cpl_valid_o  = s_cmd_valid_i && is_local;
  assign m_cpl_qid_o    = s_cmd_qid_i;
  assign m_cpl_cid_o    = cid;
  assign m_cpl_status_o = local_status;
  assign m_cpl_result_o = 32'h0;

  assign s_cmd_ready_o = is_local ? m_cpl_ready_i : pick_ok;

  always_ff @(posedge clk_i) begin
    if (!rst_ni) rr_q <= '0;
    else if (s_cmd_valid_i && !is_local && pick_ok) rr_q <= pick_next;
  end
endmodule
