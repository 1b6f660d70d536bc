// DMA master: turns one DMA client-type port (from dma_arbiter) into AXI4 read/write bursts.
//
// Upstream (s_*/m_* from this module's point of view; signal meaning as the "DMA client port"
// in docs/rtl-interfaces.md, seen from the server side):
//   s_rd_req_* read requests in      m_rd_*      packed read data out
//   s_wr_req_* write requests in     s_wr_*      packed write data in
//   m_wr_done_* done pulse out
// Downstream: AXI4 master, single ID, INCR bursts of full-width beats (size = log2(DW/8)),
// at most 16 beats, never crossing a 4 KiB boundary. The first beat address is the request
// address aligned down to the bus width.
//
// Read path:  request -> AR burst generator (issues every burst of the request back to back)
//             R beats -> realign (R beat + previous R beat -> one packed beat) -> 2-entry FIFO
//             -> upstream. One extra "flush" beat is produced from the held R beat when the
//             request ends within the last R beat's unused upper part.
// Write path: request -> AW burst generator; packed input beat + previous input beat -> bus
//             beat shifted onto the address alignment, with wstrb for [addr, addr+len) ->
//             2-entry FIFO -> W. A W burst starts only once its AW has been loaded into the AW
//             register, so the W beats in flight always belong to committed AW bursts. The done
//             pulse goes out after the last B response.
// One read and one write request in progress at a time, independently.
//
// abort_i: while 1, no new request is accepted and no new burst is started; every R beat is
// taken and dropped, the W beats owed to AW bursts already issued are sent with wstrb = 0
// (beats already staged in the W FIFO go out unchanged), every B response is taken. The
// upstream side is abandoned: read data is no longer offered (m_rd_valid_o = 0), write data is
// swallowed (s_wr_ready_o = 1), an aborted write ends with a done pulse with err = 1.
// idle_o = no AXI transaction outstanding and no request in progress (including read data not
// yet delivered). A soft reset (abort, wait for idle_o, reset) follows every abort.
module dma_master #(
  parameter int DW = 128   // data width in bits: 64, 128, 256 or 512
) (
  input  logic              clk_i,
  input  logic              rst_ni,
  input  logic              abort_i,
  output logic              idle_o,

  // ---- upstream: read ----
  input  logic              s_rd_req_valid_i,
  output logic              s_rd_req_ready_o,
  input  logic [63:0]       s_rd_req_addr_i,
  input  logic [15:0]       s_rd_req_len_i,
  output logic              m_rd_valid_o,
  input  logic              m_rd_ready_i,
  output logic [DW-1:0]     m_rd_data_o,
  output logic              m_rd_last_o,
  output logic              m_rd_err_o,

  // ---- upstream: write ----
  input  logic              s_wr_req_valid_i,
  output logic              s_wr_req_ready_o,
  input  logic [63:0]       s_wr_req_addr_i,
  input  logic [15:0]       s_wr_req_len_i,
  input  logic              s_wr_valid_i,
  output logic              s_wr_ready_o,
  input  logic [DW-1:0]     s_wr_data_i,
  input  logic              s_wr_last_i,     // not needed: beats are counted
  output logic              m_wr_done_valid_o,
  output logic              m_wr_done_err_o,

  // ---- AXI4 master: write address ----
  output logic              m_axi_awvalid_o,
  input  logic              m_axi_awready_i,
  output logic [63:0]       m_axi_awaddr_o,
  output logic [7:0]        m_axi_awlen_o,
  output logic [2:0]        m_axi_awsize_o,
  output logic [1:0]        m_axi_awburst_o,
  // ---- write data ----
  output logic              m_axi_wvalid_o,
  input  logic              m_axi_wready_i,
  output logic [DW-1:0]     m_axi_wdata_o,
  output logic [DW/8-1:0]   m_axi_wstrb_o,
  output logic              m_axi_wlast_o,
  // ---- write response ----
  input  logic              m_axi_bvalid_i,
  output logic              m_axi_bready_o,
  input  logic [1:0]        m_axi_bresp_i,
  // ---- read address ----
  output logic              m_axi_arvalid_o,
  input  logic              m_axi_arready_i,
  output logic [63:0]       m_axi_araddr_o,
  output logic [7:0]        m_axi_arlen_o,
  output logic [2:0]        m_axi_arsize_o,
  output logic [1:0]        m_axi_arburst_o,
  // ---- read data ----
  input  logic              m_axi_rvalid_i,
  output logic              m_axi_rready_o,
  input  logic [DW-1:0]     m_axi_rdata_i,
  input  logic [1:0]        m_axi_rresp_i,
  input  logic              m_axi_rlast_i    // not needed: beats are counted
);
  localparam int B  = DW / 8;        // bytes per beat
  localparam int OW = $clog2(B);     // address bits within a beat
  localparam logic [OW:0] BYTES = (OW + 1)'(B);

  // ------------------------------------------------------------------------------------
  // Helpers
  // ------------------------------------------------------------------------------------
  // Beats of the next burst: at most 16, at most `left`, and not past the 4 KiB boundary.
  // addr12 = low 12 bits of the (bus-aligned) burst address.
  function automatic [4:0] burst_beats(input [11:0] addr12, input [15:0] left);
    logic [12:0] to4k;
    logic [4:0]  n;
    to4k = (13'h1000 - {1'b0, addr12}) >> OW;
    n    = 5'd16;
    if (to4k < 13'd16) n = to4k[4:0];
    if (left < {11'd0, n}) n = left[4:0];
    burst_beats = n;
  endfunction

  // Byte mask of lanes below n (n in 1..B; n = B gives all ones).
  function automatic [B-1:0] lanes_below(input [OW:0] n);
    lanes_below = ~({B{1'b1}} << n);
  endfunction

  // Beat counts of a request: bus beats covering [addr, addr+len) and packed beats.
  function automatic [15:0] bus_beats(input [OW-1:0] off, input [15:0] len);
    logic [16:0] end_byte;
    end_byte  = 17'(off) + 17'(len) + 17'(B - 1);
    bus_beats = 16'(end_byte >> OW);
  endfunction

  function automatic [15:0] packed_beats(input [15:0] len);
    logic [16:0] end_byte;
    end_byte     = 17'(len) + 17'(B - 1);
    packed_beats = 16'(end_byte >> OW);
  endfunction

  assign m_axi_arsize_o  = 3'(OW);
  assign m_axi_awsize_o  = 3'(OW);
  assign m_axi_arburst_o = 2'b01;   // INCR
  assign m_axi_awburst_o = 2'b01;
  assign m_axi_bready_o  = 1'b1;    // always take write responses

  // ====================================================================================
  // Read path
  // ====================================================================================
  logic              rd_busy_q;     // a read request is in progress
  logic [OW-1:0]     rd_off_q;      // request address within the first bus beat
  logic [OW:0]       rd_lb_q;       // bytes in the last packed beat (1..B)
  logic [15:0]       rd_oleft_q;    // packed beats still to produce
  logic [15:0]       rd_rleft_q;    // R beats still to receive (incl. bursts not yet issued)
  logic              rd_first_q;    // next R beat is the first of the request
  logic              rd_err_q;      // some R beat had an error response
  logic [DW-1:0]     rd_hold_q;     // previous R beat
  logic [63:0]       ar_addr_q;     // address of the next burst to issue
  logic [15:0]       ar_left_q;     // beats not yet issued on AR
  logic              arvalid_q;
  logic [63:0]       araddr_q;
  logic [7:0]        arlen_q;

  // Read FIFO (realigned beats): {err, last, data}
  logic              rf_s_valid, rf_s_ready, rf_m_valid, rf_m_ready;
  logic [DW+1:0]     rf_s_data, rf_m_data;

  logic              rd_req_fire, r_fire, ar_load, rd_flush, rd_push, rd_out_last;
  logic [4:0]        ar_blen;
  logic [OW:0]       rd_sh;
  logic [DW-1:0]     rd_beat;
  logic [15:0]       rd_rleft_d, rd_oleft_d;
  logic [OW-1:0]     rd_len_m1;     // (len - 1) mod B: lane of the last request byte

  assign rd_len_m1 = s_rd_req_len_i[OW-1:0] - 1'b1;

  assign s_rd_req_ready_o = !rd_busy_q && !abort_i;
  assign rd_req_fire      = s_rd_req_valid_i && s_rd_req_ready_o;

  // AR: load the next burst into the AR register whenever it is free.
  assign ar_blen  = burst_beats(ar_addr_q[11:0], ar_left_q);
  assign ar_load  = rd_busy_q && (ar_left_q != 16'd0) && !abort_i &&
                    (!arvalid_q || m_axi_arready_i);
  assign m_axi_arvalid_o = arvalid_q;
  assign m_axi_araddr_o  = araddr_q;
  assign m_axi_arlen_o   = arlen_q;

  // R: take beats while the FIFO has room; while aborting take (and drop) every beat.
  assign m_axi_rready_o = abort_i || (rd_busy_q && (rd_rleft_q != 16'd0) && rf_s_ready);
  assign r_fire         = m_axi_rvalid_i && m_axi_rready_o;

  // A packed beat is produced by every R beat except the first one of an unaligned request
  // (it only fills the hold register), and by a final flush of the hold register when the
  // request ends in the upper part of the last R beat.
  assign rd_flush = rd_busy_q && !abort_i && (rd_rleft_q == 16'd0) && (rd_oleft_q != 16'd0);
  assign rd_push  = (r_fire && !abort_i && !(rd_first_q && rd_off_q != '0)) ||
                    (rd_flush && rf_s_ready);
  // The realigned beat is bytes rd_sh .. rd_sh+B-1 of {R beat, held beat}; the last one keeps
  // only its first rd_lb_q bytes. Written as plain expressions (no function calls), so that the
  // simulator folds them into the FIFO write and only evaluates them when a beat is pushed.
  assign rd_sh    = (rd_off_q == '0) ? BYTES : {1'b0, rd_off_q};
  assign rd_beat  = DW'({r_fire ? m_axi_rdata_i : '0, rd_hold_q} >> {rd_sh, 3'b000});
  assign rd_out_last = (rd_oleft_q == 16'd1);

  assign rf_s_valid = rd_push;
  assign rf_s_data  = {rd_out_last && (rd_err_q || (r_fire && m_axi_rresp_i != 2'b00)),
                       rd_out_last,
                       rd_beat & (rd_out_last ? ~({DW{1'b1}} << {rd_lb_q, 3'b000}) : {DW{1'b1}})};

  // Unissued beats are dropped from the R count when aborting.
  assign rd_rleft_d = rd_rleft_q - {15'd0, r_fire} - (abort_i ? ar_left_q : 16'd0);
  assign rd_oleft_d = rd_oleft_q - {15'd0, rd_push};

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      rd_busy_q  <= 1'b0;
      rd_off_q   <= '0;
      rd_lb_q    <= '0;
      rd_oleft_q <= '0;
      rd_rleft_q <= '0;
      rd_first_q <= 1'b0;
      rd_err_q   <= 1'b0;
      rd_hold_q  <= '0;
      ar_addr_q  <= '0;
      ar_left_q  <= '0;
      arvalid_q  <= 1'b0;
      araddr_q   <= '0;
      arlen_q    <= '0;
    end else begin
      // AR register
      if (!arvalid_q || m_axi_arready_i) begin
        arvalid_q <= ar_load;
        if (ar_load) begin
          araddr_q <= ar_addr_q;
          arlen_q  <= {3'd0, ar_blen} - 8'd1;
        end
      end

      if (rd_req_fire) begin
        rd_busy_q  <= 1'b1;
        rd_off_q   <= s_rd_req_addr_i[OW-1:0];
        rd_lb_q    <= {1'b0, rd_len_m1} + 1'b1;
        rd_oleft_q <= packed_beats(s_rd_req_len_i);
        rd_rleft_q <= bus_beats(s_rd_req_addr_i[OW-1:0], s_rd_req_len_i);
        ar_left_q  <= bus_beats(s_rd_req_addr_i[OW-1:0], s_rd_req_len_i);
        ar_addr_q  <= {s_rd_req_addr_i[63:OW], {OW{1'b0}}};
        rd_first_q <= 1'b1;
        rd_err_q   <= 1'b0;
      end else if (rd_busy_q) begin
        if (ar_load) begin
          ar_addr_q <= ar_addr_q + (64'(ar_blen) << OW);
          ar_left_q <= ar_left_q - {11'd0, ar_blen};
        end else if (abort_i) begin
          ar_left_q <= '0;
        end
        rd_rleft_q <= rd_rleft_d;
        rd_oleft_q <= rd_oleft_d;
        if (r_fire) begin
          rd_first_q <= 1'b0;
          rd_hold_q  <= m_axi_rdata_i;
          if (m_axi_rresp_i != 2'b00) rd_err_q <= 1'b1;
        end
        if (rd_rleft_d == 16'd0 && (rd_oleft_d == 16'd0 || abort_i)) rd_busy_q <= 1'b0;
      end
    end
  end

  fifo_sync #(.W(DW + 2), .DEPTH(2)) u_rd_fifo (
    .clk_i     (clk_i),
    .rst_ni    (rst_ni),
    .clr_i     (abort_i),
    .s_valid_i (rf_s_valid),
    .s_ready_o (rf_s_ready),
    .s_data_i  (rf_s_data),
    .m_valid_o (rf_m_valid),
    .m_ready_i (rf_m_ready),
    .m_data_o  (rf_m_data)
  );

  assign m_rd_valid_o = rf_m_valid && !abort_i;
  assign rf_m_ready   = m_rd_ready_i && !abort_i;
  assign m_rd_err_o   = rf_m_data[DW+1];
  assign m_rd_last_o  = rf_m_data[DW];
  assign m_rd_data_o  = rf_m_data[DW-1:0];

  // ====================================================================================
  // Write path
  // ====================================================================================
  logic              wr_busy_q;     // a write request is in progress
  logic [OW-1:0]     wr_off_q;      // request address within the first bus beat
  logic [B-1:0]      wr_fmask_q;    // strobes of the first bus beat
  logic [B-1:0]      wr_lmask_q;    // strobes of the last bus beat
  logic              wr_err_q;      // some B response was not OKAY, or aborted
  logic [63:0]       aw_addr_q;     // address of the next burst to issue
  logic [15:0]       aw_left_q;     // beats not yet issued on AW
  logic              awvalid_q;
  logic [63:0]       awaddr_q;
  logic [7:0]        awlen_q;
  logic [7:0]        aw_credit_q;   // AW bursts loaded whose W burst has not started
  logic [7:0]        b_owed_q;      // AW bursts accepted whose B response has not come
  logic [11:0]       wp_addr_q;     // low address bits of the next W beat to produce
  logic [15:0]       wp_total_q;    // W beats still to produce (whole request)
  logic [4:0]        wp_burst_q;    // W beats left in the current burst (0 = none started)
  logic              wp_first_q;    // next W beat is the first of the request
  logic [15:0]       wp_inleft_q;   // packed input beats still to take
  logic [DW-1:0]     wr_hold_q;     // previous input beat
  logic              done_q, done_err_q;

  // W FIFO: {last, strb, data}
  logic              wf_s_valid, wf_s_ready, wf_m_valid, wf_m_ready;
  logic [DW+B:0]     wf_s_data, wf_m_data;

  logic              wr_req_fire, aw_load, aw_fire, b_fire, wp_new, wp_need_in, wp_push;
  logic              wr_finish;
  logic [4:0]        aw_blen, wp_blen, wp_cur;
  logic [OW-1:0]     wr_req_off;
  logic [OW-1:0]     wr_req_end_m1;  // (off + len - 1) mod B: lane of the last request byte
  logic [B-1:0]      wp_strb;
  logic [DW-1:0]     wp_beat;

  assign s_wr_req_ready_o = !wr_busy_q && !abort_i;
  assign wr_req_fire      = s_wr_req_valid_i && s_wr_req_ready_o;
  assign wr_req_off       = s_wr_req_addr_i[OW-1:0];
  assign wr_req_end_m1    = wr_req_off + s_wr_req_len_i[OW-1:0] - 1'b1;

  // AW: same burst generator as AR.
  assign aw_blen  = burst_beats(aw_addr_q[11:0], aw_left_q);
  assign aw_load  = wr_busy_q && (aw_left_q != 16'd0) && !abort_i &&
                    (!awvalid_q || m_axi_awready_i);
  assign aw_fire  = m_axi_awvalid_o && m_axi_awready_i;
  assign b_fire   = m_axi_bvalid_i && m_axi_bready_o;
  assign m_axi_awvalid_o = awvalid_q;
  assign m_axi_awaddr_o  = awaddr_q;
  assign m_axi_awlen_o   = awlen_q;

  // W beat production. A new W burst starts when an AW burst is loaded but not yet started;
  // its length is recomputed here with the same function, so it matches awlen.
  assign wp_blen    = burst_beats(wp_addr_q, wp_total_q);
  assign wp_new     = (wp_burst_q == 5'd0) && (aw_credit_q != 8'd0);
  assign wp_cur     = (wp_burst_q != 5'd0) ? wp_burst_q : (wp_new ? wp_blen : 5'd0);
  assign wp_need_in = (wp_inleft_q != 16'd0) && !abort_i;   // aborting: no client data
  assign wp_push    = (wp_cur != 5'd0) && wf_s_ready && (!wp_need_in || s_wr_valid_i);
  assign s_wr_ready_o = abort_i ||
                        ((wp_cur != 5'd0) && wf_s_ready && (wp_inleft_q != 16'd0));

  // Bus beat = previous input beat's top `off` bytes + this input beat's low B-off bytes, i.e.
  // bytes B-off .. 2B-off-1 of {input beat, held beat} (a plain expression, as for reads).
  assign wp_beat = DW'({wp_need_in ? s_wr_data_i : '0, wr_hold_q} >>
                       {BYTES - {1'b0, wr_off_q}, 3'b000});
  assign wp_strb = abort_i ? '0 :
                   ((wp_first_q ? wr_fmask_q : {B{1'b1}}) &
                    ((wp_total_q == 16'd1) ? wr_lmask_q : {B{1'b1}}));

  assign wf_s_valid = wp_push;
  assign wf_s_data  = {wp_cur == 5'd1, wp_strb, wp_beat};

  // Finished: all bursts issued and accepted, all W beats produced and sent, all B back.
  assign wr_finish = wr_busy_q && (aw_left_q == 16'd0) && !awvalid_q &&
                     (aw_credit_q == 8'd0) && (wp_burst_q == 5'd0) && !wf_m_valid &&
                     (b_owed_q == 8'd0);

  always_ff @(posedge clk_i) begin
    if (!rst_ni) begin
      wr_busy_q   <= 1'b0;
      wr_off_q    <= '0;
      wr_fmask_q  <= '0;
      wr_lmask_q  <= '0;
      wr_err_q    <= 1'b0;
      aw_addr_q   <= '0;
      aw_left_q   <= '0;
      awvalid_q   <= 1'b0;
      awaddr_q    <= '0;
      awlen_q     <= '0;
      aw_credit_q <= '0;
      b_owed_q    <= '0;
      wp_addr_q   <= '0;
      wp_total_q  <= '0;
      wp_burst_q  <= '0;
      wp_first_q  <= 1'b0;
      wp_inleft_q <= '0;
      wr_hold_q   <= '0;
      done_q      <= 1'b0;
      done_err_q  <= 1'b0;
    end else begin
      // AW register
      if (!awvalid_q || m_axi_awready_i) begin
        awvalid_q <= aw_load;
        if (aw_load) begin
          awaddr_q <= aw_addr_q;
          awlen_q  <= {3'd0, aw_blen} - 8'd1;
        end
      end
      aw_credit_q <= aw_credit_q + {7'd0, aw_load} - {7'd0, wp_push && wp_new};
      b_owed_q    <= b_owed_q + {7'd0, aw_fire} - {7'd0, b_fire};

      done_q     <= wr_finish;
      done_err_q <= wr_finish && wr_err_q;

      if (wr_req_fire) begin
        wr_busy_q   <= 1'b1;
        wr_off_q    <= wr_req_off;
        wr_fmask_q  <= {B{1'b1}} << wr_req_off;
        wr_lmask_q  <= lanes_below({1'b0, wr_req_end_m1} + 1'b1);
        wr_err_q    <= 1'b0;
        aw_addr_q   <= {s_wr_req_addr_i[63:OW], {OW{1'b0}}};
        aw_left_q   <= bus_beats(wr_req_off, s_wr_req_len_i);
        wp_addr_q   <= {s_wr_req_addr_i[11:OW], {OW{1'b0}}};
        wp_total_q  <= bus_beats(wr_req_off, s_wr_req_len_i);
        wp_burst_q  <= '0;
        wp_first_q  <= 1'b1;
        wp_inleft_q <= packed_beats(s_wr_req_len_i);
        wr_hold_q   <= '0;
      end else if (wr_busy_q) begin
        if (aw_load) begin
          aw_addr_q <= aw_addr_q + (64'(aw_blen) << OW);
          aw_left_q <= aw_left_q - {11'd0, aw_blen};
        end else if (abort_i) begin
          aw_left_q <= '0;   // bursts not yet issued are dropped
        end
        if (wp_push) begin
          wp_burst_q <= wp_cur - 5'd1;
          wp_total_q <= wp_total_q - 16'd1;
          wp_addr_q  <= wp_addr_q + 12'(B);
          wp_first_q <= 1'b0;
          if (wp_need_in) begin
            wp_inleft_q <= wp_inleft_q - 16'd1;
            wr_hold_q   <= s_wr_data_i;
          end
        end
        if (b_fire && m_axi_bresp_i != 2'b00) wr_err_q <= 1'b1;
        if (abort_i) wr_err_q <= 1'b1;
        if (wr_finish) wr_busy_q <= 1'b0;
      end
    end
  end

  fifo_sync #(.W(DW + B + 1), .DEPTH(2)) u_wr_fifo (
    .clk_i     (clk_i),
    .rst_ni    (rst_ni),
    .clr_i     (1'b0),
    .s_valid_i (wf_s_valid),
    .s_ready_o (wf_s_ready),
    .s_data_i  (wf_s_data),
    .m_valid_o (wf_m_valid),
    .m_ready_i (wf_m_ready),
    .m_data_o  (wf_m_data)
  );

  assign m_axi_wvalid_o = wf_m_valid;
  assign wf_m_ready     = m_axi_wready_i;
  assign m_axi_wlast_o  = wf_m_data[DW+B];
  assign m_axi_wstrb_o  = wf_m_data[DW+B-1:DW];
  assign m_axi_wdata_o  = wf_m_data[DW-1:0];

  assign m_wr_done_valid_o = done_q;
  assign m_wr_done_err_o   = done_err_q;

  assign idle_o = !rd_busy_q && !rf_m_valid && !wr_busy_q && !done_q;

  // Inputs not needed (beats are counted instead).
  logic unused;
  assign unused = s_wr_last_i ^ m_axi_rlast_i;
endmodule
