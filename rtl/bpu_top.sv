// Top level of the Blockchain Processing Unit: register slave, queue manager, dispatcher, engines, DMA.
//
//   AXI4-Lite (BAR0) -> bpu_regs -> queue configuration, doorbells, engine masks
//   queue_mgr: SQ fetch -> cmd_dispatch -> sha256_engine[SHA_N], ecdsa_engine[ECDSA_N]
//     -> stream_arbiter -> queue_mgr: CQ write, irq
//   DMA clients (queue_mgr, every engine) -> dma_arbiter -> dma_master -> AXI4 master (host memory)
//
// A soft reset raises abort to the DMA path until the AXI master is idle, then resets the whole
// datapath for one cycle. See docs/host-interface.md.
module bpu_top #(
  parameter int unsigned NQ       = 4,      // queue pairs and interrupt vectors
  parameter int unsigned DW       = 128,    // DMA data width in bits
  parameter int unsigned SHA_N    = 4,      // SHA-256 engine instances
  parameter int unsigned ECDSA_N  = 1,      // ECDSA P-256 engine instances
  parameter logic [31:0] BUILD_ID = 32'h0
) (
  input  logic            clk_i,
  input  logic            rst_ni,

  // AXI4-Lite slave: BAR0
  input  logic            s_axil_awvalid_i,
  output logic            s_axil_awready_o,
  input  logic [15:0]     s_axil_awaddr_i,
  input  logic            s_axil_wvalid_i,
  output logic            s_axil_wready_o,
  input  logic [31:0]     s_axil_wdata_i,
  input  logic [3:0]      s_axil_wstrb_i,
  output logic            s_axil_bvalid_o,
  input  logic            s_axil_bready_i,
  output logic [1:0]      s_axil_bresp_o,
  input  logic            s_axil_arvalid_i,
  output logic            s_axil_arready_o,
  input  logic [15:0]     s_axil_araddr_i,
  output logic            s_axil_rvalid_o,
  input  logic            s_axil_rready_i,
  output logic [31:0]     s_axil_rdata_o,
  output logic [1:0]      s_axil_rresp_o,

  // AXI4 master: DMA to host memory
  output logic            m_axi_awvalid_o,
  input  logic            m_axi_awready_i,
  output logic [63:0]     m_axi_awaddr_o,
  output logic [7:0]      m_axi_awlen_o,
  output logic [2:0]      m_axi_awsize_o,
  output logic [1:0]      m_axi_awburst_o,
  output logic            m_axi_wvalid_o,
  input  logic            m_axi_wready_i,
  output logic [DW-1:0]   m_axi_wdata_o,
  output logic [DW/8-1:0] m_axi_wstrb_o,
  output logic            m_axi_wlast_o,
  input  logic            m_axi_bvalid_i,
  output logic            m_axi_bready_o,
  input  logic [1:0]      m_axi_bresp_i,
  output logic            m_axi_arvalid_o,
  input  logic            m_axi_arready_i,
  output logic [63:0]     m_axi_araddr_o,
  output logic [7:0]      m_axi_arlen_o,
  output logic [2:0]      m_axi_arsize_o,
  output logic [1:0]      m_axi_arburst_o,
  input  logic            m_axi_rvalid_i,
  output logic            m_axi_rready_o,
  input  logic [DW-1:0]   m_axi_rdata_i,
  input  logic [1:0]      m_axi_rresp_i,
  input  logic            m_axi_rlast_i,

  output logic [NQ-1:0]   irq_o,           // one pulse per interrupt, one line per queue (MSI-X vector)
  output logic            idle_o           // nothing in flight (for clock gating and the simulator)
);
  `include "bpu_defs.svh"

  localparam int unsigned NE = 2;              // engine types: SHA-256, ECDSA P-256
  localparam int unsigned NI = SHA_N + ECDSA_N; // engine instances: SHA-256 first, then ECDSA
  localparam int unsigned NC = NI + 1;         // DMA clients: engines, then the queue manager
  // Completion stream payload: result, cid, status, qid, each starting on a 16-bit boundary
  // within 32-bit words (the rest is constant 0 padding, which synthesis removes). Aligned
  // fields keep the packing and unpacking cheap to simulate.
  localparam int unsigned CPL_W      = 96;
  localparam int unsigned CPL_RESULT = 0;    // [31:0]
  localparam int unsigned CPL_CID    = 32;   // [47:32]
  localparam int unsigned CPL_STATUS = 48;   // [62:48]
  localparam int unsigned CPL_QID    = 64;   // [71:64]

  // ---------------------------------------------------------------------------------------------
  // Registers and soft reset

  logic            enable, abort, soft_rst, dma_idle, dp_idle;
  logic [3:0]      err_set;
  logic [1:0]      qm_err;
  logic [NE*32-1:0] eng_enable, eng_stall;
  logic [NE-1:0]   eng_op_done;
  logic [NE*8-1:0] eng_busy_cnt;
  logic [NQ*64-1:0] q_sq_base, q_cq_base;
  logic [NQ*4-1:0]  q_sq_log2, q_cq_log2;
  logic [NQ-1:0]    q_enable, q_irq_en, q_fault, q_cq_full;
  logic [NQ*8-1:0]  q_coal_count;
  logic [NQ*16-1:0] q_coal_time, q_sq_tail, q_cq_head, q_sq_head, q_cq_tail;

  // The datapath (everything but the register file) resets with rst_ni or a soft reset.
  logic dp_rst_n;
  assign dp_rst_n = rst_ni && !soft_rst;
  assign err_set  = {2'b00, qm_err};

  bpu_regs #(
    .NQ(NQ), .NE(NE), .DW(DW), .BUILD_ID(BUILD_ID),
    .ENG_TYPE({`BPU_ENGINE_TYPE_ECDSA_P256, `BPU_ENGINE_TYPE_SHA256}), .ENG_VER({16'd1, 16'd1}),
    .ENG_INST({8'(ECDSA_N), 8'(SHA_N)}),
    .ENG_OPFIRST({`BPU_OPCODE_ECDSA_P256_VERIFY, `BPU_OPCODE_SHA256}), .ENG_OPCOUNT({8'd1, 8'd3})
  ) u_regs (
    .clk_i, .rst_ni,
    .s_axil_awvalid_i, .s_axil_awready_o, .s_axil_awaddr_i,
    .s_axil_wvalid_i, .s_axil_wready_o, .s_axil_wdata_i, .s_axil_wstrb_i,
    .s_axil_bvalid_o, .s_axil_bready_i, .s_axil_bresp_o,
    .s_axil_arvalid_i, .s_axil_arready_o, .s_axil_araddr_i,
    .s_axil_rvalid_o, .s_axil_rready_i, .s_axil_rdata_o, .s_axil_rresp_o,
    .enable_o(enable), .abort_o(abort), .dma_idle_i(dma_idle), .soft_rst_o(soft_rst),
    .idle_i(idle_o), .err_set_i(err_set), .irq_set_i(irq_o),
    .eng_enable_o(eng_enable), .eng_stall_o(eng_stall),
    .eng_op_done_i(eng_op_done), .eng_busy_cnt_i(eng_busy_cnt),
    .q_sq_base_o(q_sq_base), .q_cq_base_o(q_cq_base), .q_sq_log2_o(q_sq_log2), .q_cq_log2_o(q_cq_log2),
    .q_enable_o(q_enable), .q_irq_en_o(q_irq_en), .q_coal_count_o(q_coal_count),
    .q_coal_time_o(q_coal_time), .q_sq_tail_o(q_sq_tail), .q_cq_head_o(q_cq_head),
    .q_sq_head_i(q_sq_head), .q_cq_tail_i(q_cq_tail), .q_fault_i(q_fault), .q_cq_full_i(q_cq_full)
  );

  // ---------------------------------------------------------------------------------------------
  // DMA client ports, flattened: index i < NI is engine instance i, index NI the queue manager.

  logic [NC-1:0]    c_rd_req_valid, c_rd_req_ready, c_rd_valid, c_rd_ready;
  logic [NC*64-1:0] c_rd_req_addr;
  logic [NC*16-1:0] c_rd_req_len;
  logic [DW-1:0]    c_rd_data;
  logic             c_rd_last, c_rd_err;
  logic [NC-1:0]    c_wr_req_valid, c_wr_req_ready, c_wr_valid, c_wr_ready, c_wr_last, c_wr_done;
  logic [NC*64-1:0] c_wr_req_addr;
  logic [NC*16-1:0] c_wr_req_len;
  logic [NC*DW-1:0] c_wr_data;
  logic             c_wr_done_err;

  // ---------------------------------------------------------------------------------------------
  // Queue manager

  logic         qm_cmd_valid, qm_cmd_ready;
  logic [511:0] qm_cmd_sqe;
  logic [7:0]   qm_cmd_qid;
  logic         cpl_valid, cpl_ready;
  logic [CPL_W-1:0] cpl_data;
  logic         qm_idle;

  queue_mgr #(.NQ(NQ), .DW(DW)) u_qm (
    .clk_i, .rst_ni(dp_rst_n), .enable_i(enable),
    .q_sq_base_i(q_sq_base), .q_cq_base_i(q_cq_base), .q_sq_log2_i(q_sq_log2), .q_cq_log2_i(q_cq_log2),
    .q_enable_i(q_enable), .q_irq_en_i(q_irq_en), .q_coal_count_i(q_coal_count),
    .q_coal_time_i(q_coal_time), .q_sq_tail_i(q_sq_tail), .q_cq_head_i(q_cq_head),
    .q_sq_head_o(q_sq_head), .q_cq_tail_o(q_cq_tail), .q_fault_o(q_fault), .q_cq_full_o(q_cq_full),
    .err_set_o(qm_err), .irq_o(irq_o), .idle_o(qm_idle),
    .m_cmd_valid_o(qm_cmd_valid), .m_cmd_ready_i(qm_cmd_ready), .m_cmd_sqe_o(qm_cmd_sqe), .m_cmd_qid_o(qm_cmd_qid),
    .s_cpl_valid_i(cpl_valid), .s_cpl_ready_o(cpl_ready),
    .s_cpl_qid_i(cpl_data[CPL_QID +: 8]), .s_cpl_cid_i(cpl_data[CPL_CID +: 16]),
    .s_cpl_status_i(cpl_data[CPL_STATUS +: 15]), .s_cpl_result_i(cpl_data[CPL_RESULT +: 32]),
    .m_rd_req_valid_o(c_rd_req_valid[NI]), .m_rd_req_ready_i(c_rd_req_ready[NI]),
    .m_rd_req_addr_o(c_rd_req_addr[64*NI +: 64]), .m_rd_req_len_o(c_rd_req_len[16*NI +: 16]),
    .s_rd_valid_i(c_rd_valid[NI]), .s_rd_ready_o(c_rd_ready[NI]), .s_rd_data_i(c_rd_data),
    .s_rd_last_i(c_rd_last), .s_rd_err_i(c_rd_err),
    .m_wr_req_valid_o(c_wr_req_valid[NI]), .m_wr_req_ready_i(c_wr_req_ready[NI]),
    .m_wr_req_addr_o(c_wr_req_addr[64*NI +: 64]), .m_wr_req_len_o(c_wr_req_len[16*NI +: 16]),
    .m_wr_valid_o(c_wr_valid[NI]), .m_wr_ready_i(c_wr_ready[NI]), .m_wr_data_o(c_wr_data[DW*NI +: DW]),
    .m_wr_last_o(c_wr_last[NI]), .s_wr_done_valid_i(c_wr_done[NI]), .s_wr_done_err_i(c_wr_done_err)
  );

  // ---------------------------------------------------------------------------------------------
  // Dispatcher and engines

  logic [NI-1:0]   e_cmd_valid, e_cmd_ready, e_busy;
  logic [511:0]    e_cmd_sqe;
  logic [7:0]      e_cmd_qid;
  logic [NC-1:0]   src_valid, src_ready, src_grant;   // completion sources: engines, then dispatcher
  logic [NC*CPL_W-1:0] src_data;

  // Per-instance enable and stall bits from the per-engine masks.
  logic [NI-1:0] inst_enable, inst_stall;
  assign inst_enable = {eng_enable[32 +: ECDSA_N], eng_enable[0 +: SHA_N]};
  assign inst_stall  = {eng_stall[32 +: ECDSA_N], eng_stall[0 +: SHA_N]};

  cmd_dispatch #(
    .NE(NE), .NI(NI), .INST_ENG({{ECDSA_N{8'd1}}, {SHA_N{8'd0}}}),
    .ENG_OPFIRST({`BPU_OPCODE_ECDSA_P256_VERIFY, `BPU_OPCODE_SHA256}), .ENG_OPCOUNT({8'd1, 8'd3})
  ) u_dispatch (
    .clk_i, .rst_ni(dp_rst_n), .inst_enable_i(inst_enable),
    .s_cmd_valid_i(qm_cmd_valid), .s_cmd_ready_o(qm_cmd_ready), .s_cmd_sqe_i(qm_cmd_sqe), .s_cmd_qid_i(qm_cmd_qid),
    .m_cmd_valid_o(e_cmd_valid), .m_cmd_ready_i(e_cmd_ready), .m_cmd_sqe_o(e_cmd_sqe), .m_cmd_qid_o(e_cmd_qid),
    .m_cpl_valid_o(src_valid[NI]), .m_cpl_ready_i(src_ready[NI]),
    .m_cpl_qid_o(src_data[CPL_W*NI + CPL_QID +: 8]), .m_cpl_cid_o(src_data[CPL_W*NI + CPL_CID +: 16]),
    .m_cpl_status_o(src_data[CPL_W*NI + CPL_STATUS +: 15]),
    .m_cpl_result_o(src_data[CPL_W*NI + CPL_RESULT +: 32])
  );

  for (genvar i = 0; i < SHA_N; i++) begin : g_sha
    sha256_engine #(.DW(DW)) u_sha (
      .clk_i, .rst_ni(dp_rst_n),
      .s_cmd_valid_i(e_cmd_valid[i]), .s_cmd_ready_o(e_cmd_ready[i]), .s_cmd_sqe_i(e_cmd_sqe), .s_cmd_qid_i(e_cmd_qid),
      .m_cpl_valid_o(src_valid[i]), .m_cpl_ready_i(src_ready[i]),
      .m_cpl_qid_o(src_data[CPL_W*i + CPL_QID +: 8]), .m_cpl_cid_o(src_data[CPL_W*i + CPL_CID +: 16]),
      .m_cpl_status_o(src_data[CPL_W*i + CPL_STATUS +: 15]),
      .m_cpl_result_o(src_data[CPL_W*i + CPL_RESULT +: 32]),
      .stall_i(inst_stall[i]), .busy_o(e_busy[i]),
      .m_rd_req_valid_o(c_rd_req_valid[i]), .m_rd_req_ready_i(c_rd_req_ready[i]),
      .m_rd_req_addr_o(c_rd_req_addr[64*i +: 64]), .m_rd_req_len_o(c_rd_req_len[16*i +: 16]),
      .s_rd_valid_i(c_rd_valid[i]), .s_rd_ready_o(c_rd_ready[i]), .s_rd_data_i(c_rd_data),
      .s_rd_last_i(c_rd_last), .s_rd_err_i(c_rd_err),
      .m_wr_req_valid_o(c_wr_req_valid[i]), .m_wr_req_ready_i(c_wr_req_ready[i]),
      .m_wr_req_addr_o(c_wr_req_addr[64*i +: 64]), .m_wr_req_len_o(c_wr_req_len[16*i +: 16]),
      .m_wr_valid_o(c_wr_valid[i]), .m_wr_ready_i(c_wr_ready[i]), .m_wr_data_o(c_wr_data[DW*i +: DW]),
      .m_wr_last_o(c_wr_last[i]), .s_wr_done_valid_i(c_wr_done[i]), .s_wr_done_err_i(c_wr_done_err)
    );
  end

  for (genvar i = SHA_N; i < NI; i++) begin : g_ecdsa
    ecdsa_engine #(.DW(DW)) u_ecdsa (
      .clk_i, .rst_ni(dp_rst_n),
      .s_cmd_valid_i(e_cmd_valid[i]), .s_cmd_ready_o(e_cmd_ready[i]), .s_cmd_sqe_i(e_cmd_sqe), .s_cmd_qid_i(e_cmd_qid),
      .m_cpl_valid_o(src_valid[i]), .m_cpl_ready_i(src_ready[i]),
      .m_cpl_qid_o(src_data[CPL_W*i + CPL_QID +: 8]), .m_cpl_cid_o(src_data[CPL_W*i + CPL_CID +: 16]),
      .m_cpl_status_o(src_data[CPL_W*i + CPL_STATUS +: 15]),
      .m_cpl_result_o(src_data[CPL_W*i + CPL_RESULT +: 32]),
      .stall_i(inst_stall[i]), .busy_o(e_busy[i]),
      .m_rd_req_valid_o(c_rd_req_valid[i]), .m_rd_req_ready_i(c_rd_req_ready[i]),
      .m_rd_req_addr_o(c_rd_req_addr[64*i +: 64]), .m_rd_req_len_o(c_rd_req_len[16*i +: 16]),
      .s_rd_valid_i(c_rd_valid[i]), .s_rd_ready_o(c_rd_ready[i]), .s_rd_data_i(c_rd_data),
      .s_rd_last_i(c_rd_last), .s_rd_err_i(c_rd_err),
      .m_wr_req_valid_o(c_wr_req_valid[i]), .m_wr_req_ready_i(c_wr_req_ready[i]),
      .m_wr_req_addr_o(c_wr_req_addr[64*i +: 64]), .m_wr_req_len_o(c_wr_req_len[16*i +: 16]),
      .m_wr_valid_o(c_wr_valid[i]), .m_wr_ready_i(c_wr_ready[i]), .m_wr_data_o(c_wr_data[DW*i +: DW]),
      .m_wr_last_o(c_wr_last[i]), .s_wr_done_valid_i(c_wr_done[i]), .s_wr_done_err_i(c_wr_done_err)
    );
  end

  // Padding bits of the completion payloads.
  for (genvar i = 0; i < NC; i++) begin : g_cpl_pad
    assign src_data[CPL_W*i + CPL_STATUS + 15]           = 1'b0;
    assign src_data[CPL_W*i + CPL_QID + 8 +: CPL_W - 72] = '0;
  end

  stream_arbiter #(.N(NC), .W(CPL_W)) u_cpl_arb (
    .clk_i, .rst_ni(dp_rst_n),
    .s_valid_i(src_valid), .s_ready_o(src_ready), .s_data_i(src_data),
    .m_valid_o(cpl_valid), .m_ready_i(cpl_ready), .m_data_o(cpl_data), .m_grant_o(src_grant)
  );

  // Engine statistics: a completion from an engine instance, and how many instances are busy.
  assign eng_op_done[0] = cpl_valid && cpl_ready && (src_grant[0 +: SHA_N] != '0);
  assign eng_op_done[1] = cpl_valid && cpl_ready && (src_grant[SHA_N +: ECDSA_N] != '0);
  always_comb begin
    eng_busy_cnt = '0;
    for (int i = 0; i < SHA_N; i++) eng_busy_cnt[7:0] = eng_busy_cnt[7:0] + 8'(e_busy[i]);
    for (int i = SHA_N; i < NI; i++) eng_busy_cnt[15:8] = eng_busy_cnt[15:8] + 8'(e_busy[i]);
  end

  // ---------------------------------------------------------------------------------------------
  // DMA

  logic         d_rd_req_valid, d_rd_req_ready, d_rd_valid, d_rd_ready, d_rd_last, d_rd_err;
  logic [63:0]  d_rd_req_addr, d_wr_req_addr;
  logic [15:0]  d_rd_req_len, d_wr_req_len;
  logic [DW-1:0] d_rd_data, d_wr_data;
  logic         d_wr_req_valid, d_wr_req_ready, d_wr_valid, d_wr_ready, d_wr_last, d_wr_done, d_wr_done_err;

  dma_arbiter #(.N(NC), .DW(DW)) u_dma_arb (
    .clk_i, .rst_ni(dp_rst_n), .abort_i(abort),
    .s_rd_req_valid_i(c_rd_req_valid), .s_rd_req_ready_o(c_rd_req_ready),
    .s_rd_req_addr_i(c_rd_req_addr), .s_rd_req_len_i(c_rd_req_len),
    .m_rd_valid_o(c_rd_valid), .m_rd_ready_i(c_rd_ready), .m_rd_data_o(c_rd_data),
    .m_rd_last_o(c_rd_last), .m_rd_err_o(c_rd_err),
    .s_wr_req_valid_i(c_wr_req_valid), .s_wr_req_ready_o(c_wr_req_ready),
    .s_wr_req_addr_i(c_wr_req_addr), .s_wr_req_len_i(c_wr_req_len),
    .s_wr_valid_i(c_wr_valid), .s_wr_ready_o(c_wr_ready), .s_wr_data_i(c_wr_data), .s_wr_last_i(c_wr_last),
    .m_wr_done_valid_o(c_wr_done), .m_wr_done_err_o(c_wr_done_err),
    .m_rd_req_valid_o(d_rd_req_valid), .m_rd_req_ready_i(d_rd_req_ready),
    .m_rd_req_addr_o(d_rd_req_addr), .m_rd_req_len_o(d_rd_req_len),
    .s_rd_valid_i(d_rd_valid), .s_rd_ready_o(d_rd_ready), .s_rd_data_i(d_rd_data),
    .s_rd_last_i(d_rd_last), .s_rd_err_i(d_rd_err),
    .m_wr_req_valid_o(d_wr_req_valid), .m_wr_req_ready_i(d_wr_req_ready),
    .m_wr_req_addr_o(d_wr_req_addr), .m_wr_req_len_o(d_wr_req_len),
    .m_wr_valid_o(d_wr_valid), .m_wr_ready_i(d_wr_ready), .m_wr_data_o(d_wr_data), .m_wr_last_o(d_wr_last),
    .s_wr_done_valid_i(d_wr_done), .s_wr_done_err_i(d_wr_done_err)
  );

  dma_master #(.DW(DW)) u_dma (
    .clk_i, .rst_ni(dp_rst_n), .abort_i(abort), .idle_o(dma_idle),
    .s_rd_req_valid_i(d_rd_req_valid), .s_rd_req_ready_o(d_rd_req_ready),
    .s_rd_req_addr_i(d_rd_req_addr), .s_rd_req_len_i(d_rd_req_len),
    .m_rd_valid_o(d_rd_valid), .m_rd_ready_i(d_rd_ready), .m_rd_data_o(d_rd_data),
    .m_rd_last_o(d_rd_last), .m_rd_err_o(d_rd_err),
    .s_wr_req_valid_i(d_wr_req_valid), .s_wr_req_ready_o(d_wr_req_ready),
    .s_wr_req_addr_i(d_wr_req_addr), .s_wr_req_len_i(d_wr_req_len),
    .s_wr_valid_i(d_wr_valid), .s_wr_ready_o(d_wr_ready), .s_wr_data_i(d_wr_data), .s_wr_last_i(d_wr_last),
    .m_wr_done_valid_o(d_wr_done), .m_wr_done_err_o(d_wr_done_err),
    .m_axi_awvalid_o, .m_axi_awready_i, .m_axi_awaddr_o, .m_axi_awlen_o, .m_axi_awsize_o, .m_axi_awburst_o,
    .m_axi_wvalid_o, .m_axi_wready_i, .m_axi_wdata_o, .m_axi_wstrb_o, .m_axi_wlast_o,
    .m_axi_bvalid_i, .m_axi_bready_o, .m_axi_bresp_i,
    .m_axi_arvalid_o, .m_axi_arready_i, .m_axi_araddr_o, .m_axi_arlen_o, .m_axi_arsize_o, .m_axi_arburst_o,
    .m_axi_rvalid_i, .m_axi_rready_o, .m_axi_rdata_i, .m_axi_rresp_i, .m_axi_rlast_i
  );

  // Mask bits above the instance count, the dispatcher's grant bit and the completion padding
  // drive nothing.
  logic unused_bits;
  assign unused_bits = ^{eng_enable, eng_stall, src_grant, cpl_data[CPL_STATUS + 15],
                        cpl_data[CPL_W-1:CPL_QID + 8]};

  assign dp_idle = qm_idle && (e_busy == '0) && !cpl_valid && dma_idle;
  assign idle_o  = dp_idle;
endmodule
