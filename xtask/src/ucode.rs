//! ECDSA engine microcode: the instruction set, the assembler for `hw/ecdsa_p256.uasm`, and the
//! generated ROM header `rtl/generated/ecdsa_ucode.svh`.
//!
//! The ISA is specified in `docs/ecdsa-engine.md`. One microinstruction = one ALU operation on
//! 256-bit values plus one control operation that picks the next program counter; the assembler
//! folds stand-alone control lines into the instruction before them wherever the path is
//! unconditional, so loop control and jumps mostly cost no issue slot.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Program counter width; the ROM holds at most `1 << PC_BITS` words.
pub const PC_BITS: u32 = 10;
/// Registers per thread.
pub const NREGS: u8 = 32;
/// Bits of u1 consumed per addition of a multiple of G from the ROM (the window).
pub const WIN_BITS: u32 = 8;

/// ALU operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    Nop = 0,
    /// Montgomery product a·b·2^-256 mod M.
    Mul = 1,
    /// ka·a + kb·b mod M.
    Add = 2,
    /// ka·a − kb·b mod M.
    Sub = 3,
    /// flag = (a == b).
    Ceq = 4,
    /// flag = (a < b), unsigned.
    Clt = 5,
}

/// Control operations; `tt` is the taken target, `tf` the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cop {
    /// pc = tt.
    Goto = 0,
    /// pc = flag ? tt : tf (flag from this instruction's compare).
    Bf = 1,
    /// pc = bit i of scalar `imm` (0 = u1, 1 = u2, 2 = n−2) ? tt : tf.
    Jbit = 2,
    /// i != 255 ? tt : tf (a count-down loop ends when `dec` wraps i past 0).
    Loop = 3,
    /// i % WIN_BITS == 0 and the window u1[i+WIN_BITS−1:i] != 0 ? tt : tf.
    Jwin = 4,
    /// i = imm, pc = tt.
    Seti = 5,
    /// End the thread with verdict imm[0].
    Ret = 6,
}

/// Operand and destination codes (6 bits).
pub mod opnd {
    pub const ZERO: u8 = 32;
    pub const P: u8 = 33;
    pub const N: u8 = 34;
    pub const ONE_P: u8 = 35;
    pub const ONE_N: u8 = 36;
    pub const R2P: u8 = 37;
    pub const R2N: u8 = 38;
    pub const B_P: u8 = 39;
    pub const PMN: u8 = 40;
    pub const GX: u8 = 41;
    pub const GY: u8 = 42;
    pub const E: u8 = 48;
    pub const RIN: u8 = 49;
    pub const SIN: u8 = 50;
    pub const QX: u8 = 51;
    pub const QY: u8 = 52;
    pub const U1: u8 = 60;
    pub const U2: u8 = 61;
    pub const NONE: u8 = 63;

    /// Names usable as source operands, with their codes.
    pub const SOURCES: &[(&str, u8)] = &[
        ("ZERO", ZERO),
        ("P", P),
        ("N", N),
        ("ONE_P", ONE_P),
        ("ONE_N", ONE_N),
        ("R2P", R2P),
        ("R2N", R2N),
        ("B_P", B_P),
        ("PMN", PMN),
        ("GX", GX),
        ("GY", GY),
        ("E", E),
        ("RIN", RIN),
        ("SIN", SIN),
        ("QX", QX),
        ("QY", QY),
    ];
}

/// Scalars a `jbit` can test.
pub const SCALARS: &[(&str, u8)] = &[("U1", 0), ("U2", 1), ("NM2", 2)];

/// One microinstruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instr {
    pub alu: Alu,
    /// Modulus n instead of p.
    pub modn: bool,
    pub d: u8,
    pub a: u8,
    pub b: u8,
    pub ka: u8,
    pub kb: u8,
    pub cop: Cop,
    pub imm: u8,
    pub tt: u16,
    pub tf: u16,
    /// Decrement i after this instruction (control reads i from before it).
    pub dec: bool,
}

/// Bit positions of the fields in the 64-bit ROM word: (name, lsb, width).
pub const FIELDS: &[(&str, u32, u32)] = &[
    ("ALU", 0, 3),
    ("MODN", 3, 1),
    ("D", 4, 6),
    ("A", 10, 6),
    ("B", 16, 6),
    ("KA", 22, 4),
    ("KB", 26, 4),
    ("COP", 30, 3),
    ("IMM", 33, 8),
    ("TT", 41, 10),
    ("TF", 51, 10),
    ("DEC", 61, 1),
];

impl Instr {
    fn nop() -> Instr {
        Instr {
            alu: Alu::Nop,
            modn: false,
            d: opnd::NONE,
            a: opnd::ZERO,
            b: opnd::ZERO,
            ka: 0,
            kb: 0,
            cop: Cop::Goto,
            imm: 0,
            tt: 0,
            tf: 0,
            dec: false,
        }
    }

    /// The 64-bit ROM word.
    pub fn word(&self) -> u64 {
        let vals = [
            self.alu as u64,
            self.modn as u64,
            self.d as u64,
            self.a as u64,
            self.b as u64,
            self.ka as u64,
            self.kb as u64,
            self.cop as u64,
            self.imm as u64,
            self.tt as u64,
            self.tf as u64,
            self.dec as u64,
        ];
        FIELDS.iter().zip(vals).fold(0, |w, (&(_, lsb, width), v)| {
            w | ((v & ((1 << width) - 1)) << lsb)
        })
    }

    /// A pure control instruction (no ALU work, no compare flag needed).
    fn pure_control(&self) -> bool {
        self.alu == Alu::Nop && self.cop != Cop::Bf
    }
}

/// An assembled program.
#[derive(Debug, Clone)]
pub struct Program {
    pub code: Vec<Instr>,
    /// Label addresses.
    pub labels: HashMap<String, u16>,
}

/// A parsed line before label resolution.
struct Line {
    text: String,
    line_no: usize,
    instr: Instr,
    tt: Option<String>,
    invert: bool,
}

/// Assembles microcode source.
pub fn assemble(src: &str) -> Result<Program> {
    let mut regs: HashMap<String, u8> = HashMap::new();
    let mut macros: HashMap<String, (Vec<String>, Vec<(usize, String)>)> = HashMap::new();
    let mut body: Vec<(usize, String)> = Vec::new();
    let mut in_macro: Option<(String, Vec<String>, Vec<(usize, String)>)> = None;
    for (i, raw) in src.lines().enumerate() {
        let line_no = i + 1;
        let text = raw.split(';').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let mut words = text.split_whitespace();
        let first = words.next().unwrap_or("");
        match first {
            ".reg" => {
                for name in words {
                    let idx = regs.len() as u8;
                    if idx >= NREGS {
                        bail!("line {line_no}: more than {NREGS} registers");
                    }
                    if regs.insert(name.to_string(), idx).is_some() {
                        bail!("line {line_no}: register {name} declared twice");
                    }
                }
            }
            ".macro" => {
                let name = words.next().context("macro name")?.to_string();
                let params = words
                    .map(|w| w.trim_matches(',').to_string())
                    .filter(|w| !w.is_empty())
                    .collect();
                in_macro = Some((name, params, Vec::new()));
            }
            ".endm" => {
                let (name, params, lines) = in_macro
                    .take()
                    .with_context(|| format!("line {line_no}: .endm without .macro"))?;
                macros.insert(name, (params, lines));
            }
            _ => match &mut in_macro {
                Some((_, _, lines)) => lines.push((line_no, text.to_string())),
                None => body.push((line_no, text.to_string())),
            },
        }
    }
    if in_macro.is_some() {
        bail!("unterminated .macro");
    }

    // Expand macros (recursively), giving `@local` labels a unique suffix per expansion.
    let mut expanded: Vec<(usize, String)> = Vec::new();
    let mut counter = 0usize;
    expand(&body, &macros, &mut expanded, &mut counter, 0)?;

    // Parse: labels attach to the next instruction.
    let mut lines: Vec<Line> = Vec::new();
    let mut labels: HashMap<String, u16> = HashMap::new();
    for (line_no, text) in expanded {
        let mut rest = text.as_str();
        while let Some(pos) = rest.find(':') {
            let label = rest[..pos].trim();
            if label.is_empty() || label.contains(char::is_whitespace) {
                break;
            }
            if labels
                .insert(label.to_string(), lines.len() as u16)
                .is_some()
            {
                bail!("line {line_no}: label {label} defined twice");
            }
            rest = rest[pos + 1..].trim();
        }
        if rest.is_empty() {
            continue;
        }
        let line = parse_line(rest, line_no, &regs)?;
        lines.push(line);
    }
    if lines.len() > (1 << PC_BITS) {
        bail!(
            "program has {} words, the ROM holds {}",
            lines.len(),
            1 << PC_BITS
        );
    }

    // Resolve targets. A branch of inverted sense (`bne`, `bge`, `jnbit`, `jnwin`) continues at
    // the next word when its condition holds and goes to the label otherwise.
    let mut code = Vec::with_capacity(lines.len());
    for (pc, l) in lines.iter().enumerate() {
        let mut ins = l.instr;
        let next = (pc + 1) as u16;
        let target = match &l.tt {
            Some(name) => *labels.get(name).with_context(|| {
                format!("line {}: unknown label {name} in `{}`", l.line_no, l.text)
            })?,
            None => next,
        };
        (ins.tt, ins.tf) = if l.invert {
            (next, target)
        } else {
            (target, next)
        };
        code.push(ins);
    }
    for (pc, ins) in code.iter().enumerate() {
        let conditional = !matches!(ins.cop, Cop::Goto | Cop::Seti | Cop::Ret);
        let off = |t: u16| t as usize >= code.len();
        if ins.cop != Cop::Ret && (off(ins.tt) || (conditional && off(ins.tf))) {
            bail!("word {pc} falls off the end of the program (end every path with `ret`)");
        }
    }
    fold(&mut code);
    Ok(Program { code, labels })
}

fn expand(
    body: &[(usize, String)],
    macros: &HashMap<String, (Vec<String>, Vec<(usize, String)>)>,
    out: &mut Vec<(usize, String)>,
    counter: &mut usize,
    depth: usize,
) -> Result<()> {
    if depth > 8 {
        bail!("macros nested too deeply");
    }
    for (line_no, text) in body {
        let (label_part, instr_part) = match text.rfind(':') {
            Some(p) => (&text[..=p], text[p + 1..].trim()),
            None => ("", text.as_str()),
        };
        let mnemonic = instr_part.split_whitespace().next().unwrap_or("");
        if let Some((params, lines)) = macros.get(mnemonic) {
            let args: Vec<&str> = instr_part[mnemonic.len()..]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if args.len() != params.len() {
                bail!(
                    "line {line_no}: macro {mnemonic} takes {} arguments",
                    params.len()
                );
            }
            if !label_part.is_empty() {
                out.push((*line_no, label_part.to_string()));
            }
            *counter += 1;
            let suffix = format!("__{counter}");
            let subst: Vec<(usize, String)> = lines
                .iter()
                .map(|(n, l)| {
                    let mut t = String::new();
                    for tok in split_keep(l) {
                        if let Some(i) = params.iter().position(|p| p == tok) {
                            t.push_str(args[i]);
                        } else if let Some(local) = tok.strip_prefix('@') {
                            t.push_str(local);
                            t.push_str(&suffix);
                        } else {
                            t.push_str(tok);
                        }
                    }
                    (*n, t)
                })
                .collect();
            expand(&subst, macros, out, counter, depth + 1)?;
        } else {
            out.push((*line_no, text.clone()));
        }
    }
    Ok(())
}

/// Splits into identifier-ish tokens and the characters between them, keeping everything.
fn split_keep(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let is_id = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '.';
    let mut in_id = false;
    for (i, c) in s.char_indices() {
        if is_id(c) != in_id {
            if i > start {
                out.push(&s[start..i]);
            }
            start = i;
            in_id = is_id(c);
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn parse_line(text: &str, line_no: usize, regs: &HashMap<String, u8>) -> Result<Line> {
    let (mn, rest) = match text.find(char::is_whitespace) {
        Some(p) => (&text[..p], text[p..].trim()),
        None => (text, ""),
    };
    let args: Vec<&str> = rest
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let err = |what: &str| anyhow::anyhow!("line {line_no}: {what} in `{text}`");
    let src = |name: &str| -> Result<u8> {
        if let Some(&r) = regs.get(name) {
            return Ok(r);
        }
        opnd::SOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, c)| c)
            .ok_or_else(|| err(&format!("unknown operand {name}")))
    };
    let dst = |name: &str| -> Result<u8> {
        match name {
            "U1" => Ok(opnd::U1),
            "U2" => Ok(opnd::U2),
            _ => regs
                .get(name)
                .copied()
                .ok_or_else(|| err(&format!("{name} is not a writable register"))),
        }
    };
    let small = |s: &str| -> Result<u8> {
        let v: u8 = s.parse().map_err(|_| err("bad scale"))?;
        if v > 8 {
            return Err(err("scales are 0..8"));
        }
        Ok(v)
    };
    let nargs = |n: usize| -> Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(err(&format!("expected {n} operands")))
        }
    };
    let mut ins = Instr::nop();
    let mut tt = None;
    let mut invert = false;
    let (base, suffix) = match mn.split_once('.') {
        Some((b, s)) => (b, Some(s)),
        None => (mn, None),
    };
    let arith = matches!(base, "mul" | "add" | "sub");
    let modn = match suffix {
        Some("p") if arith => false,
        Some("n") if arith => true,
        Some("dec") if !arith && !matches!(base, "seti" | "ret") => {
            ins.dec = true;
            false
        }
        Some(_) => return Err(err("suffixes: .p or .n on arithmetic, .dec on control")),
        None => false,
    };
    match base {
        "mul" | "add" | "sub" => {
            if suffix.is_none() {
                return Err(err("arithmetic needs .p or .n"));
            }
            ins.alu = match base {
                "mul" => Alu::Mul,
                "add" => Alu::Add,
                _ => Alu::Sub,
            };
            ins.modn = modn;
            if base == "mul" {
                nargs(3)?;
            } else if args.len() != 3 && args.len() != 5 {
                return Err(err("expected d, a, b [, ka, kb]"));
            }
            ins.d = dst(args[0])?;
            ins.a = src(args[1])?;
            ins.b = src(args[2])?;
            if base != "mul" {
                ins.ka = if args.len() == 5 { small(args[3])? } else { 1 };
                ins.kb = if args.len() == 5 { small(args[4])? } else { 1 };
                if ins.ka as u32 + ins.kb as u32 > 16 {
                    return Err(err("ka + kb must be at most 16"));
                }
            }
        }
        "beq" | "bne" | "blt" | "bge" => {
            nargs(3)?;
            ins.alu = if base == "beq" || base == "bne" {
                Alu::Ceq
            } else {
                Alu::Clt
            };
            ins.a = src(args[0])?;
            ins.b = src(args[1])?;
            ins.cop = Cop::Bf;
            tt = Some(args[2].to_string());
            invert = base == "bne" || base == "bge";
        }
        "jmp" => {
            nargs(1)?;
            tt = Some(args[0].to_string());
        }
        "jbit" | "jnbit" => {
            nargs(2)?;
            ins.cop = Cop::Jbit;
            ins.imm = SCALARS
                .iter()
                .find(|(n, _)| *n == args[0])
                .map(|&(_, c)| c)
                .ok_or_else(|| err("jbit tests U1, U2 or NM2"))?;
            tt = Some(args[1].to_string());
            invert = base == "jnbit";
        }
        "jwin" | "jnwin" => {
            nargs(1)?;
            ins.cop = Cop::Jwin;
            tt = Some(args[0].to_string());
            invert = base == "jnwin";
        }
        "loop" => {
            nargs(1)?;
            ins.cop = Cop::Loop;
            tt = Some(args[0].to_string());
        }
        "seti" => {
            nargs(1)?;
            ins.cop = Cop::Seti;
            ins.imm = args[0].parse().map_err(|_| err("seti takes 0..255"))?;
        }
        "ret" => {
            nargs(1)?;
            ins.cop = Cop::Ret;
            ins.imm = match args[0] {
                "0" => 0,
                "1" => 1,
                _ => return Err(err("ret takes 0 or 1")),
            };
        }
        _ => return Err(err(&format!("unknown mnemonic {mn}"))),
    }
    Ok(Line {
        text: text.to_string(),
        line_no,
        instr: ins,
        tt,
        invert,
    })
}

/// Folds pure control words into the instruction before them where that instruction continues
/// unconditionally (`Goto`), and threads targets through pure `Goto` words.
fn fold(code: &mut [Instr]) {
    for _ in 0..8 {
        let snapshot = code.to_vec();
        let through = |mut t: u16| {
            for _ in 0..8 {
                let j = snapshot[t as usize];
                if j.pure_control() && j.cop == Cop::Goto && !j.dec && j.tt != t {
                    t = j.tt;
                } else {
                    break;
                }
            }
            t
        };
        for ins in code.iter_mut().filter(|i| i.cop != Cop::Ret) {
            if ins.cop == Cop::Goto {
                let j = snapshot[ins.tt as usize];
                if j.pure_control() && !(ins.dec && j.dec) {
                    ins.dec |= j.dec;
                    ins.cop = j.cop;
                    ins.imm = j.imm;
                    ins.tt = j.tt;
                    ins.tf = j.tf;
                }
            }
            ins.tt = through(ins.tt);
            if ins.cop != Cop::Goto && ins.cop != Cop::Seti && ins.cop != Cop::Ret {
                ins.tf = through(ins.tf);
            }
        }
        if code == snapshot.as_slice() {
            break;
        }
    }
}

/// Renders the ROM header included by `rtl/crypto/ecdsa_core.sv`.
pub fn verilog(prog: &Program, consts: &crate::ucode_emu::Consts) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// ECDSA P-256 engine microcode ROM and constants. Generated by `cargo xtask regen` from\n\
         // hw/ecdsa_p256.uasm (assembler: xtask/src/ucode.rs). Do not edit.\n\n\
         /* verilator lint_off UNUSEDPARAM */"
    );
    let _ = writeln!(s, "localparam int ECDSA_PC_BITS = {PC_BITS};");
    let _ = writeln!(s, "localparam int ECDSA_UCODE_LEN = {};", prog.code.len());
    let _ = writeln!(s, "localparam int ECDSA_WIN_BITS = {WIN_BITS};");
    for (name, lsb, width) in FIELDS {
        let _ = writeln!(s, "localparam int UW_{name}_LSB = {lsb};");
        let _ = writeln!(s, "localparam int UW_{name}_W = {width};");
    }
    for (name, width, v) in [
        ("ALU_NOP", 3, Alu::Nop as u8),
        ("ALU_MUL", 3, Alu::Mul as u8),
        ("ALU_ADD", 3, Alu::Add as u8),
        ("ALU_SUB", 3, Alu::Sub as u8),
        ("ALU_CEQ", 3, Alu::Ceq as u8),
        ("ALU_CLT", 3, Alu::Clt as u8),
        ("COP_GOTO", 3, Cop::Goto as u8),
        ("COP_BF", 3, Cop::Bf as u8),
        ("COP_JBIT", 3, Cop::Jbit as u8),
        ("COP_LOOP", 3, Cop::Loop as u8),
        ("COP_JWIN", 3, Cop::Jwin as u8),
        ("COP_SETI", 3, Cop::Seti as u8),
        ("COP_RET", 3, Cop::Ret as u8),
        ("OPND_GX", 6, opnd::GX),
        ("OPND_GY", 6, opnd::GY),
        ("OPND_U1", 6, opnd::U1),
        ("OPND_U2", 6, opnd::U2),
    ] {
        let _ = writeln!(
            s,
            "localparam logic [{}:0] {name} = {width}'d{v};",
            width - 1
        );
    }
    let hex = |v: &num_bigint::BigUint| format!("256'h{:064x}", v);
    let _ = writeln!(s, "localparam logic [255:0] ECDSA_P = {};", hex(&consts.p));
    let _ = writeln!(s, "localparam logic [255:0] ECDSA_N = {};", hex(&consts.n));
    let _ = writeln!(
        s,
        "localparam logic [255:0] ECDSA_PINV = {};",
        hex(&consts.pinv)
    );
    let _ = writeln!(
        s,
        "localparam logic [255:0] ECDSA_NINV = {};",
        hex(&consts.ninv)
    );
    let _ = writeln!(
        s,
        "localparam logic [255:0] ECDSA_NM2 = {};",
        hex(&consts.nm2)
    );
    let _ = writeln!(s);
    // ROMs as initialised arrays: a constant table in simulation, block or LUT ROM in synthesis.
    let ret0 = Instr {
        cop: Cop::Ret,
        ..Instr::nop()
    };
    let words = 1usize << PC_BITS;
    let _ = writeln!(
        s,
        "// Microcode ROM; words past the program are `ret 0`.\n\
         logic [63:0] ecdsa_ucode_rom [{words}];\ninitial begin"
    );
    for pc in 0..words {
        let w = prog.code.get(pc).unwrap_or(&ret0).word();
        let _ = writeln!(s, "  ecdsa_ucode_rom[{pc}] = 64'h{w:016x};");
    }
    let _ = writeln!(s, "end\n");
    let entries = 1usize << WIN_BITS;
    let _ = writeln!(
        s,
        "// k·G for k < 2^{WIN_BITS} (entry 0 unused): x and y, affine, Montgomery form mod p.\n\
         logic [255:0] ecdsa_gx_rom [{entries}];\nlogic [255:0] ecdsa_gy_rom [{entries}];\n\
         initial begin"
    );
    for k in 0..entries {
        let _ = writeln!(s, "  ecdsa_gx_rom[{k}] = {};", hex(&consts.gx[k]));
        let _ = writeln!(s, "  ecdsa_gy_rom[{k}] = {};", hex(&consts.gy[k]));
    }
    let _ = writeln!(s, "end\n");
    let _ = writeln!(
        s,
        "// Scalar constant operand `idx` (32..40); others read 0.\n\
         function automatic logic [255:0] ecdsa_const(input logic [5:0] idx);\n  \
         logic [255:0] v;\n  v = 256'd0;\n  case (idx)"
    );
    for (idx, v) in consts.scalar_table() {
        let _ = writeln!(s, "    6'd{idx}: v = {};", hex(&v));
    }
    let _ = writeln!(
        s,
        "    default: v = 256'd0;\n  endcase\n  ecdsa_const = v;\nendfunction\n\n\
         /* verilator lint_on UNUSEDPARAM */"
    );
    s
}
