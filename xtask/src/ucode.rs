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

/// One parsed source line: at most one ALU operation, and its control.
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
    /// Decrement i after this instruction (control reads i from before it).
    pub dec: bool,
}

/// One issue slot of a microword: the multiplier slot (`Mul` or `Nop`) or the add/compare slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub alu: Alu,
    pub modn: bool,
    pub d: u8,
    pub a: u8,
    pub b: u8,
    pub ka: u8,
    pub kb: u8,
}

impl Slot {
    const NOP: Slot = Slot {
        alu: Alu::Nop,
        modn: false,
        d: opnd::NONE,
        a: opnd::ZERO,
        b: opnd::ZERO,
        ka: 0,
        kb: 0,
    };

    fn of(i: &Instr) -> Slot {
        Slot {
            alu: i.alu,
            modn: i.modn,
            d: i.d,
            a: i.a,
            b: i.b,
            ka: i.ka,
            kb: i.kb,
        }
    }

    /// Register (or scalar U1/U2) this slot writes.
    fn writes(&self) -> Option<u8> {
        matches!(self.alu, Alu::Mul | Alu::Add | Alu::Sub).then_some(self.d)
    }

    /// Registers and scalars this slot reads (GX/GY read the window of u1).
    fn reads(&self) -> Vec<u8> {
        let mut r = Vec::new();
        if self.alu != Alu::Nop {
            for o in [self.a, self.b] {
                match o {
                    0..=31 => r.push(o),
                    opnd::GX | opnd::GY => r.push(opnd::U1),
                    _ => {}
                }
            }
        }
        r
    }
}

/// One microword: a multiplier operation and an add/sub/compare operation issued together
/// (both read their operands before either writes), and one control operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word {
    pub m: Slot,
    pub x: Slot,
    pub cop: Cop,
    pub imm: u8,
    pub tt: u16,
    pub tf: u16,
    pub dec: bool,
}

/// Bit positions of the fields in the ROM word: (name, lsb, width).
pub const FIELDS: &[(&str, u32, u32)] = &[
    ("MEN", 0, 1),
    ("MMODN", 1, 1),
    ("MD", 2, 6),
    ("MA", 8, 6),
    ("MB", 14, 6),
    ("XALU", 20, 3),
    ("XMODN", 23, 1),
    ("XD", 24, 6),
    ("XA", 30, 6),
    ("XB", 36, 6),
    ("KA", 42, 4),
    ("KB", 46, 4),
    ("COP", 50, 3),
    ("IMM", 53, 8),
    ("TT", 61, 10),
    ("TF", 71, 10),
    ("DEC", 81, 1),
];

/// Width of the ROM word in bits.
pub const WORD_BITS: u32 = 82;

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
            dec: false,
        }
    }
}

impl Word {
    /// No operation; continue at `tt` (filled in when targets are resolved).
    const NOP: Word = Word {
        m: Slot::NOP,
        x: Slot::NOP,
        cop: Cop::Goto,
        imm: 0,
        tt: 0,
        tf: 0,
        dec: false,
    };

    /// The ROM word.
    pub fn bits(&self) -> u128 {
        let vals: [u128; 17] = [
            (self.m.alu == Alu::Mul) as u128,
            self.m.modn as u128,
            self.m.d as u128,
            self.m.a as u128,
            self.m.b as u128,
            self.x.alu as u128,
            self.x.modn as u128,
            self.x.d as u128,
            self.x.a as u128,
            self.x.b as u128,
            self.x.ka as u128,
            self.x.kb as u128,
            self.cop as u128,
            self.imm as u128,
            self.tt as u128,
            self.tf as u128,
            self.dec as u128,
        ];
        FIELDS.iter().zip(vals).fold(0, |w, (&(_, lsb, width), v)| {
            w | ((v & ((1 << width) - 1)) << lsb)
        })
    }

    /// A pure control word (no ALU work, no compare flag needed).
    fn pure_control(&self) -> bool {
        self.m.alu == Alu::Nop && self.x.alu == Alu::Nop && self.cop != Cop::Bf
    }

    /// Operations issued by this word.
    pub fn ops(&self) -> usize {
        (self.m.alu != Alu::Nop) as usize + (self.x.alu != Alu::Nop) as usize
    }
}

/// An assembled program.
#[derive(Debug, Clone)]
pub struct Program {
    pub code: Vec<Word>,
}

/// A parsed line before label resolution.
struct Line {
    text: String,
    line_no: usize,
    instr: Instr,
    tt: Option<String>,
    invert: bool,
    /// The line has explicit control (it ends a basic block).
    ctrl: bool,
}

/// Source lines with their line numbers.
type Source = Vec<(usize, String)>;
/// A macro: parameter names and body.
type Macro = (Vec<String>, Source);

/// Assembles microcode source.
pub fn assemble(src: &str) -> Result<Program> {
    let mut regs: HashMap<String, u8> = HashMap::new();
    let mut macros: HashMap<String, Macro> = HashMap::new();
    let mut body: Vec<(usize, String)> = Vec::new();
    let mut in_macro: Option<(String, Macro)> = None;
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
                in_macro = Some((name, (params, Vec::new())));
            }
            ".endm" => {
                let (name, (params, lines)) = in_macro
                    .take()
                    .with_context(|| format!("line {line_no}: .endm without .macro"))?;
                macros.insert(name, (params, lines));
            }
            _ => match &mut in_macro {
                Some((_, (_, lines))) => lines.push((line_no, text.to_string())),
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
    let starts: std::collections::HashSet<usize> = labels.values().map(|&v| v as usize).collect();

    // Basic blocks: a label starts one, explicit control ends one.
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut begin = 0;
    for (i, line) in lines.iter().enumerate() {
        if i > begin && starts.contains(&i) {
            blocks.push(begin..i);
            begin = i;
        }
        if line.ctrl {
            blocks.push(begin..i + 1);
            begin = i + 1;
        }
    }
    if begin < lines.len() {
        blocks.push(begin..lines.len());
    }

    // Schedule each block into words; remember where each line's block starts.
    let mut code: Vec<Word> = Vec::new();
    let mut line_word = vec![0u16; lines.len()];
    let mut pending: Vec<(usize, usize)> = Vec::new(); // (word, line whose control it carries)
    for blk in &blocks {
        let first = code.len() as u16;
        for i in blk.clone() {
            line_word[i] = first;
        }
        let words = schedule(&lines[blk.clone()])
            .with_context(|| format!("block at line {}", lines[blk.start].line_no))?;
        code.extend(words);
        let last = blk.end - 1;
        if lines[last].ctrl {
            pending.push((code.len() - 1, last));
        }
    }
    if code.len() > (1 << PC_BITS) {
        bail!(
            "program has {} words, the ROM holds {}",
            code.len(),
            1 << PC_BITS
        );
    }

    // Resolve targets. A branch of inverted sense (`bne`, `bge`, `jnbit`, `jnwin`) continues at
    // the next word when its condition holds and goes to the label otherwise.
    for (pc, w) in code.iter_mut().enumerate() {
        w.tt = (pc + 1) as u16;
        w.tf = (pc + 1) as u16;
    }
    for (pc, li) in pending {
        let l = &lines[li];
        let next = (pc + 1) as u16;
        let target = match &l.tt {
            Some(name) => {
                let line = *labels.get(name).with_context(|| {
                    format!("line {}: unknown label {name} in `{}`", l.line_no, l.text)
                })?;
                line_word
                    .get(line as usize)
                    .copied()
                    .unwrap_or(code.len() as u16)
            }
            None => next,
        };
        let w = &mut code[pc];
        w.cop = l.instr.cop;
        w.imm = l.instr.imm;
        w.dec = l.instr.dec;
        (w.tt, w.tf) = if l.invert {
            (next, target)
        } else {
            (target, next)
        };
    }
    for (pc, w) in code.iter().enumerate() {
        let conditional = !matches!(w.cop, Cop::Goto | Cop::Seti | Cop::Ret);
        let off = |t: u16| t as usize >= code.len();
        if w.cop != Cop::Ret && (off(w.tt) || (conditional && off(w.tf))) {
            bail!("word {pc} falls off the end of the program (end every path with `ret`)");
        }
    }
    fold(&mut code);
    Ok(Program { code })
}

/// Packs a basic block's operations into words, a multiplication and an addition per word,
/// keeping every dependency: a read after a write, or two writes, go to a later word; a write
/// after a read may share the read's word (operands are read before results are written). The
/// control of the block's last line (and its compare, if any) goes in the last word.
fn schedule(lines: &[Line]) -> Result<Vec<Word>> {
    let n = lines.len();
    let last_ctrl = lines.last().is_some_and(|l| l.ctrl);
    let ops: Vec<usize> = (0..n).filter(|&i| lines[i].instr.alu != Alu::Nop).collect();
    let slot = |i: usize| Slot::of(&lines[i].instr);
    let is_mul = |i: usize| lines[i].instr.alu == Alu::Mul;
    // Control reads: u1/u2 for jbit/jwin.
    let ctrl_reads: Vec<u8> = match lines.last() {
        Some(l) if l.ctrl => match l.instr.cop {
            Cop::Jbit if l.instr.imm == 0 => vec![opnd::U1],
            Cop::Jbit if l.instr.imm == 1 => vec![opnd::U2],
            Cop::Jwin => vec![opnd::U1],
            _ => vec![],
        },
        _ => vec![],
    };
    // Edges j -> k (k after j): strict (RAW, WAW) or loose (WAR).
    let mut strict: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut loose: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (x, &j) in ops.iter().enumerate() {
        for &k in &ops[x + 1..] {
            let (sj, sk) = (slot(j), slot(k));
            let raw = sj.writes().is_some_and(|w| sk.reads().contains(&w));
            let waw = sj.writes().is_some() && sj.writes() == sk.writes();
            let war = sk.writes().is_some_and(|w| sj.reads().contains(&w));
            if raw || waw {
                strict[k].push(j);
            } else if war {
                loose[k].push(j);
            }
        }
    }
    // The terminator (compare or control reading u1/u2) comes after everything it depends on,
    // and nothing comes after it.
    let term = if last_ctrl && lines[n - 1].instr.alu != Alu::Nop {
        Some(n - 1)
    } else {
        None
    };
    // Priority: longest chain of strict edges to the end of the block.
    let mut height = vec![0usize; n];
    for &j in ops.iter().rev() {
        for &k in &ops {
            if strict[k].contains(&j) {
                height[j] = height[j].max(height[k] + 1);
            }
        }
    }
    let mut word_of: Vec<Option<usize>> = vec![None; n];
    let mut words: Vec<Word> = Vec::new();
    let mut left: Vec<usize> = ops.clone();
    while !left.is_empty() {
        let w = words.len();
        let ready = |k: usize, word_of: &Vec<Option<usize>>| {
            strict[k].iter().all(|&j| word_of[j].is_some_and(|x| x < w))
                && loose[k].iter().all(|&j| word_of[j].is_some())
        };
        let mut word = Word::NOP;
        // Multiplier slot first, then the add/compare slot.
        for want_mul in [true, false] {
            let pick = left
                .iter()
                .copied()
                .filter(|&k| is_mul(k) == want_mul && ready(k, &word_of))
                .filter(|&k| {
                    // The terminator only once everything else is placed (or is placed now).
                    Some(k) != term || left.iter().all(|&o| o == k || word_of[o].is_some())
                })
                .filter(|&k| {
                    // Not in the same word as an op writing what k writes.
                    let d = slot(k).writes();
                    d.is_none() || (word.m.alu == Alu::Nop || word.m.writes() != d)
                })
                .max_by_key(|&k| (height[k], std::cmp::Reverse(k)));
            if let Some(k) = pick {
                if want_mul {
                    word.m = slot(k);
                } else {
                    word.x = slot(k);
                }
                word_of[k] = Some(w);
                left.retain(|&o| o != k);
            }
        }
        if word.ops() == 0 {
            bail!("cannot schedule: dependency cycle");
        }
        words.push(word);
    }
    // Control that reads u1/u2 must see a write of them in this block.
    if ctrl_reads.iter().any(|r| {
        ops.iter().any(|&j| {
            slot(j).writes() == Some(*r) && word_of[j] == Some(words.len().saturating_sub(1))
        })
    }) || words.is_empty()
    {
        words.push(Word::NOP);
    }
    Ok(words)
}

fn expand(
    body: &[(usize, String)],
    macros: &HashMap<String, Macro>,
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
        if mnemonic == ".pow_nm2" {
            if !label_part.is_empty() {
                out.push((*line_no, label_part.to_string()));
            }
            let args: Vec<&str> = instr_part[mnemonic.len()..]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if args.len() != 9 {
                bail!("line {line_no}: .pow_nm2 DST, BASE, and 7 registers for BASE³ … BASE¹⁵");
            }
            let e = crate::ucode_emu::Consts::p256().nm2;
            out.extend(
                pow_chain(&e, args[0], &args[1..])
                    .into_iter()
                    .map(|l| (*line_no, l)),
            );
            continue;
        }
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

/// `dst = base^e` mod n (Montgomery form) for a constant `e`: odd powers base¹, base³ … base¹⁵
/// into `odd[0]` (= base) … `odd[7]`, then left-to-right sliding windows of up to 4 bits.
fn pow_chain(e: &num_bigint::BigUint, dst: &str, odd: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!("mul.n {dst}, {}, {}", odd[0], odd[0]));
    for k in 1..8 {
        out.push(format!("mul.n {}, {}, {dst}", odd[k], odd[k - 1]));
    }
    let bits = e.bits() as i64;
    let bit = |i: i64| i >= 0 && e.bit(i as u64);
    let mut i = bits - 1;
    let mut started = false;
    while i >= 0 {
        if !bit(i) {
            if started {
                out.push(format!("mul.n {dst}, {dst}, {dst}"));
            }
            i -= 1;
            continue;
        }
        // Longest window i..j (at most 4 bits) ending in a set bit.
        let mut j = (i - 3).max(0);
        while !bit(j) {
            j += 1;
        }
        let mut val = 0usize;
        for b in (j..=i).rev() {
            val = 2 * val + bit(b) as usize;
        }
        if started {
            for _ in j..=i {
                out.push(format!("mul.n {dst}, {dst}, {dst}"));
            }
            out.push(format!("mul.n {dst}, {dst}, {}", odd[(val - 1) / 2]));
        } else {
            out.push(format!("add.n {dst}, {}, ZERO", odd[(val - 1) / 2]));
            started = true;
        }
        i = j - 1;
    }
    out
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
        ctrl: ins.cop != Cop::Goto || tt.is_some() || ins.dec,
        instr: ins,
        tt,
        invert,
    })
}

/// Folds pure control words into the instruction before them where that instruction continues
/// unconditionally (`Goto`), and threads targets through pure `Goto` words.
fn fold(code: &mut [Word]) {
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
            if ins.cop == Cop::Ret {
                continue;
            }
            ins.tt = through(ins.tt);
            if ins.cop != Cop::Goto && ins.cop != Cop::Seti {
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
    let _ = writeln!(s, "localparam int ECDSA_WORD_BITS = {WORD_BITS};");
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
    let ret0 = Word {
        cop: Cop::Ret,
        ..Word::NOP
    };
    let words = 1usize << PC_BITS;
    let _ = writeln!(
        s,
        "// Microcode ROM; words past the program are `ret 0`.\n\
         logic [{}:0] ecdsa_ucode_rom [{words}];\ninitial begin",
        WORD_BITS - 1
    );
    for pc in 0..words {
        let w = prog.code.get(pc).unwrap_or(&ret0).bits();
        let _ = writeln!(s, "  ecdsa_ucode_rom[{pc}] = {WORD_BITS}'h{w:x};");
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
