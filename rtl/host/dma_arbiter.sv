// DMA arbiter: merges N DMA client ports into one (toward dma_master), round-robin per direction.
//
// Port naming is from the arbiter's point of view: s_* streams come into it, m_* go out.
// Client side (N ports, packed arrays, client k in slice k):
//   s_rd_req_*  read requests from the clients      m_rd_*      read data to the clients
//   s_wr_req_*  write requests from the clients     s_wr_*      write data from the clients
//   m_wr_done_* write done pulses to the clients
// The read data / done payloads (m_rd_data_o, m_rd_last_o, m_rd_err_o, m_wr_done_err_o) are
// shared by all clients; only the valid bit is per client.
// Downstream side (one client-type port toward dma_master):
//   m_rd_req_*, s_rd_*, m_wr_req_*, m_wr_*, s_wr_done_*
//
// Read channel: a client owns it from the acceptance of its request until its last data beat is
// taken. Write channel: from the acceptance of its request until the done pulse. In between the
// channel's data is routed to/from that client only. While abort_i is 1 no new request is
// presented downstream (a request already presented stays presented until accepted, as the
// stream protocol requires).
module dma_arbiter #(
  parameter int N  = 2,    // number of clients, >= 1
  parameter int DW = 128   // data width in bits
) (
  input  logic            clk_i,
  input  logic            rst_ni,
  input  logic            abort_i,

  // ---- client side: read ----
  input  logic [N-1:0]    s_rd_req_valid_i,
  output logic [N-1:0]    s_rd_req_ready_o,
  input  logic [N*64-1:0] s_rd_req_addr_i,
  input  logic [N*16-1:0] s_rd_req_len_i,
  output logic [N-1:0]    m_rd_valid_o,
  input  logic [N-1:0]    m_rd_ready_i,
  output logic [DW-1:0]   m_rd_data_o,
  output logic            m_rd_last_o,
  output logic            m_rd_err_o,

  // ---- client side: write ----
  input  logic [N-1:0]    s_wr_req_valid_i,
  output logic [N-1:0]    s_wr_req_ready_o,
  input  logic [N*64-1:0] s_wr_req_addr_i,
  input  logic [N*16-1:0] s_wr_req_len_i,
  input  logic [N-1:0]    s_wr_valid_i,
  output logic [N-1:0]    s_wr_ready_o,
  input  logic [N*DW-1:0] s_wr_data_i,
  input  logic [N-1:0]    s_wr_last_i,
  output logic [N-1:0]    m_wr_done_valid_o,
  output logic            m_wr_done_err_o,

  // ---- downstream side: read ----
  output logic            m_rd_req_valid_o,
  input  logic            m_rd_req_ready_i,
  output logic [63:0]     m_rd_req_addr_o,
  output logic [15:0]     m_rd_req_len_o,
  input  logic            s_rd_valid_i,
  output logic            s_rd_ready_o,
  input  logic [DW-1:0]   s_rd_data_i,
  input  logic            s_rd_last_i,
  input  logic            s_rd_err_i,

  // ---- downstream side: write ----
  output logic            m_wr_req_valid_o,
  input  logic            m_wr_req_ready_i,
  output logic [63:0]     m_wr_req_addr_o,
  output logic [15:0]     m_wr_req_len_o,
  output logic            m_wr_valid_o,
  input  logic            m_wr_ready_i,
  output logic [DW-1:0]   m_wr_data_o,
  output logic            m_wr_last_o,
  input  logic            s_wr_done_valid_i,
  input  logic            s_wr_done_err_i
);
  localparam int IW = (N > 1) ? $clog2(N) : 1;  // client index width

  // Round-robin pick: the first requester after `last`, wrapping around. `found` is 0 when
  // nobody requests.
  function automatic logic [IW:0] rr_pick(input logic [N-1:0] req, input logic [IW-1:0] last);
    logic [IW:0] res;  // {found, index}
    res = '0;
    // Second priority: the lowest requester at or below `last` (wrap-around).
    for (int i = N - 1; i >= 0; i--) begin
      if (req[i] && (IW'(i) <= last)) res = {1'b1, IW'(i)};
    end
    // First priority: the lowest requester above `last`.
    for (int i = N - 1; i >= 0; i--) begin
      if (req[i] && (IW'(i) > last)) res = {1'b1, IW'(i)};
    end
    rr_pick = res;
  endfunction

  // ====================================================================================
  // Read channel
  // ====================================================================================
  // rd_busy_q = 0: choosing / presenting a request downstream. rd_lock_q keeps the choice of a
  // request presented but not yet accepted. rd_busy_q = 1: routing data beats to rd_sel_q.
  logic          rd_busy_q, rd_lock_q;
  logic [IW-1:0] rd_sel_q, rd_last_q;
  logic [IW:0]   rd_pick;
  logic [IW-1:0] rd_sel;     // client presented downstream this cycle (when not busy)
  logic          rd_req_fire, rd_data_fire;

  assign rd_pick = rr_pick(s_rd_req_valid_i, rd_last_q);
  assign rd_sel  = rd_lock_q ? rd_sel_q : rd_pick[IW-1:0];

  assign m_rd_req_valid_o = !rd_busy_q && (rd_lock_q || (rd_pick[IW] && !abort_i));
  // Client selects are written as constant-index muxes: a variable part-select of a wide vector
  // is slow to simulate.
  always_comb begin
    m_rd_req_addr_o = '0;
    m_rd_req_len_o  = '0;
    for (int i = 0; i < N; i++) begin
      if (rd_sel == IW'(i)) begin
        m_rd_req_addr_o = s_rd_req_addr_i[64*i +: 64];
        m_rd_req_len_o  = s_rd_req_len_i[16*i +: 16];
      end
    end
  end
  assign rd_req_fire      = m_rd_req_valid_o && m_rd_req_ready_i;

  always_comb begin
    s_rd_req_ready_o = '0;
    m_rd_valid_o     = '0;
    s_rd_req_ready_o[rd_sel] = !rd_busy_q && m_rd_req_valid_o && m_rd_req_ready_i;
    m_rd_valid_o[rd_sel_q]   = rd_busy_q && s_rd_valid_i;
  end
  assign s_rd_ready_o = rd_busy_q && m_rd_ready_i[rd_sel_q];
  assign m_rd_data_o  = s_rd_data_i;
  assign m_rd_last_o  = s_rd_last_i;
  assign m_rd_err_o   = s_rd_err_i;
  assign rd_data_fire = s_rd_valid_i && s_rd_ready_o;

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      rd_busy_q <= 1'b0;
      rd_lock_q <= 1'b0;
      rd_sel_q  <= '0;
      rd_last_q <= IW'(N - 1);  // so that client 0 comes first
    end else if (!rd_busy_q) begin
      if (rd_req_fire) begin
        rd_busy_q <= 1'b1;
        rd_lock_q <= 1'b0;
        rd_sel_q  <= rd_sel;
        rd_last_q <= rd_sel;
      end else if (m_rd_req_valid_o) begin
        rd_lock_q <= 1'b1;      // presented, not accepted: keep this client
        rd_sel_q  <= rd_sel;
      end
    end else if (rd_data_fire && s_rd_last_i) begin
      rd_busy_q <= 1'b0;
    end
  end

  // ====================================================================================
  // Write channel (same scheme; held until the done pulse)
  // ====================================================================================
  logic          wr_busy_q, wr_lock_q;
  logic [IW-1:0] wr_sel_q, wr_last_q;
  logic [IW:0]   wr_pick;
  logic [IW-1:0] wr_sel;
  logic          wr_req_fire;

  assign wr_pick = rr_pick(s_wr_req_valid_i, wr_last_q);
  assign wr_sel  = wr_lock_q ? wr_sel_q : wr_pick[IW-1:0];

  assign m_wr_req_valid_o = !wr_busy_q && (wr_lock_q || (wr_pick[IW] && !abort_i));
  always_comb begin
    m_wr_req_addr_o = '0;
    m_wr_req_len_o  = '0;
    for (int i = 0; i < N; i++) begin
      if (wr_sel == IW'(i)) begin
        m_wr_req_addr_o = s_wr_req_addr_i[64*i +: 64];
        m_wr_req_len_o  = s_wr_req_len_i[16*i +: 16];
      end
    end
  end
  assign wr_req_fire      = m_wr_req_valid_o && m_wr_req_ready_i;

  always_comb begin
    s_wr_req_ready_o  = '0;
    s_wr_ready_o      = '0;
    m_wr_done_valid_o = '0;
    s_wr_req_ready_o[wr_sel]   = !wr_busy_q && m_wr_req_valid_o && m_wr_req_ready_i;
    s_wr_ready_o[wr_sel_q]     = wr_busy_q && m_wr_ready_i;
    m_wr_done_valid_o[wr_sel_q] = wr_busy_q && s_wr_done_valid_i;
  end
  assign m_wr_valid_o    = wr_busy_q && s_wr_valid_i[wr_sel_q];
  always_comb begin
    m_wr_data_o = '0;
    for (int i = 0; i < N; i++) begin
      if (wr_sel_q == IW'(i)) m_wr_data_o = s_wr_data_i[DW*i +: DW];
    end
  end
  assign m_wr_last_o     = s_wr_last_i[wr_sel_q];
  assign m_wr_done_err_o = s_wr_done_err_i;

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      wr_busy_q <= 1'b0;
      wr_lock_q <= 1'b0;
      wr_sel_q  <= '0;
      wr_last_q <= IW'(N - 1);
    end else if (!wr_busy_q) begin
      if (wr_req_fire) begin
        wr_busy_q <= 1'b1;
        wr_lock_q <= 1'b0;
        wr_sel_q  <= wr_sel;
        wr_last_q <= wr_sel;
      end else if (m_wr_req_valid_o) begin
        wr_lock_q <= 1'b1;
        wr_sel_q  <= wr_sel;
      end
    end else if (s_wr_done_valid_i) begin
      wr_busy_q <= 1'b0;
    end
  end
endmodule
