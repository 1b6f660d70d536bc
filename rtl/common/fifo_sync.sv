// Small synchronous FIFO (flip-flop storage) with registered full/empty flags.
//
// Push when s_valid_i && s_ready_o, pop when m_valid_o && m_ready_i; both may happen in the same
// cycle. s_ready_o (not full) and m_valid_o (not empty) come straight from registers, so the
// FIFO cuts every combinational valid/ready path. With DEPTH >= 2 it sustains one beat per
// cycle. clr_i empties it (synchronously), dropping its contents.
module fifo_sync #(
  parameter int W     = 8,  // payload width in bits
  parameter int DEPTH = 2   // number of entries, >= 2
) (
  input  logic         clk_i,
  input  logic         rst_ni,
  input  logic         clr_i,
  // push side
  input  logic         s_valid_i,
  output logic         s_ready_o,
  input  logic [W-1:0] s_data_i,
  // pop side
  output logic         m_valid_o,
  input  logic         m_ready_i,
  output logic [W-1:0] m_data_o
);
  localparam int PW = $clog2(DEPTH);  // pointer width
  localparam int CW = PW + 1;         // count width (0..DEPTH)
  localparam logic [PW-1:0] LAST_PTR = PW'(DEPTH - 1);
  localparam logic [CW-1:0] FULL_CNT = CW'(DEPTH);

  logic [W-1:0]  mem_q [DEPTH];
  logic [PW-1:0] wr_ptr_q, rd_ptr_q;
  logic [CW-1:0] count_q;

  logic push, pop;
  assign push      = s_valid_i && s_ready_o;
  assign pop       = m_valid_o && m_ready_i;
  assign s_ready_o = (count_q != FULL_CNT);
  assign m_valid_o = (count_q != '0);
  assign m_data_o  = mem_q[rd_ptr_q];

  // Storage: data only, no reset needed.
  always_ff @(posedge clk_i) begin
    if (push) mem_q[wr_ptr_q] <= s_data_i;
  end

  always_ff @(posedge clk_i) begin
    if (!rst_ni || clr_i) begin
      wr_ptr_q <= '0;
      rd_ptr_q <= '0;
      count_q  <= '0;
    end else begin
      if (push) wr_ptr_q <= (wr_ptr_q == LAST_PTR) ? '0 : wr_ptr_q + 1'b1;
      if (pop)  rd_ptr_q <= (rd_ptr_q == LAST_PTR) ? '0 : rd_ptr_q + 1'b1;
      if (push && !pop)      count_q <= count_q + 1'b1;
      else if (pop && !push) count_q <= count_q - 1'b1;
    end
  end
endmodule
