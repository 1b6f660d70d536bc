// Round-robin choice: the first set bit of req_i at or after start_i, wrapping (combinational).
module rr_pick #(
  parameter int unsigned N  = 2,
  parameter int unsigned IW = (N > 1) ? $clog2(N) : 1
) (
  input  logic [N-1:0]  req_i,     // candidates
  input  logic [IW-1:0] start_i,   // highest-priority index this cycle
  output logic          ok_o,      // some candidate exists
  output logic [IW-1:0] pick_o     // the chosen candidate
);
  always_comb begin
    ok_o   = 1'b0;
    pick_o = '0;
    // Scanning downwards lets the last assignment, the nearest candidate at or after start_i, win.
    for (int i = N - 1; i >= 0; i--) begin
      // Only the low bits of the rotated index matter; the rest is arithmetic headroom.
      /* verilator lint_off UNUSEDSIGNAL */
      int unsigned idx;
      /* verilator lint_on UNUSEDSIGNAL */
      idx = (32'(start_i) + 32'(i)) % N;
      if (req_i[idx]) begin
        ok_o   = 1'b1;
        pick_o = IW'(idx);
      end
    end
  end
endmodule
