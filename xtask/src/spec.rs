//! The model of `hw/bpu.toml` and the checks that keep it self-consistent.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub device: Device,
    pub blocks: Vec<Block>,
    pub structs: Vec<Struct>,
    pub enums: Vec<Enum>,
    pub constants: Vec<Constant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
    pub magic: u32,
    pub version_major: u16,
    pub version_minor: u16,
    pub bar0_size: u32,
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub name: String,
    pub base: u32,
    /// Number of copies of the block (1 when absent).
    #[serde(default = "one")]
    pub count: u32,
    /// Bytes between copies (needed when count > 1).
    #[serde(default)]
    pub stride: u32,
    pub doc: String,
    pub regs: Vec<Reg>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Ro,
    Rw,
    W1c,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Ro => "ro",
            Access::Rw => "rw",
            Access::W1c => "w1c",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reg {
    pub name: String,
    pub offset: u32,
    pub access: Access,
    pub reset: u32,
    pub doc: String,
    #[serde(default)]
    pub fields: Vec<Field>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    pub lsb: u32,
    pub width: u32,
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Struct {
    pub name: String,
    pub rust: String,
    pub size: u32,
    pub doc: String,
    pub fields: Vec<StructField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructField {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enum {
    pub name: String,
    pub rust: String,
    pub width: u32,
    pub doc: String,
    pub values: Vec<EnumValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnumValue {
    pub name: String,
    pub value: u32,
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    pub name: String,
    pub value: u64,
    pub doc: String,
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec: Spec =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        spec.check()?;
        Ok(spec)
    }

    /// Reject overlaps, misalignment and values that do not fit, so generated code is sound.
    fn check(&self) -> Result<()> {
        let mut ranges: Vec<(u32, u32, &str)> = Vec::new();
        for b in &self.blocks {
            if b.count > 1 && b.stride == 0 {
                bail!("block {}: count > 1 needs a stride", b.name);
            }
            let span = b.regs.iter().map(|r| r.offset + 4).max().unwrap_or(0);
            if b.count > 1 && span > b.stride {
                bail!(
                    "block {}: registers span {span:#x}, more than the stride",
                    b.name
                );
            }
            let end = b.base
                + if b.count > 1 {
                    b.stride * b.count
                } else {
                    span
                };
            if end > self.device.bar0_size {
                bail!("block {} ends past BAR0", b.name);
            }
            ranges.push((b.base, end, &b.name));
            let mut seen = HashSet::new();
            for r in &b.regs {
                if r.offset % 4 != 0 || !seen.insert(r.offset) {
                    bail!("{}.{}: offset misaligned or reused", b.name, r.name);
                }
                let mut used = 0u64;
                for f in &r.fields {
                    if f.width == 0 || f.lsb + f.width > 32 {
                        bail!(
                            "{}.{}.{}: field out of the register",
                            b.name,
                            r.name,
                            f.name
                        );
                    }
                    let mask = ((1u64 << f.width) - 1) << f.lsb;
                    if used & mask != 0 {
                        bail!("{}.{}.{}: fields overlap", b.name, r.name, f.name);
                    }
                    used |= mask;
                }
            }
        }
        ranges.sort();
        for w in ranges.windows(2) {
            if w[0].1 > w[1].0 {
                bail!("blocks {} and {} overlap", w[0].2, w[1].2);
            }
        }
        for s in &self.structs {
            let mut at = 0;
            for f in &s.fields {
                if f.offset != at || ![1, 2, 4, 8].contains(&f.size) && f.size % 4 != 0 {
                    bail!(
                        "struct {}.{}: fields must be contiguous and sized 1/2/4/8 or n*4",
                        s.name,
                        f.name
                    );
                }
                if [2, 4, 8].contains(&f.size) && f.offset % f.size != 0 {
                    bail!("struct {}.{}: misaligned", s.name, f.name);
                }
                at += f.size;
            }
            if at != s.size {
                bail!(
                    "struct {}: fields cover {at} bytes, size says {}",
                    s.name,
                    s.size
                );
            }
        }
        for e in &self.enums {
            for v in &e.values {
                if e.width < 32 && v.value >> e.width != 0 {
                    bail!(
                        "enum {}.{}: value does not fit in {} bits",
                        e.name,
                        v.name,
                        e.width
                    );
                }
            }
        }
        Ok(())
    }
}

/// `SQ_BASE_LO` -> `SqBaseLo`, `sha256_batch` -> `Sha256Batch`.
pub fn camel(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let lower = p.to_ascii_lowercase();
            let mut c = lower.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
