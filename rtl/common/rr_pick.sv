// Round-robin choice: the first set bit of req_i at or after start_i, wrapping (combinational).
module rr_pick #(
  parameter int unsigned N  = 2,
  parameter int unsigned IW = (N > 1) ? $clog2(N) : 1
) (
  input  logic [N-1:0]  req_i,     // candidates
  input  logic [IW-1:0] start_i,   // highest-priority index this cycle (< N)
  output logic          ok_o,      // some candidate exists
  output logic [IW-1:0] pick_o,    // the chosen candidate
  output logic [IW-1:0] next_o     // the index after pick_o, wrapping: the next start
);
  // Wrapping is a compare and subtract (start + i < 2N), never `%`: for N not a power of two
  // Yosys 0.23 builds a full divider for each modulo.
  always_comb begin
    ok_o   = 1'b0;
    pick_o = '0;
    // Scanning downwards lets the last assignment, the nearest candidate at or after start_i, win.
    for (int i = N - 1; i >= 0; i--) begin
      logic [IW:0] sum;
      // After the wrap idx < N <= 2^IW: its top bit is always 0.
      /* verilator lint_off UNUSEDSIGNAL */
      logic [IW:0] idx;
      /* verilator lint_on UNUSEDSIGNAL */
      sum = {1'b0, start_i} + (IW + 1)'(i);
      idx = (sum >= (IW + 1)'(N)) ? sum - (IW + 1)'(N) : sum;
      if (req_i[idx[IW-1:0]]) begin
        ok_o   = 1'b1;
        pick_o = idx[IW-1:0];
      end
    end
  end

  assign next_o = (32'(pick_o) == N - 1) ? '0 : pick_o + 1'b1;
endmodule
