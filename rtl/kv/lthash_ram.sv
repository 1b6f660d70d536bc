// LtHash16 lattice RAM: 32 words of 512 bits (32 u16 lanes each), one synchronous read port with enable, one write port.
//
// Word w holds lanes 32w .. 32w+31, lane 32w+i in bits [16i+15:16i], so word w is bytes
// 64w .. 64w+63 of the 2048 lattice bytes (lanes little-endian), byte k of the word in bits
// [8k+7:8k]. The read data register moves only with re_i (so a stalled consumer keeps its word);
// a read of the word being written in the same cycle returns the old contents (the unit never
// does that). No reset: the contents are undefined until the unit clears or loads them.
// Written in the plain pattern Yosys maps to LUT-RAM or block RAM.
module lthash_ram (
  input  logic         clk_i,

  input  logic         re_i,
  input  logic [4:0]   raddr_i,
  output logic [511:0] rdata_o,

  input  logic         we_i,
  input  logic [4:0]   waddr_i,
  input  logic [511:0] wdata_i
);

  logic [511:0] mem_q [32];
  logic [511:0] rdata_q;

  always_ff @(posedge clk_i) begin
    if (we_i) begin
      mem_q[waddr_i] <= wdata_i;
    end
    if (re_i) begin
      rdata_q <= mem_q[raddr_i];
    end
  end

  assign rdata_o = rdata_q;

endmodule
