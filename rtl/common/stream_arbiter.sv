// Round-robin arbiter merging N valid/ready streams of W-bit payloads into one, one beat per grant.
module stream_arbiter #(
  parameter int unsigned N = 2,
  parameter int unsigned W = 8
) (
  input  logic           clk_i,
  input  logic           rst_ni,
  input  logic [N-1:0]   s_valid_i,
  output logic [N-1:0]   s_ready_o,
  input  logic [N*W-1:0] s_data_i,
  output logic           m_valid_o,
  input  logic           m_ready_i,
  output logic [W-1:0]   m_data_o,
  output logic [N-1:0]   m_grant_o       // which input the current beat comes from (one-hot)
);
  localparam int unsigned IW = (N > 1) ? $clog2(N) : 1;

  logic [IW-1:0] rr_q;   // highest priority input this cycle
  logic [IW-1:0] pick, pick_next;
  logic          any;

  rr_pick #(.N(N), .IW(IW)) u_pick (.req_i(s_valid_i), .start_i(rr_q), .ok_o(any), .pick_o(pick),
                                  .next_o(pick_next));

  always_comb begin
    m_grant_o = '0;
    s_ready_o = '0;
    if (any) begin
      m_grant_o[pick] = 1'b1;
      s_ready_o[pick] = m_ready_i;
    end
  end

  assign m_valid_o = any;
  // Constant-index mux: a variable part-select of a wide vector is slow to simulate.
  always_comb begin
    m_data_o = '0;
    for (int i = 0; i < N; i++) begin
      if (pick == IW'(i)) m_data_o = s_data_i[W*i +: W];
    end
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni) rr_q <= '0;
    else if (any && m_ready_i) rr_q <= pick_next;
  end
endmodule
